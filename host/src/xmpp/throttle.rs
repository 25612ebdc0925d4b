//! A connection's inbound rate (as Prosody's `mod_limits` and ejabberd's shapers): bytes are
//! read at up to a rate, after a burst. Past it the reader pauses before reading more from the
//! socket, so the client's data waits in TCP buffers and TCP pushes back on the client; nothing
//! is dropped and the connection stays up. Writes pass through.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::token_bucket::TokenBucket;

/// Bytes a second, after a burst (both over 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadRate {
    pub bytes_per_second: u64,
    pub burst_bytes: u64,
}

pub struct Throttled<T> {
    inner: T,
    bucket: TokenBucket,
    started: Instant,
    /// Set once the bucket is in debt: no read until it ends.
    pause: Option<Pin<Box<Sleep>>>,
}

impl<T> Throttled<T> {
    pub fn new(inner: T, rate: ReadRate) -> Throttled<T> {
        Throttled {
            inner,
            bucket: TokenBucket::full(rate.bytes_per_second as f64, rate.burst_bytes as f64, 0),
            started: Instant::now(),
            pause: None,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Throttled<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if let Some(pause) = &mut this.pause {
            ready!(pause.as_mut().poll(cx));
            this.pause = None;
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let read = buf.filled().len() - before;
        let now_ms = this.started.elapsed().as_millis() as u64;
        // What was read is handed on; the debt it made is paid before the next read.
        let wait_ms = this.bucket.charge(read as f64, now_ms);
        if wait_ms > 0 {
            this.pause = Some(Box::pin(tokio::time::sleep(Duration::from_millis(wait_ms))));
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Throttled<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Polls once: whether it would wait.
    fn is_pending<F: std::future::Future>(future: Pin<&mut F>) -> bool {
        let mut context = Context::from_waker(std::task::Waker::noop());
        future.poll(&mut context).is_pending()
    }

    #[tokio::test]
    async fn past_the_burst_a_read_waits_though_bytes_are_there_and_all_arrive() {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let sent: Vec<u8> = (0..3_000u32).map(|n| (n % 251) as u8).collect();
        client.write_all(&sent).await.unwrap();
        drop(client);
        let rate = ReadRate {
            bytes_per_second: 10_000,
            burst_bytes: 1_000,
        };
        let mut reader = Throttled::new(server, rate);
        let started = Instant::now();
        let mut received = Vec::new();
        let mut chunk = [0u8; 500];
        for _ in 0..2 {
            let read = reader.read(&mut chunk).await.unwrap();
            received.extend_from_slice(&chunk[..read]);
        }
        // The burst is spent: the next 500 bytes are read, and the debt paid before more.
        let read = reader.read(&mut chunk).await.unwrap();
        received.extend_from_slice(&chunk[..read]);
        let next = reader.read(&mut chunk);
        tokio::pin!(next);
        assert!(
            is_pending(next.as_mut()),
            "bytes are waiting, yet the reader pauses"
        );
        let read = next.await.unwrap();
        received.extend_from_slice(&chunk[..read]);
        loop {
            let read = reader.read(&mut chunk).await.unwrap();
            if read == 0 {
                break;
            }
            received.extend_from_slice(&chunk[..read]);
        }
        assert_eq!(received, sent, "everything arrives, in order");
        // Four reads of 500 after the burst, each after 50 ms of debt but the first: at least
        // 150 ms, however fast the machine (a lower bound, not a speed).
        assert!(started.elapsed() >= Duration::from_millis(150));
    }

    #[tokio::test]
    async fn writes_are_not_throttled() {
        let (client, mut server) = tokio::io::duplex(64 * 1024);
        let rate = ReadRate {
            bytes_per_second: 1,
            burst_bytes: 1,
        };
        let mut writer = Throttled::new(client, rate);
        let write = writer.write_all(&[7u8; 20_000]);
        tokio::pin!(write);
        assert!(!is_pending(write.as_mut()), "written at once");
        let mut got = vec![0u8; 20_000];
        server.read_exact(&mut got).await.unwrap();
    }
}
