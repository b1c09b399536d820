use iniesta::{Message, handler};

#[handler("UserUpdated.user")]
fn user_updated(msg: Message) {
    let _ = msg;
}

fn main() {}
