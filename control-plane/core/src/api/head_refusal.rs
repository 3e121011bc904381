//! Request heads the HTTP server refuses before the router sees them, answered with the JSON
//! error envelope like every other API error.
//!
//! hyper buffers at most [`super::listener`]'s head buffer per connection; a head larger than
//! that (or one it cannot parse) is answered by hyper itself with a bare status line, and the
//! connection is closed. hyper has no hook for that answer, so the connection's I/O is wrapped:
//! the bare refusal hyper writes is replaced by the envelope, and the connection then lingers,
//! discarding what the client still sends for a short while, so that a client busy writing a
//! huge head reads the answer instead of a reset. Memory stays bounded: hyper never buffers more
//! than its limit, and lingering discards into a fixed scratch buffer.
//!
//! hyper writes such a refusal only when no response is under way and everything written
//! before has been flushed (`on_parse_error` requires `Writing::Init`), so it is the start of a
//! write; it is recognised by its exact shape (status 400, 414 or 431, no content type, an
//! empty body), which the router's answers never have (they always carry the envelope).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::error::{ErrorCode, envelope_json};

/// How long a refused connection keeps draining what its client still sends.
const LINGER: Duration = Duration::from_secs(2);
/// Reads a lingering connection makes before yielding to the runtime.
const LINGER_READS_PER_POLL: usize = 64;

/// A connection's I/O whose bare head refusals by hyper become envelopes.
pub(super) struct EnvelopedRefusals<IO> {
    io: IO,
    /// The request line of the head being read: its length so far, and whether it is still
    /// open (no line end read yet). An overlong one makes a refusal 414 rather than 431.
    request_line: (usize, bool),
    /// The envelope replacing hyper's refusal, and how much of it is written.
    replacement: Option<(Vec<u8>, usize)>,
    /// Set once the refused connection's write side is shut: lingering until this deadline.
    linger: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<IO> EnvelopedRefusals<IO> {
    pub(super) fn new(io: IO) -> Self {
        Self {
            io,
            request_line: (0, true),
            replacement: None,
            linger: None,
        }
    }
}

/// The status of a refusal hyper wrote on its own, if `buf` starts with one.
fn hyper_refusal(buf: &[u8]) -> Option<u16> {
    let status = match buf.get(..13)? {
        b"HTTP/1.1 400 " => 400,
        b"HTTP/1.1 414 " => 414,
        b"HTTP/1.1 431 " => 431,
        _ => return None,
    };
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let mut empty_body = false;
    for line in buf[..end].split(|&b| b == b'\n').skip(1) {
        let line = line
            .strip_suffix(b"\r")
            .unwrap_or(line)
            .to_ascii_lowercase();
        if line.starts_with(b"content-type:") || line.starts_with(b"transfer-encoding:") {
            return None;
        }
        if line == b"content-length: 0" {
            empty_body = true;
        }
    }
    empty_body.then_some(status)
}

/// The envelope answering a head hyper refused with `status`, whose request line had
/// `request_line` bytes.
fn envelope_for(status: u16, request_line: usize) -> Vec<u8> {
    let (code, message) = match status {
        400 => (
            ErrorCode::InvalidRequest,
            "malformed request head".to_string(),
        ),
        // hyper says 431 for any head beyond its buffer; the router's rule tells them apart:
        // a target over its limit is 414.
        _ if request_line > super::MAX_URI_BYTES => (
            ErrorCode::UriTooLong,
            format!(
                "the request target is longer than {} bytes",
                super::MAX_URI_BYTES
            ),
        ),
        _ => (
            ErrorCode::HeadersTooLarge,
            format!(
                "the request headers are larger than {} bytes",
                super::MAX_HEADER_BYTES
            ),
        ),
    };
    let request_id = uuid::Uuid::new_v4().to_string();
    let body = envelope_json(code, &message, &request_id);
    let status = code.status();
    let mut out = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\nx-request-id: {request_id}\r\n\r\n",
        status.as_str(),
        status.canonical_reason().unwrap_or(""),
        body.len(),
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

impl<IO: AsyncWrite + Unpin> EnvelopedRefusals<IO> {
    /// Write the rest of the replacement; ready once all of it is written.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = self.replacement.as_mut()
            && *written < bytes.len()
        {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for EnvelopedRefusals<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        let (length, open) = &mut this.request_line;
        if *open {
            let read = &buf.filled()[before..];
            match read.iter().position(|&b| b == b'\n') {
                Some(end) => (*length, *open) = (*length + end, false),
                None => *length += read.len(),
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for EnvelopedRefusals<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.replacement.is_none() {
            match hyper_refusal(buf) {
                Some(status) => {
                    this.replacement = Some((envelope_for(status, this.request_line.0), 0));
                }
                None => {
                    let n = ready!(Pin::new(&mut this.io).poll_write(cx, buf))?;
                    // An answer went out: what the client sends next starts a new request.
                    this.request_line = (0, true);
                    return Poll::Ready(Ok(n));
                }
            }
        }
        // hyper's refusal (and anything after it) is consumed; the envelope goes out instead.
        ready!(this.poll_replacement(cx))?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let first = bufs.iter().find(|b| !b.is_empty());
        if this.replacement.is_some() || first.is_some_and(|b| hyper_refusal(b).is_some()) {
            let first = first.map_or(&[][..], |b| &b[..]);
            return Pin::new(this).poll_write(cx, first);
        }
        let n = ready!(Pin::new(&mut this.io).poll_write_vectored(cx, bufs))?;
        this.request_line = (0, true);
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_replacement(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.replacement.is_none() {
            return Pin::new(&mut this.io).poll_shutdown(cx);
        }
        // A refused connection: the envelope, then our end closed, then linger.
        if this.linger.is_none() {
            ready!(this.poll_replacement(cx))?;
            ready!(Pin::new(&mut this.io).poll_shutdown(cx))?;
            this.linger = Some(Box::pin(tokio::time::sleep(LINGER)));
        }
        let mut scratch = [0u8; 8192];
        for _ in 0..LINGER_READS_PER_POLL {
            if let Some(deadline) = this.linger.as_mut()
                && deadline.as_mut().poll(cx).is_ready()
            {
                return Poll::Ready(Ok(()));
            }
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut this.io).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => continue,
                // The client closed (or reset): nothing left to wait for.
                Poll::Ready(_) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
        // A fast client: give the runtime back, and continue on the next poll.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_bare_refusals_are_recognised() {
        let bare = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        assert_eq!(hyper_refusal(bare), Some(431));
        let ours = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(hyper_refusal(ours), None);
        let with_body = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n";
        assert_eq!(hyper_refusal(with_body), None);
        assert_eq!(
            hyper_refusal(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"),
            None
        );
        assert_eq!(hyper_refusal(b"HTTP/1.1 431 "), None);
    }

    #[test]
    fn an_overlong_request_line_is_an_overlong_target() {
        let answer = String::from_utf8(envelope_for(431, 70 * 1024)).unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 414 URI Too Long\r\n"),
            "{answer}"
        );
        assert!(answer.contains("\"code\":\"uri_too_long\""), "{answer}");
        let answer = String::from_utf8(envelope_for(431, 100)).unwrap();
        assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
        assert!(
            answer.contains("\"code\":\"headers_too_large\""),
            "{answer}"
        );
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
    }
}
