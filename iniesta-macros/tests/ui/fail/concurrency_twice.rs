use iniesta::{Message, handler};

#[handler("Report.built", concurrency = 2, concurrency = 3)]
async fn report_built(msg: Message) {
    let _ = msg;
}

fn main() {}
