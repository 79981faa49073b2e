//! A Rust service subscribed to a remote CometD server, printing what arrives.
//!
//! ```text
//! cargo run -p bayeux-examples --example remote_subscriber -- [URL] [CHANNEL...]
//! ```
//! URL defaults to `http://127.0.0.1:8080/cometd` and CHANNEL to `/**` (everything). The client
//! prefers a websocket and falls back to long-polling; it survives server restarts (it
//! handshakes again and renews its subscriptions). Ctrl-C disconnects cleanly.

use bayeux_client::Client;
use futures_util::{stream, StreamExt};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:8080/cometd".to_owned());
    let mut channels: Vec<String> = args.collect();
    if channels.is_empty() {
        channels.push("/**".to_owned());
    }

    let client = Client::connect(&url).await?;
    eprintln!(
        "connected to {url} over {} as {}",
        client.transport(),
        client.client_id().unwrap_or_default()
    );
    let mut subscriptions = Vec::new();
    for channel in &channels {
        subscriptions.push(client.subscribe(channel).await?);
        eprintln!("subscribed to {channel}");
    }

    // One stream of everything, whichever subscription it came through.
    let mut messages = stream::select_all(subscriptions);
    loop {
        tokio::select! {
            message = messages.next() => match message {
                Some(message) => println!(
                    "{} {}",
                    message.channel().unwrap_or("?"),
                    message.data().cloned().unwrap_or_default()
                ),
                None => {
                    eprintln!("the server ended the session");
                    return Ok(());
                }
            },
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    client.disconnect().await?;
    eprintln!("disconnected");
    Ok(())
}
