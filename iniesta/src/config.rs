//! Settings, read from `INIESTA_*` environment variables in one place.

/// The message attribute that carries the event key, as in iniesta (Python).
pub const DEFAULT_EVENT_ATTRIBUTE: &str = "iniesta_pass";
