use iniesta::{Message, handler};

#[handler("UserUpdated.user")]
async fn user_updated(count: u32, msg: &Message) {
    let _ = (count, msg);
}

fn main() {}
