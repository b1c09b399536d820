use iniesta::{Message, handler};

#[handler("UserUpdated.user", crate = nowhere)]
async fn user_updated(msg: Message) {
    let _ = msg;
}

fn main() {}
