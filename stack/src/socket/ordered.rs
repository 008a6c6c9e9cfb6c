//! One event loop for all connections of a listener, in the group's order.
//!
//! With a thread per connection, each member's scheduler decides in which
//! order the application handles different connections' bytes, so an
//! application whose connections share state (a key-value store, a chat
//! room, a lock service) would end up different on each member. An
//! [`OrderedListener`] hands a single thread the events of all its
//! connections one at a time, in the order the group committed the bytes
//! (the delivery log), with exactly the bytes each names: the same sequence
//! on every member. Standalone, the order is the order the bytes arrived.
//!
//! # The determinism contract (active replication)
//!
//! Every member runs the application on the same events. It stays the same
//! on every member, and a takeover is invisible to clients, if its state
//! and output depend only on the events, in their order:
//! - no clocks, no randomness, no outside I/O (files, other services),
//!   nothing that differs from one host to another;
//! - no other thread changing the shared state;
//! - a connection's bytes are a stream: handle every complete request they
//!   hold, whatever the chunks (consecutive events of one connection may
//!   arrive merged into one);
//! - [`OrderedEvent::Closed`] (a reset or a timeout) arrives where this
//!   member saw it, which may differ between members: drop the
//!   connection's own state on it, never change shared state.
//!
//! An application that cannot keep this contract (it needs the clock,
//! randomness or outside calls) uses passive replication instead:
//! `TcpListener::bind_passive`, where only the primary runs it and its
//! steps are checkpointed to the backups.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::Duration;

use super::{lock, stopped_error, wait_change, NetStack, TcpStream, WaitKey};
use crate::iface::{ConnKey, Delivery, ListenError, RecvError};

/// The largest event's bytes: a longer step comes as several events.
const MAX_EVENT_BYTES: usize = 256 * 1024;

/// What happened on one connection, in the group's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderedEvent {
    /// A connection's first bytes (or FIN) are next.
    Opened(ConnKey),
    /// The connection's next bytes.
    Data(ConnKey, Vec<u8>),
    /// The peer sent FIN: no more bytes will come (the connection can
    /// still be written to until [`OrderedListener::shutdown`]).
    PeerFin(ConnKey),
    /// The connection ended without a FIN: a reset or a timeout.
    Closed(ConnKey),
}

/// A listener whose connections' events come to one thread in order. See
/// the module documentation for the contract.
pub struct OrderedListener {
    net: NetStack,
    local: SocketAddr,
    streams: HashMap<ConnKey, TcpStream>,
    opened: HashSet<ConnKey>,
    ready: VecDeque<OrderedEvent>,
    /// Bytes of the current step still to read: (connection, bytes, FIN after).
    partial: Option<(ConnKey, usize, bool)>,
}

impl OrderedListener {
    /// Listen on `local` (`0.0.0.0` = any local address).
    pub fn bind(net: &NetStack, local: SocketAddr) -> io::Result<OrderedListener> {
        net.with_stack(|s| s.listen_ordered(local)).map_err(|e| {
            let kind = match e {
                ListenError::AddrInUse | ListenError::OrderedTaken => io::ErrorKind::AddrInUse,
            };
            io::Error::new(kind, format!("{local}: {e}"))
        })?;
        Ok(OrderedListener {
            net: net.clone(),
            local,
            streams: HashMap::new(),
            opened: HashSet::new(),
            ready: VecDeque::new(),
            partial: None,
        })
    }

    /// The next event, waiting up to `timeout` (`None`: until there is
    /// one). `Ok(None)` when the time ran out.
    pub fn next(&mut self, timeout: Option<Duration>) -> io::Result<Option<OrderedEvent>> {
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        loop {
            if let Some(ev) = self.ready.pop_front() {
                return Ok(Some(ev));
            }
            if let Some((key, left, fin)) = self.partial {
                self.read_step(key, left, fin, deadline)?;
                if self.ready.is_empty() && self.partial.is_some() {
                    return Ok(None); // timed out waiting for the bytes
                }
                continue;
            }
            let shared = &self.net.shared;
            let mut g = lock(shared);
            if g.stopped {
                return Err(stopped_error());
            }
            while let Some(key) = g.stack.accept(self.local) {
                let generation = g.stack.app_generation(key);
                self.streams.insert(
                    key,
                    TcpStream::from_accepted(self.net.clone(), key, generation),
                );
            }
            match g.stack.poll_delivery() {
                Some(Delivery::Data { key, len, fin }) => {
                    drop(g);
                    if self.opened.insert(key) {
                        self.ready.push_back(OrderedEvent::Opened(key));
                    }
                    self.partial = Some((key, len, fin));
                }
                Some(Delivery::Closed(key)) => {
                    drop(g);
                    self.streams.remove(&key);
                    if self.opened.remove(&key) {
                        self.ready.push_back(OrderedEvent::Closed(key));
                    }
                }
                None => {
                    let (guard, in_time) = wait_change(shared, g, WaitKey::Any, deadline);
                    drop(guard);
                    if !in_time {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Read up to one event's worth of the current step.
    fn read_step(
        &mut self,
        key: ConnKey,
        left: usize,
        fin: bool,
        deadline: Option<std::time::Instant>,
    ) -> io::Result<()> {
        let mut buf = vec![0u8; left.min(MAX_EVENT_BYTES)];
        let mut got = 0;
        let shared = &self.net.shared;
        let mut g = lock(shared);
        while got < buf.len() {
            if g.stopped {
                return Err(stopped_error());
            }
            match g.stack.recv(key, &mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                // The log committed bytes this member has yet to receive
                // (a copy it lost, being repaired): they come.
                Err(RecvError::WouldBlock) => {
                    let (g2, in_time) = wait_change(shared, g, WaitKey::Conn(key), deadline);
                    g = g2;
                    if !in_time {
                        break;
                    }
                }
                Err(_) => {
                    // Gone meanwhile: it ends here for the application.
                    drop(g);
                    self.partial = None;
                    self.streams.remove(&key);
                    if self.opened.remove(&key) {
                        self.ready.push_back(OrderedEvent::Closed(key));
                    }
                    return Ok(());
                }
            }
        }
        let driver_has_work = g.stack.has_output() || g.stack.has_event();
        drop(g);
        if driver_has_work {
            shared.wake.wake();
        }
        buf.truncate(got);
        let left = left - got;
        if got > 0 {
            self.ready.push_back(OrderedEvent::Data(key, buf));
        }
        if left == 0 {
            self.partial = None;
            if fin {
                self.ready.push_back(OrderedEvent::PeerFin(key));
            }
        } else {
            self.partial = Some((key, left, fin));
        }
        Ok(())
    }

    /// Write all of `bytes` to connection `key` (blocking while its send
    /// buffer is full).
    pub fn write_all(&self, key: ConnKey, bytes: &[u8]) -> io::Result<()> {
        let stream = self
            .streams
            .get(&key)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))?;
        (&*stream).write_all(bytes)
    }

    /// Send FIN on `key` after what was written.
    pub fn shutdown(&self, key: ConnKey) -> io::Result<()> {
        let stream = self
            .streams
            .get(&key)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))?;
        stream.shutdown(std::net::Shutdown::Write)
    }

    /// Close `key` and forget it: no more events of it.
    pub fn close(&mut self, key: ConnKey) {
        self.streams.remove(&key);
        self.opened.remove(&key);
    }

    /// The address listened on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

impl Drop for OrderedListener {
    fn drop(&mut self) {
        let local = self.local;
        self.net.with_stack(|s| s.unlisten(local));
    }
}
