use iniesta::{Message, handler};

#[handler("*.user", "User*.user")]
async fn users(msg: Message) {
    let _ = msg;
}

#[handler("*")]
async fn everything(msg: Message) {
    let _ = msg;
}

fn main() {}
