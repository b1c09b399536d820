use iniesta::{Message, handler};

#[handler(key = "UserUpdated.user")]
async fn user_updated(msg: Message) {
    let _ = msg;
}

fn main() {}
