//! Building the example binaries and running them as child processes that never outlive a test.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, ChildStdin, Command};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// How many stderr lines a [`Process`] keeps to show when the test fails.
const LOG_TAIL: usize = 60;

/// Builds `examples/{name}.rs` into this test's target directory and returns its path.
///
/// # Panics
///
/// When the build fails.
pub fn build(name: &str) -> PathBuf {
    cargo_build(&["--example", name], &Path::new("examples").join(name))
}

/// Builds the workspace's binary `name` (the `iniesta` command line) into this test's target
/// directory and returns its path.
///
/// # Panics
///
/// When the build fails.
pub fn build_bin(name: &str) -> PathBuf {
    cargo_build(&["--bins"], Path::new(name))
}

/// Runs `cargo build` with `what` and returns `<profile dir>/<built>`.
fn cargo_build(what: &[&str], built: &Path) -> PathBuf {
    // A test runs as <target>/<profile>/deps/<test>-<hash>.
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_owned();
    let target_dir = profile_dir.parent().unwrap();
    let mut cargo = std::process::Command::new(env!("CARGO"));
    cargo
        .current_dir(ROOT)
        // The feature set of `cargo test --workspace --all-features`, so the build reuses the
        // test build's `iniesta` instead of compiling another.
        .args(["build", "--quiet", "--workspace", "--all-features"])
        .args(what)
        .arg("--target-dir")
        .arg(target_dir);
    if profile_dir.ends_with("release") {
        cargo.arg("--release");
    }
    let status = cargo.status().expect("cargo runs");
    assert!(status.success(), "cargo build {what:?} failed");
    let mut path = profile_dir.join(built).into_os_string();
    path.push(std::env::consts::EXE_SUFFIX);
    let path = PathBuf::from(path);
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// A running child process: its stdout lines collected, the tail of its stderr kept, killed
/// when dropped (and its stderr tail printed when the test is failing).
///
/// Its stdin stays open while this lives, so a child that exits when stdin closes (as
/// `examples/soak_consumer.rs` does) also stops when the test process dies without dropping it.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Child,
    pid: u32,
    stdin: Option<ChildStdin>,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<VecDeque<String>>>,
}

impl Process {
    /// Spawns `command` (stdin, stdout and stderr piped), naming it `name` in messages.
    ///
    /// # Panics
    ///
    /// When it cannot start.
    pub fn spawn(name: &str, mut command: Command) -> Process {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{name} failed to start: {e}"));
        let pid = child.id().expect("a child just spawned has a pid");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        collect(
            child.stdout.take().unwrap(),
            Arc::clone(&stdout),
            |lines, line| {
                lines.push(line);
            },
        );
        collect(
            child.stderr.take().unwrap(),
            Arc::clone(&stderr),
            |lines, line| {
                if lines.len() == LOG_TAIL {
                    lines.pop_front();
                }
                lines.push_back(line);
            },
        );
        Process {
            name: name.to_owned(),
            stdin: child.stdin.take(),
            child,
            pid,
            stdout,
            stderr,
        }
    }

    /// The name given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Every line printed to stdout so far.
    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// The last stderr lines, joined.
    pub fn stderr_tail(&self) -> String {
        let lines = self.stderr.lock().unwrap();
        lines.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// Whether it is still running (not exited, not killed).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends `signal` (`TERM`, `KILL`, `STOP`, `CONT`, ...) with kill(1).
    ///
    /// # Panics
    ///
    /// When kill(1) fails.
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid.to_string())
            .status()
            .expect("kill(1) runs");
        assert!(status.success(), "kill -{signal} {} failed", self.pid);
    }

    /// Whether every thread of the process is stopped (after SIGSTOP), from `/proc`; without
    /// `/proc` (not Linux), assumed once SIGSTOP was sent.
    pub fn is_stopped(&self) -> bool {
        if !Path::new("/proc/self").exists() {
            return true;
        }
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.pid)) else {
            return false;
        };
        tasks.flatten().all(|task| {
            std::fs::read_to_string(task.path().join("stat")).is_ok_and(|stat| {
                // The state follows the command name, which is in parentheses.
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().next())
                    .is_some_and(|state| state == "T" || state == "t")
            })
        })
    }

    /// Waits for it to exit, up to `within`.
    ///
    /// # Panics
    ///
    /// When it is still running after `within`.
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => status.expect("wait on the child"),
            Err(_) => panic!(
                "{} did not exit within {within:?}; its log ends with:\n{}",
                self.name,
                self.stderr_tail()
            ),
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // A stopped process still dies of SIGKILL; closing stdin is the fallback signal.
        let _ = self.child.start_kill();
        self.stdin.take();
        if std::thread::panicking() {
            let stdout = self.stdout();
            let last = &stdout[stdout.len().saturating_sub(3)..];
            eprintln!(
                "--- {} (pid {}): last stdout lines ---\n{}\n--- its log ends with ---\n{}\n---",
                self.name,
                self.pid,
                last.join("\n"),
                self.stderr_tail()
            );
        }
    }
}

/// Reads `stream` line by line into `sink` until it closes.
fn collect<T: Send + 'static>(
    stream: impl AsyncRead + Unpin + Send + 'static,
    sink: Arc<Mutex<T>>,
    push: fn(&mut T, String),
) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            push(&mut sink.lock().unwrap(), line);
        }
    });
}
