//! What a room extension writes to stderr, kept for its faults: CPython and SpiderMonkey print
//! the exception that ended a call there (a Rust extension its panic message), and a fault that
//! says only "wasm `unreachable` instruction executed" tells its author nothing.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Bytes kept: the end of a traceback.
const KEPT_BYTES: usize = 2048;
/// Characters of the line a fault quotes.
const QUOTED_CHARS: usize = 300;
/// What componentize-py's runtime panics with after CPython printed the traceback.
const PYTHON_THREW: &str = "Python function threw an unexpected exception";

/// The last [`KEPT_BYTES`] an instance wrote to stderr since its current call began; older bytes
/// are dropped, so writing never fails and costs the host no more than that.
#[derive(Clone, Default)]
pub struct StderrTail(Arc<Mutex<VecDeque<u8>>>);

impl StderrTail {
    pub fn clear(&self) {
        self.0.lock().expect("stderr lock").clear();
    }

    /// The last line that says what went wrong: a Python traceback's exception (componentize-py
    /// then panics, saying only that Python threw), a Rust panic's message (not std's hint about
    /// backtraces after it), a JavaScript error (StarlingMonkey prints it, then `Stack:` and the
    /// frames, then its abort).
    pub fn last_line(&self) -> Option<String> {
        let bytes: Vec<u8> = self
            .0
            .lock()
            .expect("stderr lock")
            .iter()
            .copied()
            .collect();
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        let before_stack = match lines.iter().rposition(|line| *line == "Stack:") {
            Some(stack) => &lines[..stack],
            None => &lines[..],
        };
        let line = before_stack.iter().rfind(|line| {
            !line.is_empty()
                && !line.starts_with("note: run with `RUST_BACKTRACE")
                && !line.starts_with("Redirecting call to abort()")
                // `thread '<unnamed>' (1) panicked at runtime/src/lib.rs:1280:25:`
                && !(line.starts_with("thread '") && line.contains(" panicked at "))
                && **line != PYTHON_THREW
        })?;
        Some(line.chars().take(QUOTED_CHARS).collect())
    }

    fn keep(&self, bytes: &[u8]) {
        let mut tail = self.0.lock().expect("stderr lock");
        let fresh = &bytes[bytes.len().saturating_sub(KEPT_BYTES)..];
        let excess = (tail.len() + fresh.len()).saturating_sub(KEPT_BYTES);
        tail.drain(..excess);
        tail.extend(fresh);
    }
}

impl IsTerminal for StderrTail {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for StderrTail {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for StderrTail {
    async fn ready(&mut self) {}
}

impl OutputStream for StderrTail {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.keep(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl AsyncWrite for StderrTail {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.keep(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_end_and_quotes_the_last_line() {
        let tail = StderrTail::default();
        assert_eq!(tail.last_line(), None);
        tail.keep(&vec![b'x'; 5000]);
        tail.keep(b"\nTraceback (most recent call last):\n  File \"app.py\"\nValueError: bad\n\n");
        assert_eq!(tail.last_line().as_deref(), Some("ValueError: bad"));
        tail.keep(b"Traceback (most recent call last):\n  File \"hostile_python.py\", line 52\n\
            ValueError: hostile exception\nthread '<unnamed>' (1) panicked at runtime/src/lib.rs:1280:25:\n\
            Python function threw an unexpected exception\nnote: run with `RUST_BACKTRACE=1` \
            environment variable to display a backtrace\n");
        assert_eq!(
            tail.last_line().as_deref(),
            Some("ValueError: hostile exception")
        );
        tail.keep(
            b"\nthread '<unnamed>' panicked at src/lib.rs:80:25:\nhostile panic\nnote: run with \
            `RUST_BACKTRACE=1` environment variable to display a backtrace\n",
        );
        assert_eq!(tail.last_line().as_deref(), Some("hostile panic"));
        tail.keep(
            b"Error: no such option\nStack:\n  onCommand@poll.js:27:33\n\
            Redirecting call to abort() to mozalloc_abort\n",
        );
        assert_eq!(tail.last_line().as_deref(), Some("Error: no such option"));
        assert_eq!(tail.0.lock().unwrap().len(), KEPT_BYTES);
        tail.clear();
        assert_eq!(tail.last_line(), None);
    }
}
