//! The demo's echo chat, sans-IO: a line protocol over any byte stream.
//!
//! A line typed is sent as `ECHO <text>\n`. A demo receiving `ECHO <text>` shows the
//! text and answers `ECHOED <text>\n`; receiving `ECHOED <text>` shows that the peer got
//! (and returned) our line. Any other line — from `p2pd listen`, say — is shown as it
//! is. (P2PD's demo answers `ECHO x` with the bare `x`; a distinct answer keyword keeps
//! two demos from echoing each other forever.)

/// The request keyword.
const ECHO: &str = "ECHO ";
/// The answer keyword.
const ECHOED: &str = "ECHOED ";
/// Longest line kept whole; longer ones are shown in pieces of this size.
pub const MAX_LINE: usize = 4096;

/// What arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatEvent {
    /// The peer sent this line (and, if it asked, was answered).
    Message(String),
    /// The peer returned a line we sent.
    Echo(String),
}

/// The protocol state of one side: the unfinished line received so far.
#[derive(Debug, Default)]
pub struct Chat {
    partial: Vec<u8>,
}

impl Chat {
    /// A fresh chat.
    pub fn new() -> Self {
        Chat::default()
    }

    /// The bytes that send `text` (one line: line breaks in it become spaces).
    pub fn request(text: &str) -> Vec<u8> {
        let text = text.replace(['\r', '\n'], " ");
        format!("{ECHO}{text}\n").into_bytes()
    }

    /// Takes received bytes; returns what they complete, each with the answer to send
    /// back (if any).
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<(ChatEvent, Option<Vec<u8>>)> {
        let mut out = Vec::new();
        for &b in bytes {
            if b == b'\n' {
                let line = std::mem::take(&mut self.partial);
                out.push(Self::line(&line));
            } else {
                self.partial.push(b);
                if self.partial.len() >= MAX_LINE {
                    let line = std::mem::take(&mut self.partial);
                    out.push(Self::line(&line));
                }
            }
        }
        out
    }

    fn line(raw: &[u8]) -> (ChatEvent, Option<Vec<u8>>) {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        // A peer must not drive our terminal: control characters (escape sequences
        // included) are shown as U+FFFD.
        let text: String = String::from_utf8_lossy(raw)
            .chars()
            .map(|c| {
                if c.is_control() && c != '\t' {
                    '\u{fffd}'
                } else {
                    c
                }
            })
            .collect();
        let text = text.as_str();
        if let Some(rest) = text.strip_prefix(ECHOED) {
            (ChatEvent::Echo(rest.to_string()), None)
        } else if let Some(rest) = text.strip_prefix(ECHO) {
            let answer = format!("{ECHOED}{rest}\n").into_bytes();
            (ChatEvent::Message(rest.to_string()), Some(answer))
        } else {
            (ChatEvent::Message(text.to_string()), None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_answer_and_echo() {
        let (mut a, mut b) = (Chat::new(), Chat::new());
        let req = Chat::request("hello");
        assert_eq!(req, b"ECHO hello\n");
        // Split anywhere: nothing until the line ends.
        assert!(b.feed(&req[..3]).is_empty());
        let got = b.feed(&req[3..]);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, ChatEvent::Message("hello".into()));
        let answer = got[0].1.clone().unwrap();
        let back = a.feed(&answer);
        assert_eq!(back, vec![(ChatEvent::Echo("hello".into()), None)]);
    }

    #[test]
    fn plain_lines_and_hostile_input() {
        let mut c = Chat::new();
        let got = c.feed(b"hi from nc\r\n\xff\xfe\n");
        assert_eq!(got[0], (ChatEvent::Message("hi from nc".into()), None));
        assert!(matches!(&got[1], (ChatEvent::Message(_), None)));
        // A line that never ends is shown in bounded pieces, never kept whole.
        let big = vec![b'x'; MAX_LINE * 3 + 1];
        assert_eq!(c.feed(&big).len(), 3);
        assert_eq!(c.partial.len(), 1);
        // Terminal escape sequences from the peer are defused.
        let got = Chat::new().feed(b"ECHO \x1b[2Jgone\x07\n");
        assert_eq!(
            got[0].0,
            ChatEvent::Message("\u{fffd}[2Jgone\u{fffd}".into())
        );
        // A typed line with a line break stays one line.
        assert_eq!(Chat::request("a\nb"), b"ECHO a b\n");
    }
}
