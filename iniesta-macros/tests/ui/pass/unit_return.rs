use iniesta::{Message, handler};

#[handler("UserDeleted.user")]
async fn user_deleted(msg: Message) {
    let _ = msg;
}

#[handler("UserMerged.user")]
async fn user_merged() -> () {}

// Any error that converts into `BoxError`.
#[handler("UserRenamed.user")]
async fn user_renamed(_: Message) -> Result<(), std::io::Error> {
    Ok(())
}

fn main() {}
