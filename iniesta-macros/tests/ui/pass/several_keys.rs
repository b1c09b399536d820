use iniesta::{BoxError, Message, handler};

#[handler("OrderCreated.order", "OrderPaid.order", "Shipment.*",)]
async fn orders(msg: Message) -> Result<(), BoxError> {
    let _ = msg;
    Ok(())
}

fn main() {}
