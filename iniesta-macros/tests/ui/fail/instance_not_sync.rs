use std::cell::Cell;

use iniesta::{handler, handlers};

struct Counter {
    seen: Cell<u64>,
}

#[handlers]
impl Counter {
    #[handler("UserUpdated.user")]
    async fn user_updated(&self) {
        self.seen.set(self.seen.get() + 1);
    }
}

fn main() {}
