use iniesta::{FromMessage, handler};

#[handler("UserUpdated.user")]
async fn user_updated<T: FromMessage>(value: T) {
    let _ = value;
}

fn main() {}
