use iniesta::handler;

#[handler("UserUpdated.user")]
struct UserUpdated {
    id: u64,
}

fn main() {
    // The struct is still emitted: using it raises no second error.
    let _ = UserUpdated { id: 1 }.id;
}
