use std::rc::Rc;

use iniesta::{Message, handler};

async fn audit() {}

#[handler("UserUpdated.user")]
async fn user_updated(msg: Message) {
    let id = Rc::new(msg.id().to_owned());
    audit().await;
    let _ = id;
}

fn main() {}
