use iniesta::{Message, handler};

#[handler("UserUpdated.user")]
async fn user_updated(msg: Message) -> String {
    format!("{msg:?}")
}

fn main() {}
