//! Message bodies are confidential: failure logs carry ids and errors, never bodies, unless
//! the user opts in.

use std::io::Write;
use std::sync::{Arc, Mutex};

use iniesta::testing::TestClient;
use iniesta::{App, BoxError, Json, Message, OutgoingMessage};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn logs_of_a_failure(log_bodies: bool) -> String {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let mut config = iniesta::config::ConsumerConfig::default();
    config.log_bodies = log_bodies;
    let client = TestClient::new(
        App::builder()
            .registered_handlers(false)
            .consumer_config(config)
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
    String::from_utf8(captured.0.lock().unwrap().clone()).unwrap()
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
