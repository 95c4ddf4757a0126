//! The admin endpoint (`"metrics": {"address": ...}`): Prometheus text at
//! `/metrics`, `/health`, and the status page with its live data.
//!
//! | path | what |
//! |---|---|
//! | `GET /` | the status page (one embedded HTML file) |
//! | `GET /metrics` | Prometheus text |
//! | `GET /health` | 200 while running, 503 while draining (never needs the token) |
//! | `GET /api/status` | a JSON snapshot, with the last minutes of rates |
//! | `GET /api/events` | server-sent events: a snapshot every second |
//! | `GET /api/tail?logger=&level=&q=&input=&output=` | server-sent events: matching records |
//!
//! With a token (`metrics.token_file`, required off loopback) every path
//! but `/health` needs `Authorization: Bearer <token>` or `?token=<token>`
//! (the page passes its own `?token=` on to the API), else 401.

pub mod status;
/// The live tail lives in the pipeline it taps; the status page and
/// `logrelay tap` read it from here.
pub use crate::pipeline::tail;
pub mod tap;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::auth::Token;

/// The status page: HTML, CSS and JavaScript in one file, no build step.
pub const PAGE: &str = include_str!("page.html");

/// Serve the admin endpoint on `listener` until `stop`. `token`, if set,
/// is required on every request but `/health`.
pub async fn serve(listener: TcpListener, stop: CancellationToken, token: Option<Arc<Token>>) {
    status::start_sampler();
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => return,
        };
        tokio::spawn(handle(stream, stop.clone(), token.clone()));
    }
}

/// The admin token in `path` (`metrics.token_file`).
pub fn read_token(path: &std::path::Path) -> Result<Arc<Token>, String> {
    Token::load(path)
        .map(Arc::new)
        .map_err(|e| format!("metrics.token_file: {e}"))
}

/// A parsed request head.
struct Request {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    bearer: Option<String>,
}

/// Read one request head; a client that sends none within 5 s is dropped.
async fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::with_capacity(1024);
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Ok::<(), std::io::Error>(())
    })
    .await;
    if !matches!(read, Ok(Ok(()))) {
        return None;
    }
    let head = String::from_utf8_lossy(&buf);
    let mut lines = head.split("\r\n");
    let mut parts = lines.next().unwrap_or("").split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut bearer = None;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("authorization") {
                let value = value.trim();
                if let Some(t) = value
                    .get(..7)
                    .filter(|s| s.eq_ignore_ascii_case("bearer "))
                    .and_then(|_| value.get(7..))
                {
                    bearer = Some(t.trim().to_string());
                }
            }
        }
    }
    Some(Request {
        method,
        path: path.to_string(),
        query: parse_query(query),
        bearer,
    })
}

/// `a=1&b=x%20y` into pairs, percent- and `+`-decoded.
pub fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn authorized(req: &Request, token: Option<&Token>) -> bool {
    let Some(token) = token else { return true };
    let given = req.bearer.as_deref().or_else(|| {
        req.query
            .iter()
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.as_str())
    });
    given.is_some_and(|g| token.matches(g.as_bytes()))
}

async fn handle(mut stream: TcpStream, stop: CancellationToken, token: Option<Arc<Token>>) {
    let Some(req) = read_request(&mut stream).await else {
        return;
    };
    // HEAD is GET without the body (RFC 9110 9.3.2): load balancers and
    // uptime checkers probe with it.
    let head = req.method == "HEAD";
    let method = if head { "GET" } else { req.method.as_str() };
    let registry = crate::metrics::global();
    if method == "GET" && req.path != "/health" && !authorized(&req, token.as_deref()) {
        let body = "a token is required: Authorization: Bearer <token>, or ?token=<token>\n";
        let response = format!(
            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"logrelay\"\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
            body.len(),
            if head { "" } else { body }
        );
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
        return;
    }
    let (status, ctype, body) = match (method, req.path.as_str()) {
        ("GET", "/metrics") => ("200 OK", "text/plain; version=0.0.4", registry.render()),
        ("GET", "/health") if registry.draining() => (
            "503 Service Unavailable",
            "text/plain",
            "draining\n".to_string(),
        ),
        ("GET", "/health") => ("200 OK", "text/plain", "ok\n".to_string()),
        ("GET", "/" | "/index.html") => ("200 OK", "text/html; charset=utf-8", PAGE.to_string()),
        ("GET", "/api/status") => (
            "200 OK",
            "application/json",
            status::snapshot(true).to_string(),
        ),
        ("GET", "/api/events") if !head => return events(stream, stop).await,
        ("GET", "/api/tail") if !head => return tail_stream(stream, stop, &req.query).await,
        ("GET", "/api/events" | "/api/tail") => ("200 OK", "text/event-stream", String::new()),
        ("GET", _) => ("404 Not Found", "text/plain", "not found\n".to_string()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "method not allowed\n".to_string(),
        ),
    };
    // A 405 must say which methods are allowed (RFC 9110 15.5.6).
    let allow = if status.starts_with("405") {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let extra = if ctype.starts_with("text/html") {
        "Cache-Control: no-store\r\nX-Frame-Options: DENY\r\nContent-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:\r\n"
    } else {
        ""
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n{allow}{extra}Connection: close\r\n\r\n{}",
        body.len(),
        if head { "" } else { body.as_str() }
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

const SSE_HEAD: &str = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nX-Accel-Buffering: no\r\nConnection: close\r\n\r\nretry: 2000\n\n";

/// `/api/events`: a full snapshot, then one a second (newest rates only).
async fn events(stream: TcpStream, stop: CancellationToken) {
    let (mut rd, mut wr) = stream.into_split();
    if wr.write_all(SSE_HEAD.as_bytes()).await.is_err() {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut full = true;
    let mut scratch = [0u8; 256];
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let snap = status::snapshot(full);
                full = false;
                let msg = format!("data: {snap}\n\n");
                if wr.write_all(msg.as_bytes()).await.is_err() {
                    return;
                }
            }
            r = rd.read(&mut scratch) => {
                if !matches!(r, Ok(n) if n > 0) {
                    return;
                }
            }
            _ = stop.cancelled() => return,
        }
    }
}

/// `/api/tail`: matching records as `data:` events (one JSON object
/// each), and every second an `event: skipped` with the number of records
/// skipped so far because this client read too slowly.
async fn tail_stream(stream: TcpStream, stop: CancellationToken, query: &[(String, String)]) {
    let (mut rd, mut wr) = stream.into_split();
    if wr.write_all(SSE_HEAD.as_bytes()).await.is_err() {
        return;
    }
    let mut sub = tail::subscribe(tail::TailFilter::from_query(query));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut scratch = [0u8; 256];
    let mut buf = String::new();
    loop {
        buf.clear();
        tokio::select! {
            ev = sub.rx.recv() => {
                let Some(ev) = ev else { return };
                buf.push_str("data: ");
                buf.push_str(&ev);
                buf.push_str("\n\n");
                // Whatever else is queued goes in the same write.
                for _ in 0..255 {
                    let Ok(ev) = sub.rx.try_recv() else { break };
                    buf.push_str("data: ");
                    buf.push_str(&ev);
                    buf.push_str("\n\n");
                }
            }
            _ = tick.tick() => {
                let skipped = sub.skipped.load(Ordering::Relaxed);
                buf.push_str(&format!("event: skipped\ndata: {skipped}\n\n"));
            }
            r = rd.read(&mut scratch) => {
                if !matches!(r, Ok(n) if n > 0) {
                    return;
                }
            }
            _ = stop.cancelled() => return,
        }
        if wr.write_all(buf.as_bytes()).await.is_err() {
            return;
        }
    }
}
