//! One connection of a forward output: connecting (and the acknowledged
//! handshake), writing frames or batches, and a reader task that turns what
//! the peer sends back (confirmations, Fluentd acks, EOF) into [`Event`]s.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::codec::ack::{GOODBYE, MAGIC, MAGIC_V2};
use crate::config::{Encoder, ForwardOutputConfig, ForwardTarget};

/// Longest wait for a connect or the handshake reply.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a write may stall before the connection counts as dead.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// What the output speaks on its connections.
pub(super) enum Proto {
    /// Length-prefixed frames, as SocketHandler (pickle, json, msgpack).
    Plain,
    /// logrelay's acknowledged batches (`ack: true`).
    Acked {
        /// The sender id sent in the handshake.
        id: String,
        /// The encoder byte of the handshake.
        encoder: u8,
        /// The shared secret the receiver requires (`token_file`): sent
        /// in a version 2 handshake.
        token: Option<crate::auth::Token>,
    },
    /// Fluentd's forward protocol, Forward mode.
    Fluent {
        /// The tag of every message.
        tag: String,
        /// Send the `chunk` option and wait for its `ack`.
        require_ack: bool,
        /// Random prefix of chunk ids.
        id: u64,
    },
}

impl Proto {
    pub(super) fn of(config: &ForwardOutputConfig, name: &str) -> Proto {
        let random = random_u64();
        match config.encoder {
            Encoder::Fluent => Proto::Fluent {
                tag: config.tag.clone(),
                require_ack: config.require_ack,
                id: random,
            },
            _ if config.ack => Proto::Acked {
                id: format!("{name}-{random:016x}"),
                encoder: super::ack_encoder_byte(config.encoder),
                token: config.token.clone(),
            },
            _ => Proto::Plain,
        }
    }

    /// Whether batches wait for the peer's confirmation.
    pub(super) fn confirms(&self) -> bool {
        match self {
            Proto::Plain => false,
            Proto::Acked { .. } => true,
            Proto::Fluent { require_ack, .. } => *require_ack,
        }
    }

    /// Whether records travel in numbered batches.
    pub(super) fn batched(&self) -> bool {
        !matches!(self, Proto::Plain)
    }
}

/// A random-enough id without a dependency: time, pid and a stack address
/// through the std hasher's random keys.
pub(crate) fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// What the reader task reports.
#[derive(Debug)]
pub(super) enum Event {
    /// Every batch up to this sequence is confirmed.
    Confirmed(u64),
    /// The receiver is closing: send nothing more on this connection.
    Goodbye,
    /// The peer closed the connection.
    Closed(String),
    /// Reading failed or the peer sent garbage.
    Error(String),
}

type Writer = Box<dyn AsyncWrite + Unpin + Send>;
type Reader = Box<dyn AsyncRead + Unpin + Send>;

/// A connected peer.
pub(super) struct Conn {
    writer: Writer,
    /// Confirmations and connection ends, from the reader task.
    pub events: mpsc::Receiver<Event>,
    reader: JoinHandle<()>,
    buf: Vec<u8>,
}

impl Conn {
    /// Connect and, in acknowledged mode, shake hands. Returns the
    /// connection and the last sequence the receiver already has (0 if
    /// none or not acknowledged).
    pub(super) async fn open(
        config: &ForwardOutputConfig,
        proto: &Proto,
    ) -> io::Result<(Conn, u64)> {
        let (mut reader, mut writer): (Reader, Writer) =
            tokio::time::timeout(CONNECT_TIMEOUT, connect(config))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        let mut last = 0;
        if let Proto::Acked { id, encoder, token } = proto {
            let magic = if token.is_some() { MAGIC_V2 } else { MAGIC };
            let mut hello = vec![0u8; 4];
            hello.extend_from_slice(magic);
            hello.push(*encoder);
            hello.extend_from_slice(&(id.len() as u16).to_be_bytes());
            hello.extend_from_slice(id.as_bytes());
            if let Some(t) = token {
                let secret = t.secret();
                hello.extend_from_slice(&(secret.len() as u16).to_be_bytes());
                hello.extend_from_slice(secret);
            }
            writer.write_all(&hello).await?;
            writer.flush().await?;
            let mut reply = [0u8; 15 + 8];
            let got = tokio::time::timeout(CONNECT_TIMEOUT, reader.read_exact(&mut reply))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no handshake reply"))?;
            match got {
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    let why = if token.is_some() {
                        "the receiver closed the connection at the handshake: is `token_file` the receiver's token?"
                    } else {
                        "the receiver closed the connection at the handshake: does its input require a token (`token_file`)?"
                    };
                    return Err(io::Error::new(io::ErrorKind::PermissionDenied, why));
                }
                r => r?,
            };
            if &reply[..15] != magic {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the peer does not speak logrelay's acknowledged protocol (is it a logrelay?)",
                ));
            }
            let mut n = [0u8; 8];
            n.copy_from_slice(&reply[15..]);
            last = u64::from_be_bytes(n);
        }
        let (tx, events) = mpsc::channel(64);
        let reader = match proto {
            Proto::Plain => tokio::spawn(read_plain(reader, tx)),
            Proto::Acked { .. } => tokio::spawn(read_acks(reader, tx)),
            Proto::Fluent { id, .. } => tokio::spawn(read_fluent_acks(reader, tx, *id)),
        };
        Ok((
            Conn {
                writer,
                events,
                reader,
                buf: Vec::new(),
            },
            last,
        ))
    }

    /// Write length-prefixed frames.
    pub(super) async fn send_frames(&mut self, payloads: &[Bytes]) -> io::Result<()> {
        self.buf.clear();
        for p in payloads {
            crate::codec::encode::frame(p, &mut self.buf);
        }
        self.write_buf().await
    }

    /// Write one batch: an acknowledged batch or a Fluentd message.
    pub(super) async fn send_batch(
        &mut self,
        proto: &Proto,
        seq: u64,
        payloads: &[Bytes],
    ) -> io::Result<()> {
        self.buf.clear();
        match proto {
            Proto::Plain => {
                for p in payloads {
                    crate::codec::encode::frame(p, &mut self.buf);
                }
            }
            Proto::Acked { .. } => {
                self.buf.extend_from_slice(&seq.to_be_bytes());
                self.buf
                    .extend_from_slice(&(payloads.len() as u32).to_be_bytes());
                for p in payloads {
                    crate::codec::encode::frame(p, &mut self.buf);
                }
            }
            Proto::Fluent {
                tag,
                require_ack,
                id,
            } => {
                // [tag, [entry, ...], {"chunk": id}] — Forward mode.
                let msg = &mut self.buf;
                msg.push(if *require_ack { 0x93 } else { 0x92 });
                crate::codec::msgpack::write_str(tag, msg);
                let n = payloads.len();
                if n < 16 {
                    msg.push(0x90 | n as u8);
                } else if n <= 0xffff {
                    msg.push(0xdc);
                    msg.extend_from_slice(&(n as u16).to_be_bytes());
                } else {
                    msg.push(0xdd);
                    msg.extend_from_slice(&(n as u32).to_be_bytes());
                }
                for p in payloads {
                    msg.extend_from_slice(p);
                }
                if *require_ack {
                    msg.push(0x81);
                    crate::codec::msgpack::write_str("chunk", msg);
                    crate::codec::msgpack::write_str(&chunk_id(*id, seq), msg);
                }
            }
        }
        self.write_buf().await
    }

    async fn write_buf(&mut self) -> io::Result<()> {
        let write = async {
            self.writer.write_all(&self.buf).await?;
            self.writer.flush().await
        };
        tokio::time::timeout(WRITE_TIMEOUT, write)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "write stalled"))?
    }

    /// Close cleanly: flush and shut the write side down.
    pub(super) async fn close(mut self) {
        let _ = tokio::time::timeout(CONNECT_TIMEOUT, self.writer.shutdown()).await;
        self.reader.abort();
    }

    /// Drop the connection now.
    pub(super) fn abort(self) {
        self.reader.abort();
    }
}

async fn connect(config: &ForwardOutputConfig) -> io::Result<(Reader, Writer)> {
    Ok(match &config.target {
        ForwardTarget::Tcp(address) => {
            let s = tokio::net::TcpStream::connect(address.as_str()).await?;
            let _ = s.set_nodelay(true);
            match &config.tls {
                None => {
                    let (r, w) = s.into_split();
                    (Box::new(r), Box::new(w))
                }
                Some(tls) => {
                    // Loaded at each connect: replaced files take effect
                    // at the next connection.
                    let invalid = |e: crate::tls::TlsError| {
                        io::Error::new(io::ErrorKind::InvalidInput, format!("tls.{e}"))
                    };
                    let client = tls.load().map_err(invalid)?;
                    let name = tls.server_name().map_err(invalid)?;
                    let stream = tokio_rustls::TlsConnector::from(client)
                        .connect(name, s)
                        .await
                        .map_err(|e| io::Error::new(e.kind(), format!("TLS handshake: {e}")))?;
                    let (r, w) = tokio::io::split(stream);
                    (Box::new(r), Box::new(w))
                }
            }
        }
        ForwardTarget::Unix(path) => {
            let s = tokio::net::UnixStream::connect(path).await?;
            let (r, w) = s.into_split();
            (Box::new(r), Box::new(w))
        }
    })
}

/// A plain peer sends nothing; reading only notices that it closed.
async fn read_plain(mut r: Reader, tx: mpsc::Sender<Event>) {
    let mut sink = [0u8; 4096];
    let ev = loop {
        match r.read(&mut sink).await {
            Ok(0) => break Event::Closed("the peer closed the connection".into()),
            Ok(_) => {}
            Err(e) => break Event::Error(e.to_string()),
        }
    };
    let _ = tx.send(ev).await;
}

async fn read_acks(mut r: Reader, tx: mpsc::Sender<Event>) {
    loop {
        let mut n = [0u8; 8];
        let ev = match r.read_exact(&mut n).await {
            Ok(_) => match u64::from_be_bytes(n) {
                GOODBYE => Event::Goodbye,
                seq => Event::Confirmed(seq),
            },
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                Event::Closed("the peer closed the connection".into())
            }
            Err(e) => Event::Error(e.to_string()),
        };
        let end = matches!(ev, Event::Closed(_) | Event::Error(_));
        if tx.send(ev).await.is_err() || end {
            return;
        }
    }
}

/// Fluentd answers `{"ack": "<chunk>"}` per acknowledged message.
async fn read_fluent_acks(mut r: Reader, tx: mpsc::Sender<Event>, id: u64) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = match r.read(&mut chunk).await {
            Ok(0) => {
                let _ = tx
                    .send(Event::Closed("the peer closed the connection".into()))
                    .await;
                return;
            }
            Ok(n) => n,
            Err(e) => {
                let _ = tx.send(Event::Error(e.to_string())).await;
                return;
            }
        };
        buf.extend_from_slice(&chunk[..n]);
        loop {
            match parse_fluent_ack(&buf) {
                Ok(Some((ack, used))) => {
                    buf.drain(..used);
                    let ev = match seq_of_chunk(id, &ack) {
                        Some(seq) => Event::Confirmed(seq),
                        None => Event::Error(format!("ack for an unknown chunk {ack:?}")),
                    };
                    if tx.send(ev).await.is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(why) => {
                    let _ = tx.send(Event::Error(why)).await;
                    return;
                }
            }
        }
    }
}

/// The chunk id of batch `seq`: base64 of 16 bytes (id, seq), as Fluentd's
/// own clients use a base64 of 128 bits.
pub(super) fn chunk_id(id: u64, seq: u64) -> String {
    let mut raw = [0u8; 16];
    raw[..8].copy_from_slice(&id.to_be_bytes());
    raw[8..].copy_from_slice(&seq.to_be_bytes());
    base64(&raw)
}

fn seq_of_chunk(id: u64, chunk: &str) -> Option<u64> {
    let raw = unbase64(chunk)?;
    if raw.len() != 16 || raw[..8] != id.to_be_bytes() {
        return None;
    }
    let mut s = [0u8; 8];
    s.copy_from_slice(&raw[8..]);
    Some(u64::from_be_bytes(s))
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64(raw: &[u8]) -> String {
    let mut out = String::new();
    for c in raw.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= c.len() {
                out.push(char::from(B64[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn unbase64(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = B64.iter().position(|&x| x == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// One `{"ack": "<chunk>"}` map at the start of `buf`: `Ok(Some((chunk,
/// bytes used)))`, `Ok(None)` when incomplete.
fn parse_fluent_ack(buf: &[u8]) -> Result<Option<(String, usize)>, String> {
    let Some(&marker) = buf.first() else {
        return Ok(None);
    };
    if marker != 0x81 {
        return Err(format!(
            "unexpected response byte 0x{marker:02x} (want an ack map)"
        ));
    }
    let mut pos = 1;
    let mut strs = Vec::new();
    for _ in 0..2 {
        let Some(&m) = buf.get(pos) else {
            return Ok(None);
        };
        let (len, head) = match m {
            0xa0..=0xbf => (usize::from(m & 0x1f), 1),
            0xd9 => match buf.get(pos + 1) {
                Some(&l) => (usize::from(l), 2),
                None => return Ok(None),
            },
            _ => return Err(format!("unexpected byte 0x{m:02x} in an ack map")),
        };
        let end = pos + head + len;
        let Some(s) = buf.get(pos + head..end) else {
            return Ok(None);
        };
        strs.push(String::from_utf8_lossy(s).into_owned());
        pos = end;
    }
    if strs[0] != "ack" {
        return Err(format!("unexpected key {:?} in an ack map", strs[0]));
    }
    Ok(Some((strs.swap_remove(1), pos)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_ids_round_trip() {
        let c = chunk_id(0x0102_0304_0506_0708, 42);
        assert_eq!(c.len(), 24);
        assert_eq!(seq_of_chunk(0x0102_0304_0506_0708, &c), Some(42));
        assert_eq!(seq_of_chunk(7, &c), None);
        assert_eq!(base64(b"any carnal pleas"), "YW55IGNhcm5hbCBwbGVhcw==");
    }

    #[test]
    fn fluent_acks_parse_whole_or_wait() {
        let mut msg = vec![0x81];
        crate::codec::msgpack::write_str("ack", &mut msg);
        crate::codec::msgpack::write_str("abc", &mut msg);
        for cut in 0..msg.len() {
            assert_eq!(parse_fluent_ack(&msg[..cut]), Ok(None));
        }
        assert_eq!(parse_fluent_ack(&msg), Ok(Some(("abc".into(), msg.len()))));
        assert!(parse_fluent_ack(b"\x92").is_err());
    }
}
