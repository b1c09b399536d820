//! Helpers shared by the integration tests: the services they talk to, app builders, a faulty
//! transport, log capture, waiting and lock helpers, example binaries run as child processes,
//! the command line run against moto.
// Each test binary compiles this module whole and uses only part of it.
#![allow(dead_code, unreachable_pub)]

pub mod app;
pub mod cli;
pub mod example;
pub mod http;
pub mod lock;
pub mod logs;
pub mod postgres;
pub mod redis;
pub mod soak;
pub mod sqs;
pub mod transport;
pub mod wait;
