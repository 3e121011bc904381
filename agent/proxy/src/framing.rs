//! Newline-delimited framing for the stdio relay.
//!
//! A frame is everything up to and including the next `\n`, kept as raw bytes so a line that is
//! not blocked goes out exactly as it came in (a `\r` before the `\n`, invalid UTF-8 and odd
//! number formats included). Lines longer than the cap are consumed and reported by length only,
//! so one oversized message can never shift the framing of the messages after it.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// One frame read from a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// A complete line is in the caller's buffer (with its `\n`, or without one when the stream
    /// ended in the middle of a line).
    Line,
    /// A line longer than the cap was skipped; its length in bytes.
    Oversized(usize),
    /// The stream ended.
    Eof,
}

/// The state of one frame being read, shared by the async and the blocking reader so both frame
/// identically.
struct Assembly<'a> {
    buf: &'a mut Vec<u8>,
    max: usize,
    total: usize,
    oversized: bool,
}

impl<'a> Assembly<'a> {
    fn new(buf: &'a mut Vec<u8>, max: usize) -> Self {
        buf.clear();
        Self {
            buf,
            max,
            total: 0,
            oversized: false,
        }
    }

    /// Take bytes from `available` (never empty): how many to consume, and the frame when the
    /// line is complete.
    fn feed(&mut self, available: &[u8]) -> (usize, Option<Frame>) {
        let (take, complete) = match memchr::memchr(b'\n', available) {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        self.total = self.total.saturating_add(take);
        if !self.oversized {
            if self.total > self.max {
                self.oversized = true;
                // Free the partial line now: the point of the cap is bounded memory.
                *self.buf = Vec::new();
            } else {
                self.buf.extend_from_slice(&available[..take]);
            }
        }
        (take, complete.then(|| self.finished()))
    }

    /// The frame when the stream ended here.
    fn at_eof(&self) -> Frame {
        if self.total == 0 {
            Frame::Eof
        } else {
            self.finished()
        }
    }

    fn finished(&self) -> Frame {
        if self.oversized {
            Frame::Oversized(self.total)
        } else {
            Frame::Line
        }
    }
}

/// Read the next frame into `buf` (cleared first). At most `max` bytes are buffered.
pub async fn read_frame<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Frame> {
    let mut frame = Assembly::new(buf, max);
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(frame.at_eof());
        }
        let (take, done) = frame.feed(available);
        reader.consume(take);
        if let Some(f) = done {
            return Ok(f);
        }
    }
}

/// [`read_frame`] over a blocking reader (the relay pumps run on their own threads, where plain
/// blocking pipe I/O has the lowest latency).
pub fn read_frame_blocking<R: std::io::BufRead>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Frame> {
    let mut frame = Assembly::new(buf, max);
    loop {
        let available = match reader.fill_buf() {
            Ok(a) => a,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(frame.at_eof());
        }
        let (take, done) = frame.feed(available);
        reader.consume(take);
        if let Some(f) = done {
            return Ok(f);
        }
    }
}

/// The line terminator a line ends with (`\r\n`, `\n` or nothing), so a reply the proxy
/// synthesizes uses the same convention as the message it answers.
pub fn line_ending(line: &[u8]) -> &'static [u8] {
    if line.ends_with(b"\r\n") {
        b"\r\n"
    } else if line.ends_with(b"\n") {
        b"\n"
    } else {
        b""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn frames(input: &[u8], max: usize) -> Vec<(Frame, Vec<u8>)> {
        // A tiny buffer makes every line arrive in several partial reads.
        let mut reader = tokio::io::BufReader::with_capacity(3, input);
        let mut out = Vec::new();
        let mut buf = Vec::new();
        loop {
            let f = read_frame(&mut reader, &mut buf, max).await.unwrap();
            if f == Frame::Eof {
                return out;
            }
            out.push((f, buf.clone()));
        }
    }

    #[tokio::test]
    async fn lines_keep_their_bytes() {
        let got = frames(b"{\"a\":1}\r\n\xff\xfe\n\nlast", 1024).await;
        assert_eq!(
            got,
            vec![
                (Frame::Line, b"{\"a\":1}\r\n".to_vec()),
                (Frame::Line, b"\xff\xfe\n".to_vec()),
                (Frame::Line, b"\n".to_vec()),
                (Frame::Line, b"last".to_vec()),
            ]
        );
    }

    #[tokio::test]
    async fn oversized_lines_do_not_shift_the_next_frame() {
        let got = frames(b"0123456789\nok\n", 5).await;
        assert_eq!(
            got,
            vec![
                (Frame::Oversized(11), vec![]),
                (Frame::Line, b"ok\n".to_vec())
            ]
        );
    }

    #[test]
    fn blocking_reader_matches_async() {
        let input: &[u8] = b"0123456789\nok\r\n\xffend";
        let mut reader = std::io::BufReader::with_capacity(2, input);
        let mut buf = Vec::new();
        let mut got = Vec::new();
        loop {
            let f = read_frame_blocking(&mut reader, &mut buf, 5).unwrap();
            if f == Frame::Eof {
                break;
            }
            got.push((f, buf.clone()));
        }
        assert_eq!(
            got,
            vec![
                (Frame::Oversized(11), vec![]),
                (Frame::Line, b"ok\r\n".to_vec()),
                (Frame::Line, b"\xffend".to_vec())
            ]
        );
    }

    #[test]
    fn endings() {
        assert_eq!(line_ending(b"x\r\n"), b"\r\n");
        assert_eq!(line_ending(b"x\n"), b"\n");
        assert_eq!(line_ending(b"x"), b"");
    }
}
