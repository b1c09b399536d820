//! Reaching the SQS emulator (moto) for tests.
