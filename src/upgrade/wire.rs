//! The handover channel between an upgrading logrelay and its successor:
//! a Unix `SOCK_SEQPACKET` socket pair (message boundaries kept, and the
//! successor's death shows as end of stream), one end inherited by the
//! successor.
//!
//! Old → successor, per connection: one `CONN` message carrying its fd
//! (`SCM_RIGHTS`), its input's key, its peer and the length of the partial
//! frame it had read, with the first bytes of that frame; then `PART`
//! messages with the rest (a message stays well below the socket buffer).
//! The old process then shuts its writing side: end of stream.
//!
//! Successor → old, per `CONN`: one `DONE` message, adopted or refused,
//! sent once the connection is served (or its fd closed). Until then the
//! old process keeps its own copy of the fd, so the connection survives
//! whatever the successor does; it closes that copy on "adopted" and serves
//! the connection again on "refused", or when the successor's end closes
//! without an answer (the successor exited: its copies are closed).

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

use bytes::BytesMut;

use crate::config::ListenKey;

const CONN: &[u8; 4] = b"LRC1";
const PART: &[u8; 4] = b"LRP1";
const DONE: &[u8; 4] = b"LRD1";
/// Largest message: far below the default socket buffer (208 KiB).
const MESSAGE: usize = 32 * 1024;
/// Longest silence of the other side before giving up on it.
const PATIENCE: Duration = Duration::from_secs(20);
/// A partial frame longer than this is refused (it cannot be one:
/// `max_frame_bytes` is far smaller).
const MAX_PARTIAL: usize = 1 << 30;

/// A connected pair: (ours, the successor's). Both close on exec; the
/// caller makes the successor's end inheritable for the spawn.
pub fn pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let (a, b) = socket2::Socket::pair(socket2::Domain::UNIX, socket2::Type::SEQPACKET, None)?;
    for s in [&a, &b] {
        s.set_read_timeout(Some(PATIENCE))?;
        s.set_write_timeout(Some(PATIENCE))?;
    }
    Ok((a.into(), b.into()))
}

/// Describes a connection in its `CONN` message.
#[derive(serde::Serialize, serde::Deserialize)]
struct Header {
    key: ListenKey,
    peer: Option<SocketAddr>,
    partial: usize,
}

/// One connection to hand over.
pub struct Outgoing<'a> {
    /// Its input.
    pub key: &'a ListenKey,
    /// Its peer.
    pub peer: Option<SocketAddr>,
    /// Its fd (ours stays open).
    pub fd: BorrowedFd<'a>,
    /// The partial frame it had read.
    pub partial: &'a [u8],
}

/// What became of a connection sent to the successor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The successor serves it: close our copy.
    Adopted,
    /// The successor cannot (it said so, it exited before answering, or
    /// the connection was never sent): serve it here.
    Stays,
    /// No answer, and the successor's end is still open: it holds the
    /// connection and adopts it or logs why not.
    Unanswered,
}

/// Send every connection and wait for the answers. Outcomes are in the
/// order of `conns`.
pub fn hand_over(ours: OwnedFd, conns: &[Outgoing<'_>]) -> Vec<Outcome> {
    let mut outcomes = vec![Outcome::Stays; conns.len()];
    let reader = match ours.try_clone() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "Upgrade: cannot use the handover socket.");
            return outcomes;
        }
    };
    // Answers are read while sending: the successor would stop reading
    // once its answers fill our receive buffer.
    let (sent, answers) = std::thread::scope(|scope| {
        let answers = scope.spawn(move || read_answers(&reader));
        let mut sent = 0;
        for (id, conn) in conns.iter().enumerate() {
            if let Err(e) = send_conn(&ours, id as u64, conn) {
                tracing::error!(error = %e, "Upgrade: cannot send connections to the successor; the rest stay here.");
                break;
            }
            sent += 1;
        }
        // SAFETY: shutdown(2) on a socket fd we own changes no memory.
        unsafe { libc::shutdown(ours.as_raw_fd(), libc::SHUT_WR) };
        (sent, answers.join().unwrap_or((Vec::new(), false)))
    });
    let (replies, ended) = answers;
    for outcome in outcomes.iter_mut().take(sent) {
        // Sent: unanswered unless the successor closed its end (then it
        // serves none of those it did not confirm).
        *outcome = if ended {
            Outcome::Stays
        } else {
            Outcome::Unanswered
        };
    }
    for (id, adopted) in replies {
        if let Some(o) = outcomes
            .get_mut(id as usize)
            .filter(|_| (id as usize) < sent)
        {
            *o = if adopted {
                Outcome::Adopted
            } else {
                Outcome::Stays
            };
        }
    }
    outcomes
}

/// Answers until end of stream (true) or a timeout or error (false).
fn read_answers(sock: &OwnedFd) -> (Vec<(u64, bool)>, bool) {
    let mut replies = Vec::new();
    let mut buf = [0u8; 64];
    loop {
        match recv(sock.as_fd_ref(), &mut buf) {
            Ok((0, _, _)) => return (replies, true),
            Ok((n, _, _)) => match parse_done(&buf[..n]) {
                Some(r) => replies.push(r),
                None => tracing::warn!("Upgrade: unexpected message from the successor; ignored."),
            },
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // Its end closed with messages unread: it is gone, and so are
            // its copies of the fds in them.
            Err(e) if e.raw_os_error() == Some(libc::ECONNRESET) => return (replies, true),
            Err(e) => {
                tracing::error!(error = %e, "Upgrade: no answer from the successor.");
                return (replies, false);
            }
        }
    }
}

fn parse_done(msg: &[u8]) -> Option<(u64, bool)> {
    let rest = msg.strip_prefix(DONE)?;
    let id = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
    Some((id, *rest.get(8)? == 1))
}

fn send_conn(sock: &OwnedFd, id: u64, conn: &Outgoing<'_>) -> io::Result<()> {
    let header = serde_json::to_vec(&Header {
        key: conn.key.clone(),
        peer: conn.peer,
        partial: conn.partial.len(),
    })
    .map_err(io::Error::other)?;
    let mut msg = Vec::with_capacity(MESSAGE);
    msg.extend_from_slice(CONN);
    msg.extend_from_slice(&id.to_be_bytes());
    msg.extend_from_slice(
        &u32::try_from(header.len())
            .map_err(io::Error::other)?
            .to_be_bytes(),
    );
    msg.extend_from_slice(&header);
    let first = MESSAGE.saturating_sub(msg.len()).min(conn.partial.len());
    msg.extend_from_slice(&conn.partial[..first]);
    send(sock.as_fd_ref(), &msg, Some(conn.fd))?;
    for chunk in conn.partial[first..].chunks(MESSAGE - 12) {
        msg.clear();
        msg.extend_from_slice(PART);
        msg.extend_from_slice(&id.to_be_bytes());
        msg.extend_from_slice(chunk);
        send(sock.as_fd_ref(), &msg, None)?;
    }
    Ok(())
}

/// A connection received from the old process.
pub struct Incoming {
    /// Its input.
    pub key: ListenKey,
    /// Its peer.
    pub peer: Option<SocketAddr>,
    /// Its fd, now ours.
    pub fd: OwnedFd,
    /// The partial frame it had read.
    pub partial: BytesMut,
}

/// Receive connections until the old process is done, calling `adopt` on
/// each and answering what it says. Returns (adopted, refused).
pub fn receive(
    theirs: OwnedFd,
    mut adopt: impl FnMut(Incoming) -> Result<(), String>,
) -> (usize, usize) {
    let (mut adopted, mut refused) = (0, 0);
    let mut buf = vec![0u8; MESSAGE + 64];
    loop {
        let (n, mut fds, truncated) = match recv(theirs.as_fd_ref(), &mut buf) {
            Ok((0, _, _)) => break,
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // The old process serves every connection we did not
                // confirm once our end closes.
                tracing::error!(error = %e, "Upgrade: the previous process stopped handing over connections.");
                break;
            }
        };
        let msg = &buf[..n];
        let Some(rest) = msg.strip_prefix(CONN) else {
            tracing::warn!(bytes = n, "Upgrade: unexpected handover message; ignored.");
            continue;
        };
        let Some(id) = rest
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes)
        else {
            tracing::warn!("Upgrade: truncated handover message; ignored.");
            continue;
        };
        let got = parse_conn(&rest[8..], truncated, &mut fds)
            .and_then(|(header, fd, partial)| read_rest(&theirs, id, header, fd, partial));
        // Any fd beyond the one expected is closed here.
        drop(fds);
        let result = got.and_then(|incoming| {
            let (key, peer) = (incoming.key.clone(), incoming.peer);
            adopt(incoming)
                .map_err(|why| format!("{key} from {}: {why}", crate::input::peer_name(peer)))
        });
        let ok = match result {
            Ok(()) => {
                adopted += 1;
                true
            }
            Err(why) => {
                refused += 1;
                tracing::warn!(
                    "Upgrade: connection not taken over ({why}); the previous process keeps serving it."
                );
                false
            }
        };
        let mut reply = Vec::with_capacity(13);
        reply.extend_from_slice(DONE);
        reply.extend_from_slice(&id.to_be_bytes());
        reply.push(u8::from(ok));
        if let Err(e) = send(theirs.as_fd_ref(), &reply, None) {
            tracing::error!(error = %e, adopted = ok, "Upgrade: cannot answer the previous process about a connection.");
        }
    }
    (adopted, refused)
}

type Parsed = (Header, OwnedFd, BytesMut);

fn parse_conn(msg: &[u8], truncated: bool, fds: &mut Vec<OwnedFd>) -> Result<Parsed, String> {
    if truncated {
        return Err("handover message truncated".to_string());
    }
    let len = msg
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_be_bytes)
        .ok_or("no header")? as usize;
    let header = msg.get(4..4 + len).ok_or("header truncated")?;
    let header: Header = serde_json::from_slice(header).map_err(|e| format!("bad header: {e}"))?;
    if header.partial > MAX_PARTIAL {
        return Err(format!("partial frame of {} bytes", header.partial));
    }
    if fds.is_empty() {
        return Err("no file descriptor came with it".to_string());
    }
    let fd = fds.remove(0);
    let first = &msg[4 + len..];
    if first.len() > header.partial {
        return Err("more bytes than announced".to_string());
    }
    let mut partial = BytesMut::with_capacity(header.partial);
    partial.extend_from_slice(first);
    Ok((header, fd, partial))
}

/// Read the `PART` messages completing a partial frame.
fn read_rest(
    sock: &OwnedFd,
    id: u64,
    header: Header,
    fd: OwnedFd,
    mut partial: BytesMut,
) -> Result<Incoming, String> {
    let mut buf = vec![0u8; MESSAGE + 64];
    while partial.len() < header.partial {
        let (n, fds, _) = recv(sock.as_fd_ref(), &mut buf).map_err(|e| e.to_string())?;
        drop(fds);
        let rest = buf[..n]
            .strip_prefix(PART)
            .filter(|r| r.get(..8) == Some(&id.to_be_bytes()[..]))
            .ok_or("partial frame incomplete")?;
        let chunk = &rest[8..];
        if partial.len() + chunk.len() > header.partial {
            return Err("more bytes than announced".to_string());
        }
        partial.extend_from_slice(chunk);
    }
    Ok(Incoming {
        key: header.key,
        peer: header.peer,
        fd,
        partial,
    })
}

trait AsFdRef {
    fn as_fd_ref(&self) -> BorrowedFd<'_>;
}

impl AsFdRef for OwnedFd {
    fn as_fd_ref(&self) -> BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(self)
    }
}

/// Send one message, with `fd` attached if given.
fn send(sock: BorrowedFd<'_>, data: &[u8], fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
    // u64s: a control buffer aligned for `cmsghdr`.
    let mut control = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some(fd) = fd {
        let int = std::mem::size_of::<libc::c_int>() as u32;
        // SAFETY: CMSG_SPACE is arithmetic on its argument.
        let space = unsafe { libc::CMSG_SPACE(int) } as usize;
        debug_assert!(space <= std::mem::size_of_val(&control));
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: msg_control points at `control`, which is aligned for
        // cmsghdr and at least CMSG_SPACE(sizeof(int)) bytes long (64
        // bytes), so CMSG_FIRSTHDR returns a valid, exclusive pointer into
        // it and CMSG_DATA points inside it with room for one int. The fd
        // is borrowed: open for the duration of the call.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            if cmsg.is_null() {
                return Err(io::Error::other("no room for the fd"));
            }
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(int) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>(), fd.as_raw_fd());
        }
    }
    loop {
        // SAFETY: `msg` points at `iov` (which points at `data`) and at
        // `control`, all alive and unmoved for the call; sendmsg only
        // reads them.
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return if n as usize == data.len() {
                Ok(())
            } else {
                Err(io::Error::other("message sent in part"))
            };
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Receive one message into `buf`: its length (0: end of stream), the fds
/// that came with it (owned now, close-on-exec), and whether the message
/// or its fds were cut short.
fn recv(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>, bool)> {
    let mut control = [0u64; 16];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: `msg` points at `iov` (which points at `buf`, writable for
    // its length) and at `control`, writable for msg_controllen bytes;
    // both outlive the call, and the kernel writes within those bounds.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut fds = Vec::new();
    // SAFETY: after recvmsg, msg_control/msg_controllen describe the
    // control messages the kernel wrote into `control`; CMSG_FIRSTHDR and
    // CMSG_NXTHDR walk them within those bounds (returning null at the
    // end). An SCM_RIGHTS message's data is `cmsg_len - CMSG_LEN(0)`
    // bytes of ints, each a new fd the kernel installed in our table for
    // us alone, so taking ownership of each once is sound.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let bytes = ((*cmsg).cmsg_len as usize).saturating_sub(libc::CMSG_LEN(0) as usize);
                let data = libc::CMSG_DATA(cmsg).cast::<libc::c_int>();
                for i in 0..bytes / std::mem::size_of::<libc::c_int>() {
                    let fd = std::ptr::read_unaligned(data.add(i));
                    fds.push(OwnedFd::from_raw_fd(fd));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    let truncated = msg.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0;
    Ok((n as usize, fds, truncated))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn handed(partial: Vec<u8>, refuse: bool) -> (Vec<Outcome>, Vec<u8>, Vec<u8>) {
        let (ours, theirs) = pair().unwrap();
        let (mut a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let key = ListenKey::Unix("/x.sock".into());
        let successor = std::thread::spawn(move || {
            let mut got = None;
            let counts = receive(theirs, |inc| {
                assert_eq!(inc.key, ListenKey::Unix("/x.sock".into()));
                let mut s = std::os::unix::net::UnixStream::from(inc.fd);
                let mut byte = [0u8; 5];
                s.read_exact(&mut byte).unwrap();
                got = Some((inc.partial.to_vec(), byte.to_vec()));
                if refuse {
                    Err("no".into())
                } else {
                    Ok(())
                }
            });
            assert_eq!(counts, if refuse { (0, 1) } else { (1, 0) });
            got.unwrap()
        });
        a.write_all(b"hello").unwrap();
        let outcomes = {
            let conns = [Outgoing {
                key: &key,
                peer: None,
                fd: std::os::fd::AsFd::as_fd(&b),
                partial: &partial,
            }];
            hand_over(ours, &conns)
        };
        let (partial, read) = successor.join().unwrap();
        (outcomes, partial, read)
    }

    #[test]
    fn a_connection_and_its_partial_frame_cross_over() {
        let (outcomes, partial, read) = handed(b"\0\0\0\x10abc".to_vec(), false);
        assert_eq!(outcomes, [Outcome::Adopted]);
        assert_eq!(partial, b"\0\0\0\x10abc");
        assert_eq!(read, b"hello");
    }

    #[test]
    fn a_large_partial_frame_crosses_in_pieces() {
        let big: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let (outcomes, partial, _) = handed(big.clone(), false);
        assert_eq!(outcomes, [Outcome::Adopted]);
        assert_eq!(partial, big);
    }

    #[test]
    fn a_refused_connection_stays() {
        let (outcomes, _, _) = handed(Vec::new(), true);
        assert_eq!(outcomes, [Outcome::Stays]);
    }

    #[test]
    fn a_successor_that_is_gone_leaves_every_connection_here() {
        let (ours, theirs) = pair().unwrap();
        drop(theirs);
        let (_a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let key = ListenKey::Tcp("127.0.0.1:1".into());
        let conns = [Outgoing {
            key: &key,
            peer: None,
            fd: std::os::fd::AsFd::as_fd(&b),
            partial: b"",
        }];
        assert_eq!(hand_over(ours, &conns), [Outcome::Stays]);
    }
}
