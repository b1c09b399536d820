use iniesta::{BoxError, Message, handler};

#[handler]
async fn fallback(msg: Message) -> Result<(), BoxError> {
    let _ = msg;
    Ok(())
}

fn main() {}
