//! Framing: OVSDB sends a stream of JSON values with no delimiter between them.
//!
//! [`Framer`] is fed bytes as they arrive and yields each complete top-level value. It
//! scans incrementally (bytes are looked at once, even when a message spans many reads)
//! and tracks strings and escapes, so braces inside strings do not count. Bad input is an
//! error, never a panic; after an error the stream cannot be resynchronised and the
//! connection must be dropped.

use serde_json::Value;

/// Largest message accepted (a 1000-port monitor reply is ~1 MB; this leaves headroom
/// while bounding what a broken peer can make us buffer).
pub const MAX_MESSAGE: usize = 256 * 1024 * 1024;

/// Why the byte stream is not valid OVSDB framing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A top-level value must be an object or array (JSON-RPC messages are objects).
    #[error("unexpected byte {0:#04x} between messages")]
    UnexpectedByte(u8),
    /// A message grew beyond [`MAX_MESSAGE`].
    #[error("message longer than {MAX_MESSAGE} bytes")]
    TooLong,
    /// The brackets balanced but the text is not valid JSON.
    #[error("invalid JSON: {0}")]
    Json(String),
}

/// Incremental splitter of a JSON value stream.
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
    /// Bytes of `buf` already scanned.
    pos: usize,
    /// Start of the current message in `buf`, once its first byte was seen.
    start: Option<usize>,
    depth: usize,
    in_string: bool,
    escaped: bool,
    failed: Option<FrameError>,
}

impl Framer {
    /// An empty framer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes read from the peer.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes buffered but not yet returned as a message.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The next complete message, `Ok(None)` when more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<Value>, FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match self.scan() {
            Ok(Some(end)) => {
                let start = self.start.take().unwrap_or(0);
                let parsed = serde_json::from_slice::<Value>(&self.buf[start..end]);
                self.buf.drain(..end);
                self.pos = 0;
                match parsed {
                    Ok(v) => Ok(Some(v)),
                    Err(e) => self.fail(FrameError::Json(e.to_string())),
                }
            }
            Ok(None) => {
                let held = self.buf.len() - self.start.unwrap_or(self.buf.len());
                if held > MAX_MESSAGE {
                    return self.fail(FrameError::TooLong);
                }
                if self.start.is_none() {
                    // Only whitespace so far: forget it.
                    self.buf.clear();
                    self.pos = 0;
                }
                Ok(None)
            }
            Err(e) => self.fail(e),
        }
    }

    fn fail<T>(&mut self, e: FrameError) -> Result<T, FrameError> {
        self.failed = Some(e.clone());
        Err(e)
    }

    /// Advances `pos`; returns the end (exclusive) of a complete message.
    fn scan(&mut self) -> Result<Option<usize>, FrameError> {
        while self.pos < self.buf.len() {
            let b = self.buf[self.pos];
            self.pos += 1;
            if self.start.is_none() {
                match b {
                    b' ' | b'\t' | b'\r' | b'\n' => continue,
                    b'{' | b'[' => {
                        self.start = Some(self.pos - 1);
                        self.depth = 1;
                        continue;
                    }
                    other => return Err(FrameError::UnexpectedByte(other)),
                }
            }
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    // depth >= 1 here: depth 0 ends the message right below.
                    self.depth -= 1;
                    if self.depth == 0 {
                        return Ok(Some(self.pos));
                    }
                }
                _ => {}
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn all(f: &mut Framer) -> Vec<Value> {
        let mut out = Vec::new();
        while let Some(v) = f.next_message().unwrap() {
            out.push(v);
        }
        out
    }

    #[test]
    fn two_messages_in_one_read() {
        let mut f = Framer::new();
        f.push(br#"{"id":1,"result":[]}{"id":2,"result":{"a":[1,2]}}"#);
        assert_eq!(
            all(&mut f),
            vec![
                json!({"id":1,"result":[]}),
                json!({"id":2,"result":{"a":[1,2]}})
            ]
        );
        assert_eq!(f.pending(), 0);
    }

    #[test]
    fn one_message_over_many_reads_byte_by_byte() {
        let text = br#" {"method":"update2","params":["x",{"T":{"u":{"insert":{"n":"a}b\"{"}}}}],"id":null}
"#;
        let mut f = Framer::new();
        let mut got = Vec::new();
        for b in text.iter() {
            f.push(&[*b]);
            got.extend(all(&mut f));
        }
        assert_eq!(
            got,
            vec![
                json!({"method":"update2","params":["x",{"T":{"u":{"insert":{"n":"a}b\"{"}}}}],"id":null})
            ]
        );
    }

    #[test]
    fn escapes_and_brackets_inside_strings() {
        let mut f = Framer::new();
        f.push(br#"{"a":"\\"}{"b":"\"]}[{"}["x\\\"y"]"#);
        assert_eq!(
            all(&mut f),
            vec![json!({"a":"\\"}), json!({"b":"\"]}[{"}), json!(["x\\\"y"])]
        );
    }

    #[test]
    fn unicode_escapes_and_utf8() {
        let mut f = Framer::new();
        f.push("{\"a\":\"\\u00e9 é ✓\"}".as_bytes());
        assert_eq!(all(&mut f), vec![json!({"a":"é é ✓"})]);
    }

    #[test]
    fn partial_message_waits() {
        let mut f = Framer::new();
        f.push(br#"{"id":1,"res"#);
        assert_eq!(f.next_message().unwrap(), None);
        f.push(br#"ult":null}"#);
        assert_eq!(
            f.next_message().unwrap(),
            Some(json!({"id":1,"result":null}))
        );
    }

    #[test]
    fn garbage_is_an_error_and_stays_one() {
        let mut f = Framer::new();
        f.push(b"  x{}");
        assert_eq!(f.next_message(), Err(FrameError::UnexpectedByte(b'x')));
        assert!(f.next_message().is_err());
        let mut f = Framer::new();
        f.push(b"{\"a\":tru}");
        assert!(matches!(f.next_message(), Err(FrameError::Json(_))));
        let mut f = Framer::new();
        f.push(b"{]]");
        assert!(matches!(f.next_message(), Err(FrameError::Json(_))));
    }
}
