//! Helpers shared by the integration tests: the services they talk to.
// Each test binary compiles this module whole and uses only part of it.
#![allow(dead_code, unreachable_pub)]

pub mod redis;
pub mod sqs;
pub mod wait;
