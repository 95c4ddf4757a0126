//! Cutting a byte stream into frames.
//!
//! `SocketHandler` and `DatagramHandler` both send a 4-byte big-endian
//! length followed by that many bytes; JSON senders may instead end each
//! record with a newline. Frames are split off the read buffer without
//! copying (`BytesMut::split_to(..).freeze()`), so decoders can borrow
//! strings straight from the bytes the kernel handed us.

use bytes::{Buf, Bytes, BytesMut};
use memchr::memchr;

/// How an input cuts its stream into frames (`"framing"` in the config).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Framing {
    /// `"length_prefixed"`: a 4-byte big-endian length, then the payload
    /// (SocketHandler; the default).
    #[default]
    LengthPrefixed,
    /// `"newline"`: one payload per line, `\n`-terminated (JSON lines).
    Newline,
}

impl Framing {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Framing::LengthPrefixed => "length_prefixed",
            Framing::Newline => "newline",
        }
    }
}

/// A framing error: the stream cannot be resynchronised, so the
/// connection is closed (its earlier records are kept).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A length prefix (or a line) larger than `max_frame_bytes`.
    #[error("frame of {len} bytes exceeds max_frame_bytes {max}")]
    TooLarge {
        /// The declared (or so far seen) length.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame ({got} of {want} bytes)")]
    Truncated {
        /// Bytes the frame needed.
        want: usize,
        /// Bytes that arrived.
        got: usize,
    },
    /// A datagram whose length prefix does not match its size.
    #[error("datagram length prefix says {declared} bytes, datagram holds {actual}")]
    DatagramLength {
        /// What the prefix declared.
        declared: usize,
        /// What followed the prefix.
        actual: usize,
    },
}

/// Cuts frames off a growing read buffer.
#[derive(Clone, Copy, Debug)]
pub struct Framer {
    framing: Framing,
    max_frame_bytes: usize,
}

impl Framer {
    /// A framer with the given mode and size limit.
    pub fn new(framing: Framing, max_frame_bytes: usize) -> Framer {
        Framer {
            framing,
            max_frame_bytes,
        }
    }

    /// The next whole frame in `buf`, `Ok(None)` if more bytes are needed.
    /// A zero-length frame is returned as an empty `Bytes` (the forward
    /// handshake starts with one).
    pub fn next_frame(&self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        self.next_frame_from(buf, &mut 0)
    }

    /// [`Framer::next_frame`] for a connection that keeps `scanned` between
    /// calls (start it at 0): how much of `buf` is known to hold no newline,
    /// so a long line arriving in many reads is searched once, not once per
    /// read (which made one 16 MiB line cost gigabytes of scanning).
    pub fn next_frame_from(
        &self,
        buf: &mut BytesMut,
        scanned: &mut usize,
    ) -> Result<Option<Bytes>, FrameError> {
        match self.framing {
            Framing::LengthPrefixed => {
                if buf.len() < 4 {
                    return Ok(None);
                }
                let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
                if len > self.max_frame_bytes {
                    return Err(FrameError::TooLarge {
                        len,
                        max: self.max_frame_bytes,
                    });
                }
                if buf.len() < 4 + len {
                    // Reserve now so the next read lands in one allocation.
                    buf.reserve(4 + len - buf.len());
                    return Ok(None);
                }
                buf.advance(4);
                Ok(Some(buf.split_to(len).freeze()))
            }
            Framing::Newline => loop {
                let from = (*scanned).min(buf.len());
                match memchr(b'\n', &buf[from..]).map(|i| from + i) {
                    Some(pos) => {
                        *scanned = 0;
                        if pos > self.max_frame_bytes {
                            return Err(FrameError::TooLarge {
                                len: pos,
                                max: self.max_frame_bytes,
                            });
                        }
                        let mut line = buf.split_to(pos + 1);
                        let Some(len) = payload_len(&line[..pos]) else {
                            continue; // blank lines carry no record
                        };
                        line.truncate(len);
                        return Ok(Some(line.freeze()));
                    }
                    None if buf.len() > self.max_frame_bytes => {
                        return Err(FrameError::TooLarge {
                            len: buf.len(),
                            max: self.max_frame_bytes,
                        })
                    }
                    None => {
                        *scanned = buf.len();
                        return Ok(None);
                    }
                }
            },
        }
    }

    /// What is left in `buf` when the stream ends: an error if it holds a
    /// partial frame. A final unterminated JSON line counts as a frame.
    pub fn finish(&self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        if buf.is_empty() {
            return Ok(None);
        }
        match self.framing {
            Framing::LengthPrefixed => {
                let want = if buf.len() >= 4 {
                    4 + u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize
                } else {
                    4
                };
                Err(FrameError::Truncated {
                    want,
                    got: buf.len(),
                })
            }
            Framing::Newline => {
                let line = buf.split().freeze();
                Ok(payload_len(&line).map(|len| line.slice(..len)))
            }
        }
    }

    /// The frames of one datagram. Length-prefixed, a datagram is one
    /// frame (DatagramHandler sends the same bytes as SocketHandler, one
    /// record per datagram). Newline-framed, it is every line, as the
    /// stream framing cuts them: `\r\n` ends a line too, a blank line is
    /// skipped, a last line needs no newline, and `max_frame_bytes` limits
    /// each line. A line in error is one `Err` item; the lines after it
    /// still come (a datagram, unlike a stream, has nothing to resync).
    pub fn datagram(&self, datagram: Bytes) -> DatagramFrames {
        DatagramFrames {
            framer: *self,
            rest: Some(datagram),
        }
    }

    /// Whether a datagram of `len` bytes should first be tried as one
    /// frame before [`Framer::datagram`] cuts it into lines: newline
    /// framing, a newline before its last byte (so more than one line),
    /// and within `max_frame_bytes`. A datagram is one frame
    /// (docs/decisions.md, "Inputs, limits and shutdown"),
    /// so a pretty-printed JSON document sent whole stays one record.
    pub fn datagram_whole_first(&self, datagram: &[u8]) -> bool {
        self.framing == Framing::Newline
            && datagram.len() <= self.max_frame_bytes
            && datagram
                .split_last()
                .is_some_and(|(_, head)| head.contains(&b'\n'))
    }

    /// A length-prefixed datagram's payload: the prefix must say exactly
    /// the size of what follows it.
    fn prefixed_datagram(&self, datagram: Bytes) -> Result<Bytes, FrameError> {
        if datagram.len() < 4 {
            return Err(FrameError::Truncated {
                want: 4,
                got: datagram.len(),
            });
        }
        let declared =
            u32::from_be_bytes([datagram[0], datagram[1], datagram[2], datagram[3]]) as usize;
        if declared > self.max_frame_bytes {
            return Err(FrameError::TooLarge {
                len: declared,
                max: self.max_frame_bytes,
            });
        }
        if declared != datagram.len() - 4 {
            return Err(FrameError::DatagramLength {
                declared,
                actual: datagram.len() - 4,
            });
        }
        Ok(datagram.slice(4..))
    }
}

/// The frames of one datagram, from [`Framer::datagram`].
#[derive(Debug)]
pub struct DatagramFrames {
    framer: Framer,
    /// What is left to cut; `None` once done.
    rest: Option<Bytes>,
}

impl Iterator for DatagramFrames {
    type Item = Result<Bytes, FrameError>;

    fn next(&mut self) -> Option<Result<Bytes, FrameError>> {
        if self.framer.framing == Framing::LengthPrefixed {
            return Some(self.framer.prefixed_datagram(self.rest.take()?));
        }
        loop {
            let rest = self.rest.as_mut()?;
            let line = match memchr(b'\n', rest) {
                Some(pos) => {
                    let line = rest.split_to(pos + 1);
                    line.slice(..pos)
                }
                None => self.rest.take()?,
            };
            if line.len() > self.framer.max_frame_bytes {
                return Some(Err(FrameError::TooLarge {
                    len: line.len(),
                    max: self.framer.max_frame_bytes,
                }));
            }
            if let Some(len) = payload_len(&line) {
                return Some(Ok(line.slice(..len)));
            }
        }
    }
}

/// A line's payload (`line` without its `\n`) without a final `\r`:
/// its length, or `None` for a blank line, which carries no record.
fn payload_len(line: &[u8]) -> Option<usize> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    Some(line.len() - usize::from(line.last() == Some(&b'\r')))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut v = (payload.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn length_prefixed_frames_split_at_any_boundary() {
        let mut stream = frame(b"hello");
        stream.extend(frame(b""));
        stream.extend(frame(b"world!"));
        let framer = Framer::new(Framing::LengthPrefixed, 100);
        for cut in 0..stream.len() {
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for part in [&stream[..cut], &stream[cut..]] {
                buf.extend_from_slice(part);
                while let Some(f) = framer.next_frame(&mut buf).unwrap() {
                    got.push(f);
                }
            }
            assert_eq!(got, vec![&b"hello"[..], b"", b"world!"]);
            assert_eq!(framer.finish(&mut buf), Ok(None));
        }
    }

    #[test]
    fn oversized_prefix_is_an_error() {
        let framer = Framer::new(Framing::LengthPrefixed, 10);
        let mut buf = BytesMut::from(&frame(&[0u8; 11])[..]);
        assert_eq!(
            framer.next_frame(&mut buf),
            Err(FrameError::TooLarge { len: 11, max: 10 })
        );
    }

    #[test]
    fn truncated_stream_is_reported() {
        let framer = Framer::new(Framing::LengthPrefixed, 100);
        let mut buf = BytesMut::from(&frame(b"abc")[..6]);
        assert_eq!(framer.next_frame(&mut buf), Ok(None));
        assert_eq!(
            framer.finish(&mut buf),
            Err(FrameError::Truncated { want: 7, got: 6 })
        );
    }

    #[test]
    fn newline_framing_skips_blank_lines_and_strips_cr() {
        let framer = Framer::new(Framing::Newline, 100);
        let mut buf = BytesMut::from(&b"{\"a\":1}\r\n\n{\"b\":2}\n{\"c\""[..]);
        assert_eq!(
            framer.next_frame(&mut buf).unwrap().unwrap(),
            &b"{\"a\":1}"[..]
        );
        assert_eq!(
            framer.next_frame(&mut buf).unwrap().unwrap(),
            &b"{\"b\":2}"[..]
        );
        assert_eq!(framer.next_frame(&mut buf), Ok(None));
        assert_eq!(framer.finish(&mut buf).unwrap().unwrap(), &b"{\"c\""[..]);
    }

    /// Lines cut at any two points come out the same when the connection
    /// keeps its scan offset, and a read without a newline moves the offset
    /// to its end, so the next search starts there.
    #[test]
    fn newline_frames_split_at_any_boundary_with_the_scan_offset_kept() {
        let stream = b"{\"a\":1}\r\n\n{\"bb\":22}\n{\"c\":3}\n";
        let framer = Framer::new(Framing::Newline, 100);
        for i in 0..stream.len() {
            for j in i..stream.len() {
                let mut buf = BytesMut::new();
                let mut scanned = 0;
                let mut got = Vec::new();
                for part in [&stream[..i], &stream[i..j], &stream[j..]] {
                    buf.extend_from_slice(part);
                    while let Some(f) = framer.next_frame_from(&mut buf, &mut scanned).unwrap() {
                        got.push(f);
                    }
                    assert_eq!(scanned, buf.len(), "cut at {i}, {j}");
                }
                assert_eq!(got, vec![&b"{\"a\":1}"[..], b"{\"bb\":22}", b"{\"c\":3}"]);
            }
        }
    }

    fn datagram_frames(framer: Framer, datagram: &[u8]) -> Vec<Result<Bytes, FrameError>> {
        framer.datagram(Bytes::copy_from_slice(datagram)).collect()
    }

    #[test]
    fn datagram_prefix_must_match_size() {
        let framer = Framer::new(Framing::LengthPrefixed, 100);
        assert_eq!(
            datagram_frames(framer, &frame(b"xyz")),
            vec![Ok(Bytes::from_static(b"xyz"))]
        );
        let mut bad = frame(b"xyz");
        bad.push(0);
        assert_eq!(
            datagram_frames(framer, &bad),
            vec![Err(FrameError::DatagramLength {
                declared: 3,
                actual: 4
            })]
        );
        assert_eq!(
            datagram_frames(framer, b""),
            vec![Err(FrameError::Truncated { want: 4, got: 0 })]
        );
    }

    /// DatagramHandler's datagram is one frame, whatever bytes it holds.
    #[test]
    fn a_length_prefixed_datagram_is_one_frame_even_with_newlines() {
        let framer = Framer::new(Framing::LengthPrefixed, 100);
        assert_eq!(
            datagram_frames(framer, &frame(b"a\nb\n")),
            vec![Ok(Bytes::from_static(b"a\nb\n"))]
        );
    }

    /// A newline-framed datagram gives each of its lines, as a stream
    /// would: `\r\n` too, blank lines skipped, the last line with or
    /// without its newline.
    #[test]
    fn a_newline_datagram_gives_every_line() {
        let framer = Framer::new(Framing::Newline, 100);
        let lines = |d: &[u8]| -> Vec<Bytes> {
            datagram_frames(framer, d)
                .into_iter()
                .map(Result::unwrap)
                .collect()
        };
        assert_eq!(
            lines(b"{\"a\":1}\r\n\n  \n{oops\n{\"c\":3}\n"),
            vec![&b"{\"a\":1}"[..], b"{oops", b"{\"c\":3}"]
        );
        assert_eq!(lines(b"{\"a\":1}"), vec![&b"{\"a\":1}"[..]]);
        assert_eq!(lines(b"x\ny\r"), vec![&b"x"[..], b"y"]);
        assert_eq!(lines(b"\n\r\n \t"), Vec::<Bytes>::new());
        assert_eq!(lines(b""), Vec::<Bytes>::new());
    }

    /// `max_frame_bytes` applies to each line (`\r` included, as on a
    /// stream); a line over it is one error and the lines after it come.
    #[test]
    fn a_newline_datagram_limits_each_line() {
        let framer = Framer::new(Framing::Newline, 4);
        assert_eq!(
            datagram_frames(framer, b"abcd\nabcde\nabc\r\nabcd\r\nxy\nabcde"),
            vec![
                Ok(Bytes::from_static(b"abcd")),
                Err(FrameError::TooLarge { len: 5, max: 4 }),
                Ok(Bytes::from_static(b"abc")),
                Err(FrameError::TooLarge { len: 5, max: 4 }),
                Ok(Bytes::from_static(b"xy")),
                Err(FrameError::TooLarge { len: 5, max: 4 }),
            ]
        );
    }

    proptest::proptest! {
        /// A newline datagram's lines are the frames a stream of the same
        /// bytes gives (with its end), whenever the stream has no error.
        #[test]
        fn newline_datagram_lines_are_the_stream_frames(
            bytes in proptest::collection::vec(
                proptest::sample::select(&b"ab \r\n\t"[..]),
                0..40,
            ),
            max in 1usize..12,
        ) {
            let framer = Framer::new(Framing::Newline, max);
            let mut buf = BytesMut::from(&bytes[..]);
            let mut stream = Vec::new();
            let ok = loop {
                match framer.next_frame(&mut buf) {
                    Ok(Some(f)) => stream.push(f),
                    Ok(None) => break true,
                    Err(_) => break false,
                }
            };
            if ok {
                stream.extend(framer.finish(&mut buf).unwrap());
                let datagram: Result<Vec<Bytes>, FrameError> =
                    framer.datagram(Bytes::from(bytes.clone())).collect();
                proptest::prop_assert_eq!(datagram, Ok(stream));
            }
        }
    }
}
