//! Writes a self-signed certificate for `127.0.0.1` and `localhost`, for tests that serve
//! `https://` and `wss://`: `self-signed-cert DIR` creates `DIR/cert.pem` and `DIR/key.pem`.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: self-signed-cert DIR");
        return ExitCode::from(2);
    };
    let names = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
    let made = match rcgen::generate_simple_self_signed(names) {
        Ok(made) => made,
        Err(why) => {
            eprintln!("self-signed-cert: {why}");
            return ExitCode::FAILURE;
        }
    };
    let written = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(dir.join("cert.pem"), made.cert.pem()))
        .and_then(|()| std::fs::write(dir.join("key.pem"), made.signing_key.serialize_pem()));
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("self-signed-cert: {}: {why}", dir.display());
            ExitCode::FAILURE
        }
    }
}
