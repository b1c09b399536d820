use iniesta::{Message, handler};

#[handler("")]
async fn user_updated(msg: Message) {
    let _ = msg;
}

fn main() {}
