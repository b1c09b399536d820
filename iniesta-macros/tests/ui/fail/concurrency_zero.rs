use iniesta::{Message, handler};

#[handler("Report.built", concurrency = 0)]
async fn report_built(msg: Message) {
    let _ = msg;
}

fn main() {}
