//! Where the demo's answers and chat lines come from: a `--script`, or stdin read on a
//! thread of its own (a blocked read must never keep the demo from exiting). Questions
//! are asked only when stdin is a terminal; otherwise flags and defaults answer them,
//! and every stdin line is a chat line.

use std::collections::VecDeque;
use std::io::{BufRead, IsTerminal, Write};

use super::chat::MAX_LINE;

/// Lines read ahead of the demo.
const QUEUE: usize = 16;

/// The demo's line source.
pub struct Input {
    source: Source,
    interactive: bool,
}

enum Source {
    Script(VecDeque<String>),
    Stdin(tokio::sync::mpsc::Receiver<String>),
}

impl Input {
    /// Lines from `script` (split at newlines and at a literal `\n`), else from stdin.
    pub fn new(script: Option<&str>) -> Input {
        match script {
            Some(s) => Input {
                source: Source::Script(
                    s.replace("\\n", "\n")
                        .lines()
                        .map(|l| l.chars().take(MAX_LINE).collect())
                        .collect(),
                ),
                interactive: false,
            },
            None => Input {
                source: Source::Stdin(spawn_stdin()),
                interactive: std::io::stdin().is_terminal(),
            },
        }
    }

    /// Whether a person answers (stdin is a terminal and no script was given).
    pub fn interactive(&self) -> bool {
        self.interactive
    }

    /// The next line, without its line break; `None` at the end of the input.
    pub async fn line(&mut self) -> Option<String> {
        match &mut self.source {
            Source::Script(lines) => lines.pop_front(),
            Source::Stdin(rx) => rx.recv().await,
        }
    }

    /// Asks `question` when interactive and returns the answer, trimmed (`None` if the
    /// input ended); otherwise returns an empty answer, which means "the default".
    pub async fn ask(&mut self, question: &str) -> Option<String> {
        if !self.interactive {
            return Some(String::new());
        }
        prompt(question);
        self.line().await.map(|l| l.trim().to_string())
    }
}

/// Prints `text` without a line break, flushed.
pub fn prompt(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = write!(out, "{text}");
    let _ = out.flush();
}

/// Reads stdin lines (at most [`MAX_LINE`] bytes each) on a thread.
fn spawn_stdin() -> tokio::sync::mpsc::Receiver<String> {
    let (tx, rx) = tokio::sync::mpsc::channel(QUEUE);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut line = Vec::new();
        loop {
            let (used, done) = match stdin.fill_buf() {
                Ok([]) | Err(_) => (0, true),
                Ok(buf) => {
                    let mut used = 0;
                    let mut send = Vec::new();
                    for &b in buf {
                        used += 1;
                        if b == b'\n' || line.len() >= MAX_LINE {
                            send.push(std::mem::take(&mut line));
                            if b == b'\n' {
                                continue;
                            }
                        }
                        line.push(b);
                    }
                    for l in send {
                        let text = String::from_utf8_lossy(&l);
                        let text = text.strip_suffix('\r').unwrap_or(&text).to_string();
                        if tx.blocking_send(text).is_err() {
                            return;
                        }
                    }
                    (used, false)
                }
            };
            if done {
                if !line.is_empty() {
                    let _ = tx.blocking_send(String::from_utf8_lossy(&line).into_owned());
                }
                return;
            }
            stdin.consume(used);
        }
    });
    rx
}
