//! A socket wrapper that caps how many bytes a client may send before it has authenticated.
//!
//! The WebSocket library enforces one maximum message size for the life of a connection, and
//! the size allowed after `hello-ok` (25 MiB) is far too much to let an anonymous client make us
//! buffer. So the raw stream is capped instead: until [`ReadCap::lift`] is called, reads past
//! the budget fail, which ends the connection before the library can buffer more. The budget
//! covers the whole pre-auth exchange (one `connect` frame plus framing), so it doubles as the
//! 64 KiB pre-auth frame limit.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The shared budget of one connection.
#[derive(Debug)]
pub struct ReadCap {
    remaining: AtomicUsize,
    lifted: AtomicBool,
    exceeded: AtomicBool,
}

impl ReadCap {
    pub fn new(budget: usize) -> Arc<ReadCap> {
        Arc::new(ReadCap {
            remaining: AtomicUsize::new(budget),
            lifted: AtomicBool::new(false),
            exceeded: AtomicBool::new(false),
        })
    }

    /// Removes the cap (after a successful handshake).
    pub fn lift(&self) {
        self.lifted.store(true, Ordering::Release);
    }

    /// Whether a read was refused because the budget ran out.
    pub fn exceeded(&self) -> bool {
        self.exceeded.load(Ordering::Acquire)
    }
}

/// `T` with reads counted against a [`ReadCap`].
pub struct CappedIo<T> {
    inner: T,
    cap: Arc<ReadCap>,
}

impl<T> CappedIo<T> {
    pub fn new(inner: T, cap: Arc<ReadCap>) -> Self {
        CappedIo { inner, cap }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for CappedIo<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let cap = self.cap.clone();
        if cap.lifted.load(Ordering::Acquire) {
            return Pin::new(&mut self.inner).poll_read(cx, buf);
        }
        let remaining = cap.remaining.load(Ordering::Acquire);
        if remaining == 0 {
            cap.exceeded.store(true, Ordering::Release);
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, "pre-auth byte budget exceeded")));
        }
        // Never read more than the budget allows, so the limit is exact.
        let allowed = remaining.min(buf.remaining());
        let mut limited = ReadBuf::new(buf.initialize_unfilled_to(allowed));
        let poll = Pin::new(&mut self.inner).poll_read(cx, &mut limited);
        if let Poll::Ready(Ok(())) = &poll {
            let n = limited.filled().len();
            buf.advance(n);
            cap.remaining.fetch_sub(n, Ordering::AcqRel);
        }
        poll
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for CappedIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn refuses_reads_past_the_budget_until_lifted() {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let cap = ReadCap::new(10);
        let mut io = CappedIo::new(server, cap.clone());
        client.write_all(&[1u8; 30]).await.unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(io.read(&mut buf).await.unwrap(), 10);
        assert!(io.read(&mut buf).await.is_err());
        assert!(cap.exceeded());

        let cap = ReadCap::new(4);
        let mut io = CappedIo::new(tokio::io::duplex(64).1, cap.clone());
        cap.lift();
        let (mut c2, s2) = tokio::io::duplex(64);
        io.inner = s2;
        c2.write_all(&[2u8; 20]).await.unwrap();
        assert_eq!(io.read(&mut buf).await.unwrap(), 20);
        assert!(!cap.exceeded());
    }
}
