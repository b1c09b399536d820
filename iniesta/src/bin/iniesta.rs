//! The `iniesta` command line: send, publish, receive, filter-policy, handlers, check,
//! redrive, asyncapi, db migrate, outbox relay (the last two with the `postgres` feature).
//! See `iniesta --help` and [`iniesta::cli`].

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    match iniesta::cli::run_tool().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
