//! OTLP export end to end: the README's example, built with the `otlp` feature and pointed at
//! a collector stand-in by `OTEL_EXPORTER_OTLP_ENDPOINT`, consumes a message from moto and
//! posts its delivery span to `/v1/traces`. Run with `./scripts/test.sh` (it starts moto).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::sqs;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Builds `examples/readme.rs` with every feature (`iniesta/otlp` among them) and returns the
/// executable cargo names.
fn build_example_with_otlp() -> PathBuf {
    // This test runs as <target>/<profile>/deps/ops_traces_otlp-<hash>.
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_owned();
    let target_dir = profile_dir.parent().unwrap();
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .current_dir(ROOT)
        .args([
            "build",
            "--quiet",
            "--example",
            "readme",
            // The feature set of `cargo test --workspace --all-features` (which has `otlp`),
            // so the build reuses the test build's `iniesta` instead of compiling another.
            "--workspace",
            "--all-features",
        ])
        .args(["--message-format", "json", "--target-dir"])
        .arg(target_dir)
        .stderr(Stdio::inherit());
    if profile_dir.ends_with("release") {
        cargo.arg("--release");
    }
    let output = cargo.output().expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo build --example readme --workspace --all-features failed"
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| message["target"]["name"] == "readme")
        .find_map(|message| message["executable"].as_str().map(PathBuf::from))
        .expect("cargo names the example's executable")
}

/// A collector stand-in: answers every HTTP request with 200 and hands over its path and body.
async fn collector() -> (String, mpsc::UnboundedReceiver<(String, Vec<u8>)>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, tx.clone()));
        }
    });
    (url, rx)
}

/// Reads HTTP/1.1 requests off one connection (keep-alive) until it closes.
async fn serve(mut stream: TcpStream, requests: mpsc::UnboundedSender<(String, Vec<u8>)>) {
    let mut buffer = Vec::new();
    loop {
        let head_end = loop {
            if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let mut chunk = [0u8; 8192];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
        let path = head
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        let length: usize = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .unwrap_or(0);
        while buffer.len() < head_end + length {
            let mut chunk = [0u8; 8192];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        }
        let body = buffer[head_end..head_end + length].to_vec();
        buffer.drain(..head_end + length);
        let _ = requests.send((path, body));
        let reply =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
        if stream.write_all(reply).await.is_err() {
            return;
        }
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_delivery_span_is_exported_over_otlp() {
    let endpoint = sqs::endpoint();
    sqs::require_aws_env();
    let queue = sqs::queue("traces-otlp").await;
    let binary = tokio::task::spawn_blocking(build_example_with_otlp)
        .await
        .unwrap();
    let (collector_url, mut requests) = collector().await;

    let mut child = tokio::process::Command::new(binary)
        .env("INIESTA_SQS_QUEUE_NAME", &queue.name)
        .env("INIESTA_SQS_ENDPOINT_URL", &endpoint)
        .env("INIESTA_SQS_RECEIVE_MESSAGE_WAIT_TIME_SECONDS", "1")
        .env("INIESTA_LOCK_ENABLED", "false")
        .env("INIESTA_SHUTDOWN_GRACE", "5s")
        .env("RUST_LOG", "info")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector_url)
        .env("OTEL_SERVICE_NAME", "readme-otlp")
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env_remove("OTEL_TRACES_EXPORTER")
        .env_remove("OTEL_SDK_DISABLED")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("the example starts");
    queue
        .send(
            "UserUpdated.user",
            r#"{"id": 7, "email": "ada@example.com"}"#,
        )
        .await;

    let span_name = format!("process {}", queue.name);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let (path, body) = loop {
        match tokio::time::timeout_at(deadline, requests.recv()).await {
            Ok(Some((path, body))) if contains(&body, &span_name) => break (path, body),
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => {
                panic!("no OTLP request carried the `{span_name}` span within 60 s")
            }
        }
    };
    assert_eq!(path, "/v1/traces");
    for expected in [
        "aws_sqs",
        "messaging.destination.name",
        "UserUpdated.user",
        "readme-otlp",
        "handled",
    ] {
        assert!(
            contains(&body, expected),
            "the exported span lacks {expected:?}"
        );
    }
    assert!(!contains(&body, "ada@example.com"), "a body was exported");

    let pid = child.id().expect("the example is running").to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -TERM {pid} failed");
    let exit = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("the example stops within 15 s of SIGTERM")
        .unwrap();
    assert!(exit.success(), "the example exited with {exit}");
    queue.delete().await;
}
