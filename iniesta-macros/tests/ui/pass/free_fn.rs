use iniesta::{BoxError, Message, handler};

#[handler("UserUpdated.user")]
async fn user_updated(msg: Message) -> Result<(), BoxError> {
    let _ = msg;
    Ok(())
}

// A raw identifier is registered without its `r#`.
#[handler("Match.game")]
async fn r#match(msg: Message) -> Result<(), BoxError> {
    let _ = msg;
    Ok(())
}

fn main() {
    // The fn is untouched: it can still be called directly.
    let _ = user_updated;
    let _ = r#match;
}
