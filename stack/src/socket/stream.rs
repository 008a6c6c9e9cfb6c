//! `TcpStream`: one connection, used like `std::net::TcpStream`.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{local_addr, lock, stopped_error, wait_change, NetStack, WaitKey};
use crate::iface::{AppState, ConnKey, RecvError, Role, SendError, Stack};
use crate::tcp::checkpoint::StoreError;
use crate::tcp::State;

/// Options shared by all clones of one stream, as on a kernel socket.
#[derive(Debug, Clone, Copy, Default)]
struct Settings {
    nonblocking: bool,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    /// `shutdown(Read)` was called: reads report end of stream.
    read_shut: bool,
}

/// The connection itself; closed when the last clone of the stream drops.
struct Handle {
    net: NetStack,
    key: ConnKey,
    settings: Mutex<Settings>,
    /// Passive connections: the generation accepted (see
    /// [`Stack::app_generation`]); a stale handle must not touch it.
    generation: Option<u64>,
}

impl Handle {
    fn attached(&self, stack: &Stack) -> bool {
        self.generation.is_none() || stack.app_generation(self.key) == self.generation
    }

    /// Fails once this replica stepped down from primary (passive
    /// connections): the connection now belongs to another replica's
    /// application.
    fn check(&self, stack: &Stack) -> io::Result<()> {
        if self.attached(stack) {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "this replica is no longer the primary of the connection",
            ))
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.net.with_stack(|s| {
            if self.attached(s) {
                s.close(self.key)
            }
        });
    }
}

/// A TCP connection of a [`NetStack`].
pub struct TcpStream {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpStream")
            .field("local", &self.handle.key.local)
            .field("peer", &self.handle.key.remote)
            .finish()
    }
}

impl TcpStream {
    pub(super) fn from_key(net: NetStack, key: ConnKey) -> TcpStream {
        Self::from_accepted(net, key, None)
    }

    pub(super) fn from_accepted(net: NetStack, key: ConnKey, generation: Option<u64>) -> TcpStream {
        TcpStream {
            handle: Arc::new(Handle {
                net,
                key,
                settings: Mutex::new(Settings::default()),
                generation,
            }),
        }
    }

    /// Open a connection to `remote` from an ephemeral port.
    pub fn connect(net: &NetStack, remote: SocketAddr) -> io::Result<TcpStream> {
        Self::connect_inner(net, remote, None)
    }

    /// Like [`TcpStream::connect`], giving up after `timeout`.
    pub fn connect_timeout(
        net: &NetStack,
        remote: SocketAddr,
        timeout: Duration,
    ) -> io::Result<TcpStream> {
        Self::connect_inner(net, remote, Some(timeout))
    }

    fn connect_inner(
        net: &NetStack,
        remote: SocketAddr,
        timeout: Option<Duration>,
    ) -> io::Result<TcpStream> {
        let shared = &net.shared;
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        let mut g = lock(shared);
        let now = super::now(shared);
        local_addr(shared, remote, 0)?;
        let mut key = None;
        // Ephemeral range 49152..=65535 (RFC 6335); skip 4-tuples in use.
        for _ in 0..16384 {
            let port = g.next_port;
            g.next_port = if port == u16::MAX { 49152 } else { port + 1 };
            match g
                .stack
                .connect(now, local_addr(shared, remote, port)?, remote)
            {
                Ok(k) => {
                    key = Some(k);
                    break;
                }
                Err(crate::iface::ConnectError::AddrInUse) => continue,
                Err(e) => return Err(io::Error::other(e)),
            }
        }
        let key = key.ok_or_else(|| {
            io::Error::new(io::ErrorKind::AddrNotAvailable, "no free ephemeral port")
        })?;
        shared.wake.wake();
        let stream = {
            drop(g);
            TcpStream::from_key(net.clone(), key)
        };
        let mut g = lock(shared);
        loop {
            if g.stopped {
                return Err(stopped_error());
            }
            match g.stack.conn_info(key).map(|i| i.state) {
                Some(State::SynSent) => {}
                Some(State::Closed) | None => {
                    let mut probe = [0u8; 0];
                    let err = match g.stack.recv(key, &mut probe) {
                        Err(RecvError::TimedOut) => io::ErrorKind::TimedOut,
                        _ => io::ErrorKind::ConnectionRefused,
                    };
                    return Err(io::Error::new(err, format!("connect to {remote}")));
                }
                Some(_) => return Ok(stream),
            }
            let (g2, in_time) = wait_change(shared, g, WaitKey::Conn(key), deadline);
            g = g2;
            if !in_time {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("connect to {remote} timed out"),
                ));
            }
        }
    }

    /// The connection's identity in the core.
    pub fn key(&self) -> ConnKey {
        self.handle.key
    }

    /// The remote endpoint's address. Never fails.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.handle.key.remote)
    }

    /// The local endpoint's address. Never fails.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.handle.key.local)
    }

    /// Another handle to the same connection (e.g. one thread reads, one writes).
    pub fn try_clone(&self) -> io::Result<TcpStream> {
        Ok(TcpStream {
            handle: self.handle.clone(),
        })
    }

    /// Disable (`true`) or enable Nagle's algorithm on the connection
    /// (TCP_NODELAY). Never fails.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.handle
            .net
            .with_stack(|s| s.set_nodelay(self.handle.key, nodelay));
        Ok(())
    }

    /// Make reads and writes return `WouldBlock` instead of waiting, for
    /// every clone of this stream. Never fails.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.settings_mut(|s| s.nonblocking = nonblocking);
        Ok(())
    }

    /// `None` blocks forever; `Some(0)` is refused as by `std`.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        check_timeout(timeout)?;
        self.settings_mut(|s| s.read_timeout = timeout);
        Ok(())
    }

    /// How long a write waits for send buffer space; `None` blocks forever,
    /// `Some(0)` is refused as by `std`.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        check_timeout(timeout)?;
        self.settings_mut(|s| s.write_timeout = timeout);
        Ok(())
    }

    /// The read timeout set by `set_read_timeout` (`None`: blocks forever).
    pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.settings().read_timeout)
    }

    /// The write timeout set by `set_write_timeout` (`None`: blocks forever).
    pub fn write_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.settings().write_timeout)
    }

    /// `Write` sends a FIN after queued data; `Read` makes later reads return
    /// end of stream; `Both` does both.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        let key = self.handle.key;
        self.handle.net.with_stack(|s| {
            if s.conn_info(key).is_none() {
                return Err(io::Error::from(io::ErrorKind::NotConnected));
            }
            self.handle.check(s)?;
            if matches!(how, Shutdown::Write | Shutdown::Both) {
                s.shutdown_write(key);
            }
            Ok(())
        })?;
        if matches!(how, Shutdown::Read | Shutdown::Both) {
            self.settings_mut(|s| s.read_shut = true);
        }
        Ok(())
    }

    fn settings(&self) -> Settings {
        *self
            .handle
            .settings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn settings_mut(&self, f: impl FnOnce(&mut Settings)) {
        f(&mut self
            .handle
            .settings
            .lock()
            .unwrap_or_else(|p| p.into_inner()));
    }

    /// Like `read`, but the bytes stay readable: an application that keeps
    /// no data of its own between calls (see [`write_consuming`]) can be
    /// resumed on another replica from the connection's state alone.
    ///
    /// [`write_consuming`]: TcpStream::write_consuming
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.do_read(buf, false)
    }

    /// Write up to `data.len()` bytes and, in the same step, mark as many
    /// peeked bytes read: an echo that holds nothing between the two.
    pub fn write_consuming(&self, data: &[u8]) -> io::Result<usize> {
        self.do_write(data, true)
    }

    /// Replace this connection's application state: opaque bytes that
    /// snapshots carry, so a replica that rejoins the group can resume the
    /// application where the others are (it reads them with [`app_state`]).
    ///
    /// [`app_state`]: TcpStream::app_state
    pub fn set_app_state(&self, state: &[u8]) -> io::Result<()> {
        let key = self.handle.key;
        self.handle.net.with_stack(|s| {
            if s.conn_info(key).is_none() {
                return Err(io::Error::from(io::ErrorKind::NotConnected));
            }
            s.set_app_state(key, state);
            Ok(())
        })
    }

    /// The application state last set (with the output count then) and
    /// the bytes the application has written so far. A connection restored
    /// from a snapshot shows the values of the replica it came from.
    pub fn app_state(&self) -> io::Result<AppState> {
        let key = self.handle.key;
        self.handle
            .net
            .with_stack(|s| s.app_state(key))
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }

    /// Mark `n` peeked bytes read and set the application state in one
    /// step: a request taken off the stream is never lost between the two.
    pub fn consume_with_state(&self, n: usize, state: &[u8]) -> io::Result<usize> {
        let key = self.handle.key;
        let shared = &self.handle.net.shared;
        let mut g = lock(shared);
        if g.stack.conn_info(key).is_none() {
            return Err(io::Error::from(io::ErrorKind::NotConnected));
        }
        self.handle.check(&g.stack)?;
        let done = g.stack.consume(key, n);
        g.stack.set_app_state(key, state);
        let driver_has_work = g.stack.has_output() || g.stack.has_event();
        drop(g);
        if driver_has_work {
            shared.wake.wake();
        }
        Ok(done)
    }

    /// Like [`peek`](TcpStream::peek), but waits until more than `have`
    /// bytes are readable (or the stream ends): for parsers that need more
    /// than what they saw.
    pub fn peek_beyond(&self, buf: &mut [u8], have: usize) -> io::Result<usize> {
        let shared = &self.handle.net.shared;
        let key = self.handle.key;
        let mut g = lock(shared);
        loop {
            if g.stopped {
                return Err(stopped_error());
            }
            self.handle.check(&g.stack)?;
            let n = match g.stack.peek(key, buf) {
                Ok(n) => n,
                Err(RecvError::WouldBlock) => 0,
                Err(e) => return Err(e.into()),
            };
            if n > have || n == buf.len() || g.stack.input_complete(key) {
                return Ok(n);
            }
            let (g2, _) = wait_change(shared, g, WaitKey::Conn(key), None);
            g = g2;
        }
    }

    /// Have `waker` woken by the next change on this connection (bytes or
    /// end of stream to read, room to write, closed), or when the stack
    /// stops: what an async runtime needs instead of a blocked thread.
    /// Register after an operation returned `WouldBlock`, then try it once
    /// more before waiting: a change in between is not missed.
    pub fn register_waker(&self, waker: &std::task::Waker) {
        lock(&self.handle.net.shared).register_waker(WaitKey::Conn(self.handle.key), waker);
    }

    /// This replica's role in its group (`Standalone` outside one).
    pub fn role(&self) -> Role {
        self.handle.net.with_stack(|s| s.role())
    }

    /// Run `f` on the core for a state-store operation, as this handle.
    fn with_store<R>(&self, f: impl FnOnce(&mut Stack) -> Result<R, StoreError>) -> io::Result<R> {
        self.handle.net.with_stack(|s| {
            self.handle.check(s)?;
            f(s).map_err(store_error)
        })
    }

    /// Passive connections: create (or resize) the state block `name` of
    /// `len` bytes (new bytes are zero). Blocks travel to the backups with
    /// the connection's next checkpoint, atomically with the reads and
    /// writes made since (see [`atomic`](TcpStream::atomic)).
    pub fn state_allocate(&self, name: &str, len: usize) -> io::Result<()> {
        self.with_store(|s| s.store_allocate(self.handle.key, name, len))
    }

    /// Write `bytes` at `offset` of block `name`: only that range travels.
    pub fn state_push(&self, name: &str, offset: usize, bytes: &[u8]) -> io::Result<()> {
        self.with_store(|s| s.store_push(self.handle.key, name, offset, bytes))
    }

    /// Replace block `name` with `bytes` (allocating it as needed).
    pub fn state_put(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.with_store(|s| s.store_put(self.handle.key, name, bytes))
    }

    /// Block `name`'s bytes, if it exists. After a takeover the new
    /// primary's application finds here what the old one had pushed.
    pub fn state_lookup(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        self.with_store(|s| s.store_lookup(self.handle.key, name))
    }

    /// Remove block `name`; false if there was none.
    pub fn state_remove(&self, name: &str) -> io::Result<bool> {
        self.with_store(|s| s.store_remove(self.handle.key, name))
    }

    /// Start an atomic step on a passive connection: until the returned
    /// guard drops, no checkpoint is cut, so the reads, writes and state
    /// pushes made meanwhile reach the backups together or not at all. Its
    /// output is held until the step ends: it must fit the send buffer, and
    /// the step must not wait for the client (peek for a whole request
    /// first), whose next bytes may wait for that very output.
    pub fn atomic(&self) -> io::Result<AtomicStep<'_>> {
        self.handle.net.with_stack(|s| {
            self.handle.check(s)?;
            s.set_atomic(self.handle.key, true);
            Ok(AtomicStep { stream: self })
        })
    }

    fn do_read(&self, buf: &mut [u8], consume: bool) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let settings = self.settings();
        if settings.read_shut {
            return Ok(0);
        }
        let shared = &self.handle.net.shared;
        let deadline = settings.read_timeout.map(|t| std::time::Instant::now() + t);
        let mut g = lock(shared);
        loop {
            if g.stopped {
                return Err(stopped_error());
            }
            self.handle.check(&g.stack)?;
            let result = if consume {
                g.stack.recv(self.handle.key, buf)
            } else {
                g.stack.peek(self.handle.key, buf)
            };
            match result {
                Ok(n) => {
                    // Reading may open the window: let the driver send the
                    // update (or tell replication) if there is one.
                    let driver_has_work = g.stack.has_output() || g.stack.has_event();
                    drop(g);
                    if driver_has_work {
                        shared.wake.wake();
                    }
                    return Ok(n);
                }
                Err(RecvError::WouldBlock) if settings.nonblocking => {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Err(RecvError::WouldBlock) => {
                    let (g2, in_time) =
                        wait_change(shared, g, WaitKey::Conn(self.handle.key), deadline);
                    g = g2;
                    if !in_time {
                        // What std returns on Linux when SO_RCVTIMEO expires.
                        return Err(io::ErrorKind::WouldBlock.into());
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn do_write(&self, buf: &[u8], consume_written: bool) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let settings = self.settings();
        let shared = &self.handle.net.shared;
        let deadline = settings
            .write_timeout
            .map(|t| std::time::Instant::now() + t);
        let mut g = lock(shared);
        loop {
            if g.stopped {
                return Err(stopped_error());
            }
            self.handle.check(&g.stack)?;
            match g.stack.send(self.handle.key, buf) {
                Ok(n) => {
                    if consume_written {
                        g.stack.consume(self.handle.key, n);
                    }
                    drop(g);
                    shared.wake.wake();
                    return Ok(n);
                }
                Err(SendError::WouldBlock) if settings.nonblocking => {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Err(SendError::WouldBlock) => {
                    let (g2, in_time) =
                        wait_change(shared, g, WaitKey::Conn(self.handle.key), deadline);
                    g = g2;
                    if !in_time {
                        return Err(io::ErrorKind::WouldBlock.into());
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// An open atomic step of a passive connection (see [`TcpStream::atomic`]).
#[must_use = "the step ends when this is dropped"]
pub struct AtomicStep<'a> {
    stream: &'a TcpStream,
}

impl Drop for AtomicStep<'_> {
    fn drop(&mut self) {
        let h = &self.stream.handle;
        h.net.with_stack(|s| {
            if h.attached(s) {
                s.set_atomic(h.key, false);
            }
        });
    }
}

fn store_error(e: StoreError) -> io::Error {
    let kind = match e {
        StoreError::NotConnected => io::ErrorKind::NotConnected,
        StoreError::NotPassive => io::ErrorKind::Unsupported,
        StoreError::NoSuchBlock(_) => io::ErrorKind::NotFound,
        StoreError::BadName | StoreError::OutOfRange { .. } => io::ErrorKind::InvalidInput,
        StoreError::TooLarge => io::ErrorKind::OutOfMemory,
    };
    io::Error::new(kind, e)
}

fn check_timeout(timeout: Option<Duration>) -> io::Result<()> {
    if timeout == Some(Duration::ZERO) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "cannot set a 0 duration timeout",
        ));
    }
    Ok(())
}

impl Read for TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.do_read(buf, true)
    }
}

impl Read for &TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.do_read(buf, true)
    }
}

impl Write for TcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.do_write(buf, false)
    }
    /// Data is handed to the core on `write`; there is nothing to flush.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Write for &TcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.do_write(buf, false)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
