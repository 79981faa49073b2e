//! Examples of embedding the Bayeux server; each is a file beside this one, run with
//! `cargo run -p bayeux-examples --example <name>`.
