//! A server-side task publishing to `/ticker` every `$TICK_MS` milliseconds (default 1000):
//! `{"tick": n}`, numbered from 1. Subscribe a CometD client to `/ticker` to watch it.

use std::time::Duration;

use serde_json::json;

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let server = bayeux_examples::builder().build();
    let period = std::env::var("TICK_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map_or(Duration::from_secs(1), Duration::from_millis);
    let ticker = server.clone();
    actix_web::rt::spawn(async move {
        let mut interval = tokio::time::interval(period);
        for tick in 1u64.. {
            interval.tick().await;
            // Publishing is synchronous and never waits for subscribers: a slow one only
            // fills its own bounded queue.
            if let Err(why) = ticker.publish("/ticker", json!({ "tick": tick })) {
                eprintln!("ticker: {why}");
            }
        }
    });
    bayeux_examples::serve(server, None).await
}
