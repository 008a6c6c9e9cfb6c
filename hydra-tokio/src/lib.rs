//! tokio integration for Hydra's stack: [`TcpListener::accept`] as a
//! future, [`TcpStream`] implementing tokio's `AsyncRead` and `AsyncWrite`,
//! and (feature `axum`, on by default) `axum::serve::Listener`, so
//! `axum::serve(listener, router)` runs unchanged on Hydra, standalone or
//! as a group member; hyper 1.x runs on a [`TcpStream`] through
//! `hyper_util::rt::TokioIo`.
//!
//! No thread per connection and no polling: the stack's driver wakes a
//! task when something changes on its connection or listener
//! (`stack::socket::TcpStream::register_waker`).
//!
//! ```no_run
//! # async fn serve(net: stack::socket::NetStack) -> std::io::Result<()> {
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! let listener = hydra_tokio::TcpListener::bind(&net, "0.0.0.0:7".parse().unwrap())?;
//! loop {
//!     let (mut stream, _) = listener.accept().await?;
//!     tokio::spawn(async move {
//!         let mut buf = vec![0u8; 4096];
//!         while let Ok(n @ 1..) = stream.read(&mut buf).await {
//!             if stream.write_all(&buf[..n]).await.is_err() { break; }
//!         }
//!     });
//! }
//! # }
//! ```

#![forbid(unsafe_code)]

use std::future::poll_fn;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use stack::socket::NetStack;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A listener whose `accept` is a future.
pub struct TcpListener {
    inner: stack::socket::TcpListener,
}

impl TcpListener {
    /// Listen on `local` (`0.0.0.0` = any local address), actively
    /// replicated in a group.
    pub fn bind(net: &NetStack, local: SocketAddr) -> io::Result<TcpListener> {
        Self::from_listener(stack::socket::TcpListener::bind(net, local)?)
    }

    /// Listen on `local` with passive replication (only the primary's
    /// application runs; see `stack::socket::TcpListener::bind_passive`).
    pub fn bind_passive(net: &NetStack, local: SocketAddr) -> io::Result<TcpListener> {
        Self::from_listener(stack::socket::TcpListener::bind_passive(net, local)?)
    }

    /// Wrap a listener of the blocking API.
    pub fn from_listener(inner: stack::socket::TcpListener) -> io::Result<TcpListener> {
        inner.set_nonblocking(true)?;
        Ok(TcpListener { inner })
    }

    /// The next established connection and its peer's address.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        poll_fn(|cx| self.poll_accept(cx)).await
    }

    /// Poll for the next established connection.
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(TcpStream, SocketAddr)>> {
        let attempt = |l: &stack::socket::TcpListener| match l.accept() {
            Ok((s, peer)) => Some(TcpStream::from_stream(s).map(|s| (s, peer))),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
            Err(e) => Some(Err(e)),
        };
        if let Some(r) = attempt(&self.inner) {
            return Poll::Ready(r);
        }
        self.inner.register_waker(cx.waker());
        // A connection that arrived before the waker was registered.
        match attempt(&self.inner) {
            Some(r) => Poll::Ready(r),
            None => Poll::Pending,
        }
    }

    /// The address listened on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// A connection implementing `AsyncRead` and `AsyncWrite`.
pub struct TcpStream {
    inner: stack::socket::TcpStream,
}

impl TcpStream {
    /// Wrap a stream of the blocking API.
    pub fn from_stream(inner: stack::socket::TcpStream) -> io::Result<TcpStream> {
        inner.set_nonblocking(true)?;
        Ok(TcpStream { inner })
    }

    /// Open a connection to `remote` (the handshake runs on tokio's
    /// blocking pool).
    pub async fn connect(net: &NetStack, remote: SocketAddr) -> io::Result<TcpStream> {
        let net = net.clone();
        let s =
            tokio::task::spawn_blocking(move || stack::socket::TcpStream::connect(&net, remote))
                .await
                .map_err(io::Error::other)??;
        TcpStream::from_stream(s)
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr()
    }

    /// This end's address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// Disable Nagle's algorithm.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.inner.set_nodelay(nodelay)
    }

    /// The stream of the blocking API underneath.
    pub fn get_ref(&self) -> &stack::socket::TcpStream {
        &self.inner
    }

    /// Run `op` until it does not return `WouldBlock`; then register the
    /// task's waker and try once more, so a change in between is not lost.
    fn poll_op<T>(
        &self,
        cx: &mut Context<'_>,
        mut op: impl FnMut(&stack::socket::TcpStream) -> io::Result<T>,
    ) -> Poll<io::Result<T>> {
        match op(&self.inner) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            r => return Poll::Ready(r),
        }
        self.inner.register_waker(cx.waker());
        match op(&self.inner) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
            r => Poll::Ready(r),
        }
    }
}

impl AsyncRead for TcpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let unfilled = buf.initialize_unfilled();
        match this.poll_op(cx, |s| {
            let mut s = s;
            s.read(unfilled)
        }) {
            Poll::Ready(Ok(n)) => {
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for TcpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_op(cx, |s| {
            let mut s = s;
            s.write(buf)
        })
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Written bytes are the stack's to send: nothing is held here.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.inner.shutdown(std::net::Shutdown::Write))
    }
}

#[cfg(feature = "axum")]
impl axum::serve::Listener for TcpListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            match TcpListener::accept(self).await {
                Ok(pair) => return pair,
                Err(e) => {
                    // axum wants a connection: log, back off, try again (a
                    // stopped stack fails every accept).
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        TcpListener::local_addr(self)
    }
}

// The Rust snippets of the README and the embedding guide compile as this
// crate's doctests (it can see every layer they use), so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
mod readme_snippets {}

#[cfg(doctest)]
#[doc = include_str!("../../docs/embedding.md")]
mod embedding_snippets {}
