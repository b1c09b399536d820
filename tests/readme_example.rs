//! The README's main example: `examples/readme.rs` is the same program, and it runs against
//! moto from its `INIESTA_*` variables until SIGTERM.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{example, sqs};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::mpsc;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The README's ```` ```rust,no_run,standalone_crate ```` block holding `main`.
fn readme_main_example() -> String {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap();
    let blocks: Vec<&str> = readme
        .split("```rust")
        .skip(1)
        .filter_map(|rest| rest.split_once('\n'))
        .filter_map(|(_, body)| body.split_once("```\n").map(|(code, _)| code))
        .filter(|code| code.contains("App::from_env()") && code.contains("async fn main"))
        .collect();
    assert_eq!(
        blocks.len(),
        1,
        "one README block runs App::from_env in main"
    );
    blocks[0].to_owned()
}

#[test]
fn the_example_is_the_readme_main_example() {
    let example = std::fs::read_to_string(Path::new(ROOT).join("examples/readme.rs")).unwrap();
    // The example adds only its `//!` header (a binary needs crate docs).
    let code = example
        .lines()
        .skip_while(|line| line.starts_with("//!"))
        .skip_while(|line| line.is_empty())
        .map(|line| format!("{line}\n"))
        .collect::<String>();
    assert_eq!(
        code,
        readme_main_example(),
        "examples/readme.rs (after its //! header) and the README's main example differ: copy one into the other"
    );
}

/// Forwards each line of `stream` to `lines`, tagged with `name`, and echoes it.
fn forward(
    name: &'static str,
    stream: impl AsyncRead + Unpin + Send + 'static,
) -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut reader = BufReader::new(stream).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            eprintln!("[readme {name}] {line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits until every one of `expected` appeared in `lines`, collecting what was read.
async fn wait_for_lines(
    lines: &mut mpsc::UnboundedReceiver<String>,
    expected: &[&str],
    seen: &mut Vec<String>,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !expected
        .iter()
        .all(|want| seen.iter().any(|line| line.contains(want)))
    {
        match tokio::time::timeout_at(deadline, lines.recv()).await {
            Ok(Some(line)) => seen.push(line),
            Ok(None) => panic!("the example exited; it printed:\n{}", seen.join("\n")),
            Err(_) => panic!(
                "expected {expected:?} within 60 s; the example printed:\n{}",
                seen.join("\n")
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_main_example_handles_messages_from_sqs_and_stops_on_sigterm() {
    let endpoint = sqs::endpoint();
    sqs::require_aws_env();
    let queue = sqs::queue("readme").await;
    let binary = example::build("readme");

    let mut child = tokio::process::Command::new(binary)
        .env("INIESTA_SQS_QUEUE_NAME", &queue.name)
        .env("INIESTA_SQS_ENDPOINT_URL", &endpoint)
        .env("INIESTA_SQS_RECEIVE_MESSAGE_WAIT_TIME_SECONDS", "1")
        .env("INIESTA_LOCK_ENABLED", "false")
        .env("INIESTA_SHUTDOWN_GRACE", "5s")
        .env("RUST_LOG", "info")
        .env_remove("INIESTA_LOG_FORMAT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the example starts");
    let mut stdout = forward("stdout", child.stdout.take().unwrap());
    let mut stderr = forward("stderr", child.stderr.take().unwrap());

    queue
        .send(
            "UserUpdated.user",
            r#"{"id": 7, "email": "ada@example.com"}"#,
        )
        .await;
    queue.send("OrderCreated.order", r#"{"order": 1}"#).await;
    queue.send("UserDeleted.user", "{}").await;
    let invoice = queue.send("InvoiceSent.billing", "{}").await;
    queue.send("Unknown.event", "nobody routes this").await;

    let mut printed = Vec::new();
    let invoice_line = format!("invoice {invoice} billed in EUR");
    wait_for_lines(
        &mut stdout,
        &[
            "user 7 now has email ada@example.com",
            "order event Some(\"OrderCreated.order\"), attempt 1",
            "user deleted: Some(\"UserDeleted.user\")",
            &invoice_line,
            "no handler for Some(\"Unknown.event\")",
        ],
        &mut printed,
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while queue.count().await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "handled messages are still in the queue: {:?}",
            queue.counts().await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

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

    // The entry point installed a log output: startup and shutdown are on stderr.
    let mut logs = Vec::new();
    while let Some(line) = stderr.recv().await {
        logs.push(line);
    }
    let logs = logs.join("\n");
    assert!(logs.contains("shutdown requested"), "{logs}");
    assert!(logs.contains(" INFO "), "{logs}");
    assert!(
        !logs.contains("ada@example.com"),
        "a body was logged:\n{logs}"
    );
    queue.delete().await;
}
