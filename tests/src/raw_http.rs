//! HTTP requests no well-behaved client sends (heads of any size), written on a raw TCP
//! connection and streamed from a small buffer, so that the test itself holds almost nothing.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::PATIENCE;

/// Where an oversized head carries its padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// In the request target's query.
    Target,
    /// In one header's value.
    Header,
}

/// What the server answered: status (0 when nothing parseable came back), head and body.
#[derive(Debug)]
pub struct RawAnswer {
    /// Status code of the answer's status line.
    pub status: u16,
    /// Everything before the blank line.
    pub head: String,
    /// The body as JSON (`Null` when not JSON).
    pub json: serde_json::Value,
}

/// Send a GET of `path` whose head carries `pad` bytes of padding where `padding` says, while
/// reading the answer; the answer once the server closes (or after the test's patience).
pub async fn oversized_head(to: SocketAddr, path: &str, padding: Padding, pad: usize) -> RawAnswer {
    let stream = tokio::net::TcpStream::connect(to).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let (before, after) = match padding {
        Padding::Target => (
            format!("GET {path}?pad="),
            " HTTP/1.1\r\nhost: x\r\n\r\n".to_string(),
        ),
        Padding::Header => (
            format!("GET {path} HTTP/1.1\r\nhost: x\r\nx-pad: "),
            "\r\n\r\n".to_string(),
        ),
    };
    let writing = tokio::spawn(async move {
        let chunk = vec![b'a'; 64 * 1024];
        writer.write_all(before.as_bytes()).await?;
        let mut left = pad;
        while left > 0 {
            let n = left.min(chunk.len());
            writer.write_all(&chunk[..n]).await?;
            left -= n;
        }
        writer.write_all(after.as_bytes()).await?;
        // Keep the connection open: the server decides when it ends.
        std::future::pending::<()>().await;
        Ok::<_, std::io::Error>(())
    });
    let mut got = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, async {
        let mut buf = [0u8; 8192];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    writing.abort();
    let text = String::from_utf8_lossy(&got).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    RawAnswer {
        status: head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        head: head.to_string(),
        json: serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    }
}
