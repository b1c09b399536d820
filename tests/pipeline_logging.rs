//! Message bodies are confidential: failure logs carry ids and errors, never bodies, unless
//! the user opts in.

mod support;

use iniesta::testing::TestClient;
use iniesta::{BoxError, Json, Message, OutgoingMessage};
use support::app::builder;
use support::logs::Logs;

async fn logs_of_a_failure(log_bodies: bool) -> String {
    let (logs, _guard) = Logs::capture();
    let client = TestClient::new(
        builder()
            .log_bodies(log_bodies)
            .handler("Card.charged", |_: Json<u64>| async {})
            .handler("Card.failed", |_: Message| async {
                Err::<(), BoxError>("card declined".into())
            }),
    )
    .unwrap();
    client
        .deliver(OutgoingMessage::new("Card.charged").body(r#"{"pan": "4111-SECRET"}"#))
        .await;
    client
        .deliver(OutgoingMessage::new("Card.failed").body("cvv=SECRET-123"))
        .await;
    logs.text()
}

#[tokio::test(start_paused = true)]
async fn failures_are_logged_without_bodies() {
    let logs = logs_of_a_failure(false).await;
    assert!(logs.contains("handler failed"), "{logs}");
    assert!(logs.contains("card declined"), "{logs}");
    assert!(logs.contains("not valid JSON for `u64`"), "{logs}");
    assert!(
        !logs.contains("SECRET"),
        "a body leaked into the logs:\n{logs}"
    );
}

#[tokio::test(start_paused = true)]
async fn bodies_are_logged_when_the_user_opts_in() {
    let logs = logs_of_a_failure(true).await;
    assert!(logs.contains("cvv=SECRET-123"), "{logs}");
}
