use iniesta::{Message, handler};

#[handler("UserUpdated.user")]
#[handler("UserCreated.user")]
async fn user_changed(msg: Message) {
    let _ = msg;
}

fn main() {}
