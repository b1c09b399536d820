//! Two `#[handler]`s for one key, or two fallbacks, fail at startup naming both places.

use iniesta::{App, Message, handler};

#[handler("Order.created")]
async fn first(_: Message) {}

#[handler("Order.created")]
async fn second(_: Message) {}

#[test]
fn duplicate_keys_across_functions_fail_at_startup() {
    let err = App::builder()
        .transport(iniesta::transport::MemoryQueue::default())
        .build()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("two handlers for event key `Order.created`"),
        "{err}"
    );
    assert!(
        err.contains("registry_duplicates::first (tests/registry_duplicates.rs:"),
        "{err}"
    );
    assert!(
        err.contains("registry_duplicates::second (tests/registry_duplicates.rs:"),
        "{err}"
    );
}
