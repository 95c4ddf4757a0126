//! The `udp` input: DatagramHandler sends one whole SocketHandler frame
//! (length prefix included) per datagram; with `framing: "newline"` a
//! datagram holds one or more JSON lines (as Vector and Fluent Bit send).

use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::net::UdpSocket;
use tokio_util::task::TaskTracker;

use super::{decode_into, frame_reason, warn_limited, ConnContext};

/// Datagrams taken per batch before dispatching.
const BATCH: usize = 256;

pub(crate) async fn start(
    address: &str,
    ctx: ConnContext,
    tracker: &TaskTracker,
) -> Result<(Vec<String>, Vec<RawFd>), String> {
    let addrs = super::resolve(address).await?;
    let inherited = addrs.iter().find_map(super::inherit::take_udp);
    let socket = match inherited {
        Some(s) => s
            .set_nonblocking(true)
            .and_then(|()| UdpSocket::from_std(s)),
        None => UdpSocket::bind(&addrs[..]).await,
    }
    .map_err(|e| e.to_string())?;
    // A bigger receive buffer rides out bursts: UDP has no flow control.
    let sock = socket2::SockRef::from(&socket);
    let _ = sock.set_recv_buffer_size(8 * 1024 * 1024);
    let local = vec![socket
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default()];
    let fds = vec![socket.as_raw_fd()];
    tracker.spawn(recv_loop(socket, ctx));
    Ok((local, fds))
}

async fn recv_loop(socket: UdpSocket, mut ctx: ConnContext) {
    let mut pipeline = ctx.pipelines.borrow_and_update().clone();
    let mut buf = BytesMut::with_capacity(65536 * 4);
    loop {
        let first = tokio::select! {
            r = recv(&socket, &mut buf) => r,
            _ = ctx.removed.cancelled() => break,
        };
        let mut datagrams = vec![first];
        while datagrams.len() < BATCH {
            match try_recv(&socket, &mut buf) {
                Some(d) => datagrams.push(d),
                None => break,
            }
        }
        handle(&mut ctx, &mut pipeline, datagrams).await;
    }
    // Shutdown or removal: take what the kernel already queued, until
    // quiet for 100 ms.
    while let Ok(d) =
        tokio::time::timeout(Duration::from_millis(100), recv(&socket, &mut buf)).await
    {
        handle(&mut ctx, &mut pipeline, vec![d]).await;
    }
}

type Datagram = std::io::Result<(Bytes, std::net::SocketAddr)>;

async fn recv(socket: &UdpSocket, buf: &mut BytesMut) -> Datagram {
    loop {
        buf.reserve(65536);
        match socket.recv_buf_from(buf).await {
            Ok((_, peer)) => return Ok((buf.split().freeze(), peer)),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

fn try_recv(socket: &UdpSocket, buf: &mut BytesMut) -> Option<Datagram> {
    buf.reserve(65536);
    match socket.try_recv_buf_from(buf) {
        Ok((_, peer)) => Some(Ok((buf.split().freeze(), peer))),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
        Err(e) => Some(Err(e)),
    }
}

async fn handle(
    ctx: &mut ConnContext,
    pipeline: &mut Arc<crate::pipeline::Pipeline>,
    datagrams: Vec<Datagram>,
) {
    let Some(stage) = super::refresh(ctx, pipeline) else {
        return;
    };
    let mut records = Vec::with_capacity(datagrams.len());
    for d in datagrams {
        let (data, _peer) = match d {
            Ok(d) => d,
            Err(e) => {
                // ICMP errors and the like surface here; nothing to drop.
                tracing::debug!(input = %ctx.key, error = %e, "UDP receive error.");
                continue;
            }
        };
        ctx.stats
            .bytes
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        // A datagram is one frame. Newline-framed, one that is not a
        // record as a whole (several JSON lines, as Vector and Fluent Bit
        // send them) is taken line by line, and a bad line drops only
        // itself.
        if stage.framer.datagram_whole_first(&data) {
            if let Ok(record) = stage.decoder.decode_keeping(data.clone(), stage.keep_now()) {
                records.push(record);
                continue;
            }
        }
        for frame in stage.framer.datagram(data) {
            match frame {
                Ok(frame) => decode_into(&stage, ctx, frame, &mut records),
                Err(e) => {
                    ctx.stats.reject(frame_reason(&e));
                    warn_limited(
                        &stage.name,
                        frame_reason(&e),
                        &format!("{e}; frame dropped"),
                    );
                }
            }
        }
    }
    ctx.stats
        .received
        .fetch_add(records.len() as u64, Ordering::Relaxed);
    pipeline.dispatch(&stage, records, None).await;
}
