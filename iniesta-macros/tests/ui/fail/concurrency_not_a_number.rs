use iniesta::{Message, handler};

const LIMIT: usize = 2;

#[handler("Report.built", concurrency = LIMIT)]
async fn report_built(msg: Message) {
    let _ = msg;
}

#[handler("Report.sent", concurrency = "2")]
async fn report_sent(msg: Message) {
    let _ = msg;
}

#[handler("Report.read", concurrency = 2u8)]
async fn report_read(msg: Message) {
    let _ = msg;
}

fn main() {}
