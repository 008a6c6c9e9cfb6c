//! `TcpListener`: a passive open, used like `std::net::TcpListener`.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{lock, stopped_error, wait_change, NetStack, TcpStream, WaitKey};
use crate::iface::ListenError;

/// Accepts connections on one local address and port.
pub struct TcpListener {
    net: NetStack,
    local: SocketAddr,
    nonblocking: AtomicBool,
}

impl TcpListener {
    /// Listen on `local`. `0.0.0.0:port` accepts IPv4 connections to any
    /// address; `[::]:port` accepts IPv4 and IPv6 alike, as a Linux socket
    /// does by default (`net.ipv6.bindv6only = 0`); an IPv4 client of it
    /// has an IPv4 `peer_addr`, not an IPv4-mapped one. A listener on the
    /// exact address takes precedence over a wildcard.
    pub fn bind(net: &NetStack, local: SocketAddr) -> io::Result<TcpListener> {
        Self::bind_with(net, local, false)
    }

    /// Listen for a passively replicated application (DESIGN "Replication
    /// modes"): `accept` returns connections only while this replica is
    /// primary, including, after a takeover, every connection the old
    /// primary's application had; their state blocks
    /// ([`TcpStream::state_lookup`]) tell the application where it was. A
    /// handle taken while primary fails with `NotConnected` once the
    /// replica steps down.
    pub fn bind_passive(net: &NetStack, local: SocketAddr) -> io::Result<TcpListener> {
        Self::bind_with(net, local, true)
    }

    fn bind_with(net: &NetStack, local: SocketAddr, passive: bool) -> io::Result<TcpListener> {
        net.with_stack(|s| {
            if passive {
                s.listen_passive(local)
            } else {
                s.listen(local)
            }
        })
        .map_err(|e| match e {
            ListenError::AddrInUse | ListenError::OrderedTaken => {
                io::Error::new(io::ErrorKind::AddrInUse, format!("{local}: {e}"))
            }
        })?;
        Ok(TcpListener {
            net: net.clone(),
            local,
            nonblocking: AtomicBool::new(false),
        })
    }

    /// The address the listener listens on. Never fails.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }

    /// Make `accept` return `WouldBlock` instead of waiting when no
    /// connection is ready. Never fails.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.nonblocking.store(nonblocking, Ordering::Relaxed);
        Ok(())
    }

    /// Have `waker` woken when a connection may be ready to accept, or
    /// when the stack stops (see [`TcpStream::register_waker`]).
    pub fn register_waker(&self, waker: &std::task::Waker) {
        lock(&self.net.shared).register_waker(WaitKey::Listener(self.local), waker);
    }

    /// Wait for the next established connection.
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let shared = &self.net.shared;
        let mut g = lock(shared);
        loop {
            if g.stopped {
                return Err(stopped_error());
            }
            if let Some(key) = g.stack.accept(self.local) {
                let generation = g.stack.app_generation(key);
                drop(g);
                return Ok((
                    TcpStream::from_accepted(self.net.clone(), key, generation),
                    key.remote,
                ));
            }
            if self.nonblocking.load(Ordering::Relaxed) {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            g = wait_change(shared, g, WaitKey::Listener(self.local), None).0;
        }
    }

    /// Accepted connections, forever (like `std::net::TcpListener::incoming`).
    pub fn incoming(&self) -> impl Iterator<Item = io::Result<TcpStream>> + '_ {
        std::iter::from_fn(move || Some(self.accept().map(|(s, _)| s)))
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        let local = self.local;
        self.net.with_stack(|s| s.unlisten(local));
    }
}
