use iniesta::{Message, handler};

#[handler(UserUpdated)]
async fn user_updated(msg: Message) {
    let _ = msg;
}

#[handler(42, b"UserCreated.user")]
async fn user_created(msg: Message) {
    let _ = msg;
}

fn main() {}
