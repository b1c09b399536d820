//! The entry point's default log output: installed when the program has none, never twice,
//! and never by `App::builder()`.
//!
//! One test: a global subscriber is per process.

use iniesta::App;

#[tokio::test]
async fn from_env_installs_a_log_output_once_and_the_builder_never_does() {
    assert!(!tracing::dispatcher::has_been_set(), "nothing set one yet");
    let app = App::builder()
        .registered_handlers(false)
        .transport(iniesta::transport::MemoryQueue::default())
        .build()
        .expect("a valid app");
    drop(app);
    assert!(
        !tracing::dispatcher::has_been_set(),
        "App::builder installed a subscriber"
    );
    // Whatever the environment names (no queue here, so an error), the output is in place once
    // the settings were read.
    let first = App::from_env().await;
    assert!(
        tracing::dispatcher::has_been_set(),
        "App::from_env installed no subscriber ({:?})",
        first.err()
    );
    // A second entry point finds one set and leaves it, without panicking.
    let second = App::from_env().await;
    assert!(tracing::dispatcher::has_been_set(), "{:?}", second.err());
}
