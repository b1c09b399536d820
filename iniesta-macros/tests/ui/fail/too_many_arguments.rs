use iniesta::{Context, Message, handler};

#[handler("UserUpdated.user")]
async fn user_updated(
    a: Message,
    b: Message,
    c: Message,
    d: Message,
    e: Context,
    f: Context,
    g: Context,
    h: Context,
    i: Message,
) {
    let _ = (a, b, c, d, e, f, g, h, i);
}

fn main() {}
