use iniesta::{Message, handler};

// Every error of the signature and the keys is reported at once.
#[handler("", "A.x", "A.x")]
unsafe fn user_updated<T>(msg: Message, value: impl Into<T>) {
    let _ = (msg, value);
}

fn main() {}
