use iniesta::{Message, handler};

#[handler("UserUpdated.user", "UserCreated.user", "UserUpdated.user")]
async fn user_updated(msg: Message) {
    let _ = msg;
}

fn main() {}
