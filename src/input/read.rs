//! Reading a stream connection: readiness before buffers, and a bounded
//! number of connections holding a read's data at once.

use std::future::Future;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

/// Read buffer per connection: large reads, few system calls.
pub(crate) const READ_CHUNK: usize = 64 * 1024;
/// The read size of a connection that is not busy: the first read, and
/// every read after one that left most of its room empty. A sender that
/// logs now and then (most of them) costs 4 KiB while it sends and nothing
/// while it is quiet, so 10,000 connections fit in a few tens of MiB.
pub(super) const SMALL_READ: usize = 4 * 1024;

/// A stream whose readiness can be awaited before any buffer exists, so an
/// idle connection holds no read buffer.
pub(crate) trait Readable {
    /// Wait until a read would probably not block.
    fn readable(&self) -> impl std::future::Future<Output = std::io::Result<()>> + Send;

    /// A duplicate of the connection's fd for an upgrade's successor, or
    /// `None` if the connection cannot move (TLS: its session state lives
    /// in this process).
    fn handoff_fd(&self) -> Option<std::io::Result<std::os::fd::OwnedFd>> {
        None
    }
}

impl Readable for tokio::net::TcpStream {
    fn readable(&self) -> impl std::future::Future<Output = std::io::Result<()>> + Send {
        tokio::net::TcpStream::readable(self)
    }

    fn handoff_fd(&self) -> Option<std::io::Result<std::os::fd::OwnedFd>> {
        use std::os::fd::AsFd;
        Some(self.as_fd().try_clone_to_owned())
    }
}

impl Readable for tokio::net::UnixStream {
    fn readable(&self) -> impl std::future::Future<Output = std::io::Result<()>> + Send {
        tokio::net::UnixStream::readable(self)
    }

    fn handoff_fd(&self) -> Option<std::io::Result<std::os::fd::OwnedFd>> {
        use std::os::fd::AsFd;
        Some(self.as_fd().try_clone_to_owned())
    }
}

/// Connections that may hold a read's data at once, from the read until
/// its records are queued to the outputs. Ten thousand senders that all
/// send at once then cost this many buffers and batches, not ten thousand:
/// the rest of their bytes wait in the kernel's socket buffers. A
/// connection takes a slot only once its socket is readable and gives it
/// back if the read finds nothing, so a client that stops in the middle of
/// a frame never holds one while it is silent.
const READ_SLOTS: usize = 64;
static READS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(READ_SLOTS);

/// What one [`read_some`] gave.
pub(super) enum Read {
    /// Bytes read (0: EOF), the room there was, and the read slot to hold
    /// until the records are dispatched.
    Data(usize, usize, Option<tokio::sync::SemaphorePermit<'static>>),
    /// Nothing arrived before the frame deadline.
    FrameTimeout,
    /// The partial-frame budget closed this connection.
    Evicted,
}

/// One read: wait until the socket is readable (holding no slot, and no
/// buffer if there is none), take a read slot, make room for `want` bytes
/// and try the read once. If it would block after all (a spurious wake-up,
/// or a TLS record still incomplete), give the slot back and wait again.
/// `deadline`: when to give up waiting (the frame timeout).
pub(super) async fn read_some<S: AsyncRead + Readable + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    want: usize,
    deadline: Option<Instant>,
) -> std::io::Result<Read> {
    let mut wait = buf.capacity() == 0;
    loop {
        if wait {
            match deadline {
                Some(d) => match tokio::time::timeout_at(d, stream.readable()).await {
                    Ok(r) => r?,
                    Err(_) => return Ok(Read::FrameTimeout),
                },
                None => stream.readable().await?,
            }
        }
        // The semaphore is never closed; without a permit, read anyway.
        let permit = READS.acquire().await.ok();
        if buf.capacity() - buf.len() < want / 4 {
            buf.reserve(want);
        }
        let room = buf.capacity() - buf.len();
        let attempt = {
            let mut read = std::pin::pin!(stream.read_buf(buf));
            std::future::poll_fn(|cx| std::task::Poll::Ready(read.as_mut().poll(cx))).await
        };
        match attempt {
            std::task::Poll::Ready(r) => return Ok(Read::Data(r?, room, permit)),
            std::task::Poll::Pending => {
                drop(permit);
                wait = true;
                // A partial frame waits in a buffer sized to what arrived,
                // not to the reads it may still take; a connection with
                // nothing buffered waits with no buffer (a readiness that
                // brought no byte left every idle connection holding 4 KiB:
                // 40 MiB for 10,000 of them).
                if buf.is_empty() {
                    *buf = BytesMut::new();
                } else if buf.capacity() > 2 * buf.len() + SMALL_READ {
                    *buf = BytesMut::from(&buf[..]);
                }
            }
        }
    }
}
