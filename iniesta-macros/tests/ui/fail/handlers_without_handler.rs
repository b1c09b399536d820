use iniesta::handlers;

struct Billing;

#[handlers]
impl Billing {
    fn total(&self) -> u64 {
        0
    }
}

fn main() {}
