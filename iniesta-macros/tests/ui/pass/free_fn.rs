use iniesta::{BoxError, Message, handler};

#[handler("UserUpdated.user")]
async fn user_updated(msg: Message) -> Result<(), BoxError> {
    let _ = msg;
    Ok(())
}

// A raw identifier is registered without its `r#`.
#[handler("Match.game")]
pub async fn r#match(msg: Message) -> Result<(), BoxError> {
    let _ = msg;
    Ok(())
}

// The registration follows the fn's `#[cfg]`: it does not name a fn that is configured out.
#[handler("UserDeleted.user")]
#[cfg(any())]
async fn configured_out(msg: Message) {
    let _ = msg;
}

mod nested {
    use iniesta::{Message, handler};

    #[handler("UserCreated.user")]
    pub(crate) async fn user_created(msg: Message) {
        let _ = msg;
    }
}

fn main() {
    // The fn is untouched: it can still be called directly.
    let _ = user_updated;
    let _ = r#match;
    let _ = nested::user_created;

    // A handler declared in a block.
    #[handler("UserMerged.user")]
    async fn user_merged(msg: Message) {
        let _ = msg;
    }
}
