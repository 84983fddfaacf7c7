//! Writing to stdout without panicking when the reader goes away (`p2pd … | head`).

use std::fmt::Display;
use std::io::{self, Write};

/// Prints one line to stdout. A closed pipe is not an error worth a message: the error
/// returned is `BrokenPipe`, which `main` turns into a quiet exit.
pub fn line(text: impl Display) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()
}

/// Whether an error is a closed stdout.
pub fn is_broken_pipe(e: &(dyn std::error::Error + 'static)) -> bool {
    e.downcast_ref::<io::Error>()
        .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
}
