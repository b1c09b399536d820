//! Running command-line binaries (the `iniesta` tool, a service's own) as a person runs them.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

use super::{example, sqs};

/// The `iniesta` binary, built once per test binary.
pub fn iniesta() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| example::build_bin("iniesta")).clone()
}

/// Runs `binary` with `args` against moto (`--endpoint-url`), with `env` set and no
/// `INIESTA_*` variable of this process leaking in.
pub fn run(binary: PathBuf, args: &[&str], env: &[(&str, &str)]) -> Output {
    let endpoint = sqs::endpoint();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--endpoint-url", endpoint.as_str()]);
    run_plain(binary, &all, env)
}

/// Runs `binary` with exactly `args` and `env` (no `INIESTA_*` of this process).
pub fn run_plain(binary: PathBuf, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(binary);
    command.args(args);
    for (name, _) in std::env::vars() {
        if name.starts_with("INIESTA_") {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().copied());
    command.output().expect("the binary runs")
}

/// What the run printed on stdout.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// What the run printed on stderr.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
