//! Starting and reaching Redis servers for tests.
