//! Server-sent events, sans-IO: a parser that takes bytes as they arrive and yields whole
//! events, and the encoder that writes them back out. MCP puts one JSON-RPC message in the
//! `data` of each `message` event; the relay judges that message and re-encodes the event with
//! the same `id` (so a client's `Last-Event-ID` still resumes at the upstream) and `event`.

/// One event of a stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    /// `id:` field, if any.
    pub id: Option<String>,
    /// `event:` field, if any (`message` when absent).
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// `retry:` field, if any.
    pub retry: Option<String>,
    /// True when the block held only comments (keep-alives): re-sent as one comment.
    pub comment_only: bool,
}

impl Event {
    /// A `message` event carrying `data`.
    pub fn message(data: &str) -> Self {
        Self {
            data: data.to_string(),
            ..Self::default()
        }
    }

    /// The event's wire form, ending with the blank line.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = String::new();
        if self.comment_only {
            return b":\n\n".to_vec();
        }
        if let Some(id) = &self.id {
            out.push_str("id: ");
            out.push_str(id);
            out.push('\n');
        }
        if let Some(event) = &self.event {
            out.push_str("event: ");
            out.push_str(event);
            out.push('\n');
        }
        if let Some(retry) = &self.retry {
            out.push_str("retry: ");
            out.push_str(retry);
            out.push('\n');
        }
        // An event with an id and no data (a priming event) is still sent.
        if !self.data.is_empty() || (self.id.is_none() && self.retry.is_none()) {
            for line in self.data.split('\n') {
                out.push_str("data: ");
                out.push_str(line);
                out.push('\n');
            }
        }
        out.push('\n');
        out.into_bytes()
    }

    /// True when this is a `message` event with data: what carries a JSON-RPC message.
    pub fn is_message(&self) -> bool {
        !self.comment_only
            && !self.data.is_empty()
            && self.event.as_deref().is_none_or(|e| e == "message")
    }
}

/// Why a stream cannot be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SseError {
    /// One event grew past the limit.
    #[error("an event-stream event is larger than {0} bytes")]
    TooLarge(usize),
}

/// Incremental parser: feed bytes with [`Parser::push`], get complete events.
#[derive(Debug)]
pub struct Parser {
    buf: Vec<u8>,
    /// Bytes of `buf` already scanned for a line end.
    scanned: usize,
    current: Event,
    has_field: bool,
    max_event: usize,
    event_bytes: usize,
}

impl Parser {
    /// A parser refusing events larger than `max_event` bytes.
    pub fn new(max_event: usize) -> Self {
        Self {
            buf: Vec::new(),
            scanned: 0,
            current: Event::default(),
            has_field: false,
            max_event,
            event_bytes: 0,
        }
    }

    /// Feed `bytes`; returns the events they completed.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Event>, SseError> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        let mut start = 0;
        let mut i = self.scanned;
        // Where scanning resumes next time: past everything, unless a CR ends the buffer.
        let mut resume = None;
        while i < self.buf.len() {
            let b = self.buf[i];
            if b == b'\n' || b == b'\r' {
                let line_end = i;
                // CRLF counts as one line end; a CR at the very end may be half of one.
                if b == b'\r' {
                    if i + 1 == self.buf.len() {
                        resume = Some(i);
                        break;
                    }
                    if self.buf[i + 1] == b'\n' {
                        i += 1;
                    }
                }
                let line = String::from_utf8_lossy(&self.buf[start..line_end]).into_owned();
                self.event_bytes += line.len() + 1;
                if self.event_bytes > self.max_event {
                    return Err(SseError::TooLarge(self.max_event));
                }
                if let Some(event) = self.line(&line) {
                    out.push(event);
                }
                start = i + 1;
            }
            i += 1;
        }
        self.buf.drain(..start);
        self.scanned = resume.map_or(self.buf.len(), |i| i - start);
        if self.event_bytes + self.buf.len() > self.max_event {
            return Err(SseError::TooLarge(self.max_event));
        }
        Ok(out)
    }

    fn line(&mut self, line: &str) -> Option<Event> {
        if line.is_empty() {
            self.event_bytes = 0;
            if !self.has_field {
                return None;
            }
            self.has_field = false;
            let mut event = std::mem::take(&mut self.current);
            if event.data.ends_with('\n') {
                event.data.pop();
            }
            return Some(event);
        }
        if line.starts_with(':') {
            if !self.has_field {
                self.current.comment_only = true;
                self.has_field = true;
            }
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        self.has_field = true;
        match field {
            "data" => {
                self.current.comment_only = false;
                self.current.data.push_str(value);
                self.current.data.push('\n');
            }
            "id" => {
                self.current.comment_only = false;
                self.current.id = Some(value.to_string());
            }
            "event" => {
                self.current.comment_only = false;
                self.current.event = Some(value.to_string());
            }
            "retry" => {
                self.current.comment_only = false;
                self.current.retry = Some(value.to_string());
            }
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_in_chunks(input: &[u8], chunk: usize) -> Vec<Event> {
        let mut p = Parser::new(1 << 20);
        let mut out = Vec::new();
        for c in input.chunks(chunk.max(1)) {
            out.extend(p.push(c).unwrap());
        }
        out
    }

    #[test]
    fn events_survive_any_chunking() {
        let input = b"id: 7\r\nevent: message\r\ndata: {\"a\":1}\r\n\r\n: keep-alive\n\ndata: x\ndata: y\n\nevent: endpoint\ndata: /messages?s=1\n\n";
        let whole = parse_in_chunks(input, input.len());
        assert_eq!(whole.len(), 4);
        assert_eq!(whole[0].id.as_deref(), Some("7"));
        assert_eq!(whole[0].data, "{\"a\":1}");
        assert!(whole[0].is_message());
        assert!(whole[1].comment_only);
        assert_eq!(whole[2].data, "x\ny");
        assert_eq!(whole[3].event.as_deref(), Some("endpoint"));
        assert!(!whole[3].is_message());
        for chunk in 1..input.len() {
            assert_eq!(parse_in_chunks(input, chunk), whole, "chunk size {chunk}");
        }
    }

    #[test]
    fn encoding_round_trips() {
        let e = Event {
            id: Some("3".into()),
            event: Some("message".into()),
            data: "line1\nline2".into(),
            retry: None,
            comment_only: false,
        };
        let mut p = Parser::new(1 << 20);
        assert_eq!(p.push(&e.encode()).unwrap(), vec![e]);
        let priming = Event {
            id: Some("p".into()),
            ..Event::default()
        };
        assert_eq!(p.push(&priming.encode()).unwrap(), vec![priming]);
    }

    #[test]
    fn oversized_events_are_refused() {
        let mut p = Parser::new(16);
        assert_eq!(
            p.push(b"data: 0123456789abcdefghij"),
            Err(SseError::TooLarge(16))
        );
    }
}
