use iniesta::{Context, Json, Message, State, handler};

#[derive(Clone)]
struct Db {
    url: String,
}

#[derive(serde::Deserialize)]
struct User {
    id: u64,
}

#[handler("UserUpdated.*")]
async fn any_user(Json(value): Json<serde_json::Value>, ctx: Context) {
    let _ = (value, ctx);
}

#[handler("UserCreated.user")]
async fn user_created(
    Json(user): Json<User>,
    State(db): State<Db>,
    ctx: Context,
    msg: Message,
) -> Result<(), iniesta::BoxError> {
    let _ = (user.id, db.url, ctx, msg);
    Ok(())
}

fn main() {}
