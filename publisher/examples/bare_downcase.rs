//! The benchmarks' anchor (`python3 bench/downcase.py --anchor`): a bare axum `/downcase`
//! as anyone would write it — lower-case `param`, answer the publisher's JSON shape — with
//! nothing published, no limits, no metrics. What the system does on top of this is what the
//! benchmark prices.
//!
//! `HTTP_ADDR` (default `127.0.0.1:0`); prints the publisher's `publisher listening` line as
//! JSON on stderr, so the benchmark finds the port the same way.

use axum::Json;
use axum::extract::Query;
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Params {
    param: String,
}

async fn downcase(Query(params): Query<Params>) -> Json<Value> {
    let result = params.param.to_lowercase();
    Json(json!({
        "param": params.param,
        "result": result,
        "event": { "publisher": "anchor", "seq": 0 },
    }))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::var("HTTP_ADDR").unwrap_or_else(|_| "127.0.0.1:0".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let http = listener.local_addr()?;
    eprintln!(
        "{}",
        json!({ "fields": { "message": "publisher listening", "http": http.to_string() } })
    );
    let app = axum::Router::new().route("/downcase", get(downcase));
    axum::serve(listener, app).await
}
