//! `logrelay tap`: the live tail in a terminal. Connects to the admin
//! endpoint's `/api/tail` and prints one line per record (the default
//! format, or the record's fields as JSON with `--json`) until Ctrl-C.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::Duration;

pub use crate::cli::TapArgs;

fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Run `tap`; `config` is where the defaults come from.
pub fn run(args: TapArgs, config: &crate::run::ConfigSource) -> ExitCode {
    let loaded = if args.metrics_address.is_none() || args.token_file.is_none() {
        config.load().ok()
    } else {
        None
    };
    let metrics = loaded.as_ref().and_then(|c| c.metrics.clone());
    let Some(address) = args
        .metrics_address
        .clone()
        .or_else(|| metrics.as_ref().map(|m| m.address.clone()))
    else {
        eprintln!(
            "tap: no metrics address: {} has no \"metrics\" section; give --metrics-address HOST:PORT",
            config.path.display()
        );
        return ExitCode::FAILURE;
    };
    // A wildcard bind is reached through loopback.
    let connect = address
        .replace("0.0.0.0:", "127.0.0.1:")
        .replace("[::]:", "[::1]:");
    let token_file = args
        .token_file
        .clone()
        .or_else(|| metrics.and_then(|m| m.token_file));
    let token = match &token_file {
        Some(p) => match super::read_token(p) {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("tap: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let mut query = Vec::new();
    for (k, v) in [
        ("input", &args.input),
        ("output", &args.output),
        ("logger", &args.logger),
        ("level", &args.level),
    ] {
        if let Some(v) = v {
            query.push(format!("{k}={}", encode(v)));
        }
    }
    let token = token.map(|t| String::from_utf8_lossy(t.secret()).into_owned());
    match stream(&connect, &query.join("&"), token.as_deref(), args.json) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tap: {connect}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn stream(address: &str, query: &str, token: Option<&str>, json: bool) -> Result<(), String> {
    let mut conn = TcpStream::connect(address).map_err(|e| format!("cannot connect: {e}"))?;
    let _ = conn.set_nodelay(true);
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        conn,
        "GET /api/tail?{query} HTTP/1.1\r\nHost: {address}\r\nAccept: text/event-stream\r\n{auth}\r\n"
    )
    .map_err(|e| e.to_string())?;
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(conn);
    let mut status = String::new();
    reader
        .read_line(&mut status)
        .map_err(|e| format!("no answer: {e}"))?;
    if !status.starts_with("HTTP/1.1 200") {
        let code = status.trim();
        return Err(if code.contains(" 401 ") {
            format!("{code}: a token is required (metrics.token_file, or --token-file)")
        } else {
            format!("{code} (is this logrelay's metrics address?)")
        });
    }
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
            return Err("the connection closed".into());
        }
        if line.trim_end().is_empty() {
            break;
        }
    }
    let stdout = std::io::stdout();
    let mut skipped = 0u64;
    let mut event = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => return Err("the listener closed the stream".into()),
            Ok(_) => {}
            // The server sends a `skipped` event every second; a read
            // timeout means it is gone.
            Err(e) => return Err(e.to_string()),
        }
        let text = line.trim_end_matches(['\r', '\n']);
        if let Some(name) = text.strip_prefix("event: ") {
            event = name.to_string();
        } else if let Some(data) = text.strip_prefix("data: ") {
            if event == "skipped" {
                let n: u64 = data.trim().parse().unwrap_or(skipped);
                if n > skipped {
                    eprintln!("tap: {} records skipped (reading too slowly)", n - skipped);
                    skipped = n;
                }
                continue;
            }
            let Ok(v) = serde_json::from_str::<serde_json::Value>(data) else {
                continue;
            };
            let mut out = stdout.lock();
            let written = if json {
                writeln!(out, "{}", v["fields"])
            } else {
                writeln!(out, "{}", v["line"].as_str().unwrap_or_default())
            };
            if written.and_then(|_| out.flush()).is_err() {
                // stdout closed (`tap | head`): done.
                return Ok(());
            }
        } else if text.is_empty() {
            event.clear();
        }
    }
}
