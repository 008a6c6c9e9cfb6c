//! The ack channel's transport: kernel TCP, one outgoing connection per peer
//! (frames to it) and the peers' connections accepted on our listener
//! (frames from them). Frames are length-prefixed; authentication is the
//! replication core's job, so this layer only bounds what a stranger can
//! make it hold: a capped number of inbound connections, a capped frame
//! size, and a capped send queue per peer (overflow resets that peer's
//! connection; the protocol resends what it needs).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use hydra_base::codec::Put;
use socket2::{Domain, Protocol, Socket, Type};

use crate::replication::MemberId;

/// Largest frame accepted or sent: a connection's snapshot for a rejoining
/// member (its send and receive buffers, 4 MiB each by default) fits.
pub const MAX_FRAME: usize = 16 << 20;
/// Inbound connections kept at most (a group has a handful of members).
const MAX_INBOUND: usize = 32;
/// Unsent bytes kept per peer at most.
const MAX_QUEUE: usize = 32 << 20;
/// Bytes read per inbound connection per poll at most.
const READ_BUDGET: usize = 4 << 20;
/// A lost connection to a peer is tried again after this.
const RECONNECT_AFTER: Duration = Duration::from_millis(50);

/// Counters of the mesh for the operator.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeshStats {
    /// Frames queued to peers.
    pub frames_sent: u64,
    /// Whole frames read from peers.
    pub frames_received: u64,
    /// Connections to peers established.
    pub connects: u64,
    /// Connection attempts that failed.
    pub connect_failures: u64,
    /// Peers whose send queue overflowed (their connection was reset).
    pub queue_overflows: u64,
    /// Inbound connections dropped for announcing a frame over [`MAX_FRAME`].
    pub oversized_frames: u64,
    /// Inbound connections dropped to make room for a newer one.
    pub inbound_evicted: u64,
    /// Connections to a peer that the peer's side closed or reset.
    pub peer_closes: u64,
}

struct Inbound {
    stream: TcpStream,
    buf: Vec<u8>,
}

struct Outbound {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    connected: bool,
    queue: Vec<u8>,
    sent: usize,
    retry_at: Instant,
}

impl Outbound {
    fn reset(&mut self, why: &str) {
        if self.stream.is_some() {
            tracing::debug!(peer = %self.addr, "ack-channel connection reset: {why}");
        }
        self.stream = None;
        self.connected = false;
        // Unsent frames go too: the replication core resends from the peer's
        // acknowledgement, and a half-written frame must not be continued on
        // a new connection.
        self.queue.clear();
        self.sent = 0;
        self.retry_at = Instant::now() + RECONNECT_AFTER;
    }
}

/// The full mesh of one member: a listener for its peers' connections and
/// one outgoing connection per peer, all non-blocking.
pub struct Mesh {
    me: MemberId,
    listener: TcpListener,
    inbound: Vec<Inbound>,
    outbound: HashMap<MemberId, Outbound>,
    /// Read buffer, kept (not zeroed per read).
    chunk: Vec<u8>,
    stats: MeshStats,
    /// Peers that closed our connection to them, not yet taken.
    closed: Vec<MemberId>,
}

impl Mesh {
    /// Listen on `listen` for member `me`; no peers yet.
    pub fn new(me: MemberId, listen: SocketAddr) -> io::Result<Mesh> {
        let listener = TcpListener::bind(listen)?;
        listener.set_nonblocking(true)?;
        Ok(Mesh {
            me,
            listener,
            inbound: Vec::new(),
            outbound: HashMap::new(),
            chunk: vec![0; 64 * 1024],
            stats: MeshStats::default(),
            closed: Vec::new(),
        })
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Counters for the operator.
    pub fn stats(&self) -> &MeshStats {
        &self.stats
    }

    /// The peers to send to (the live members of the view, without us).
    pub fn set_peers(&mut self, peers: Vec<(MemberId, SocketAddr)>) {
        self.outbound
            .retain(|id, o| peers.iter().any(|(p, a)| p == id && *a == o.addr));
        for (id, addr) in peers {
            if id == self.me {
                continue;
            }
            self.outbound.entry(id).or_insert_with(|| Outbound {
                addr,
                stream: None,
                connected: false,
                queue: Vec::new(),
                sent: 0,
                retry_at: Instant::now(),
            });
        }
    }

    /// Descriptors to wait on for input: the listener, every inbound
    /// connection, and every established outbound one (a peer never writes
    /// on those, so they become readable only when the peer's side closes).
    pub fn fds(&self) -> Vec<RawFd> {
        let mut fds = vec![self.listener.as_raw_fd()];
        fds.extend(self.inbound.iter().map(|i| i.stream.as_raw_fd()));
        fds.extend(self.outbound_watched().into_iter().map(|(_, fd)| fd));
        fds
    }

    /// Established outbound connections, in a fixed order.
    fn outbound_watched(&self) -> Vec<(MemberId, RawFd)> {
        let mut out: Vec<(MemberId, RawFd)> = self
            .outbound
            .iter()
            .filter(|(_, o)| o.connected)
            .filter_map(|(id, o)| o.stream.as_ref().map(|s| (*id, s.as_raw_fd())))
            .collect();
        out.sort_unstable_by_key(|(id, _)| id.0);
        out
    }

    /// Peers whose side closed or reset our connection to them since the
    /// last call. Their process has most likely ended (its kernel closed
    /// its sockets), which the replication core reports at once rather than
    /// after a silence timeout; the authority still decides.
    pub fn take_closed(&mut self) -> Vec<MemberId> {
        std::mem::take(&mut self.closed)
    }

    /// Unsent output or a pending connection: poll again soon.
    pub fn has_backlog(&self) -> bool {
        self.outbound
            .values()
            .any(|o| o.queue.len() > o.sent || (o.stream.is_some() && !o.connected))
    }

    /// Queue a frame for a peer (written by [`Mesh::flush`] or [`Mesh::poll`]);
    /// unknown peers are ignored.
    pub fn send(&mut self, to: MemberId, frame: Vec<u8>) {
        if frame.len() > MAX_FRAME {
            self.stats.oversized_frames += 1;
            return;
        }
        let Some(out) = self.outbound.get_mut(&to) else {
            return;
        };
        if out.queue.len() - out.sent + frame.len() > MAX_QUEUE {
            self.stats.queue_overflows += 1;
            out.reset("send queue overflow");
            return;
        }
        if out.sent > 0 && out.sent == out.queue.len() {
            out.queue.clear();
            out.sent = 0;
        }
        out.queue.put_bytes(&frame);
        self.stats.frames_sent += 1;
    }

    /// Write queued frames (one write per peer for a turn's frames).
    pub fn flush(&mut self) {
        for out in self.outbound.values_mut() {
            Self::flush_one(out, &mut self.stats);
        }
    }

    /// Accept, read every inbound connection (bounded) and push queued output.
    /// Returns the complete frames received.
    pub fn poll(&mut self) -> Vec<Vec<u8>> {
        // One poll(2) tells which sockets have input: a non-blocking accept
        // or read on an idle socket is far dearer (accept allocates a file
        // before it finds the queue empty).
        let watched = self.outbound_watched();
        let ready = self.readiness();
        let inbound_count = self.inbound.len();
        for (k, (id, _)) in watched.iter().enumerate() {
            if ready.get(1 + inbound_count + k).copied().unwrap_or(false) {
                self.check_closed(*id);
            }
        }
        if ready.first() == Some(&true) {
            self.accept();
        }
        let mut frames = Vec::new();
        let mut i = 0;
        while i < self.inbound.len() {
            if !ready.get(i + 1).copied().unwrap_or(true) {
                i += 1;
                continue;
            }
            match Self::read_frames(
                &mut self.inbound[i],
                &mut self.chunk,
                &mut frames,
                &mut self.stats,
            ) {
                Ok(()) => i += 1,
                Err(e) => {
                    tracing::debug!("ack-channel inbound closed: {e}");
                    self.inbound.swap_remove(i);
                }
            }
        }
        self.stats.frames_received += frames.len() as u64;
        for out in self.outbound.values_mut() {
            Self::flush_one(out, &mut self.stats);
        }
        frames
    }

    /// An outbound connection became readable: the peer's side closed or
    /// reset it (it never writes on it). Anything else read is dropped.
    fn check_closed(&mut self, id: MemberId) {
        let Some(out) = self.outbound.get_mut(&id) else {
            return;
        };
        let Some(stream) = out.stream.as_mut() else {
            return;
        };
        let gone = match stream.read(&mut self.chunk) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ),
        };
        if gone {
            out.reset("the peer closed the connection");
            self.stats.peer_closes += 1;
            if !self.closed.contains(&id) {
                self.closed.push(id);
            }
        }
    }

    /// Readable (or hung up) now: the listener first, then each inbound
    /// socket, then each watched outbound one (as [`Mesh::fds`] lists them).
    fn readiness(&self) -> Vec<bool> {
        let fds = self.fds();
        // Cannot tell (EBADF, ENOMEM): try everything.
        hydra_base::poll::wait_readable(&fds, Some(std::time::Duration::ZERO))
            .unwrap_or_else(|_| vec![true; fds.len()])
    }

    fn accept(&mut self) {
        for _ in 0..MAX_INBOUND {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    if self.inbound.len() >= MAX_INBOUND {
                        self.inbound.remove(0);
                        self.stats.inbound_evicted += 1;
                    }
                    self.inbound.push(Inbound {
                        stream,
                        buf: Vec::new(),
                    });
                }
                Err(_) => break,
            }
        }
    }

    fn read_frames(
        conn: &mut Inbound,
        chunk: &mut [u8],
        frames: &mut Vec<Vec<u8>>,
        stats: &mut MeshStats,
    ) -> io::Result<()> {
        let mut budget = READ_BUDGET;
        while budget > 0 {
            match conn.stream.read(chunk) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "peer closed")),
                Ok(n) => {
                    budget = budget.saturating_sub(n);
                    conn.buf.extend_from_slice(&chunk[..n]);
                    let mut at = 0;
                    while conn.buf.len() - at >= 4 {
                        let len =
                            u32::from_be_bytes(conn.buf[at..at + 4].try_into().expect("4 bytes"))
                                as usize;
                        if len > MAX_FRAME {
                            stats.oversized_frames += 1;
                            return Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                "oversized frame",
                            ));
                        }
                        if conn.buf.len() - at - 4 < len {
                            break;
                        }
                        frames.push(conn.buf[at + 4..at + 4 + len].to_vec());
                        at += 4 + len;
                    }
                    conn.buf.drain(..at);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn flush_one(out: &mut Outbound, stats: &mut MeshStats) {
        if out.stream.is_none() {
            if out.queue.is_empty() || Instant::now() < out.retry_at {
                return;
            }
            match start_connect(out.addr) {
                Ok(s) => {
                    stats.connects += 1;
                    out.stream = Some(s);
                    out.connected = false;
                }
                Err(e) => {
                    stats.connect_failures += 1;
                    out.reset(&format!("connect: {e}"));
                    return;
                }
            }
        }
        let Some(stream) = out.stream.as_mut() else {
            return;
        };
        if !out.connected {
            match stream.take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => {
                    stats.connect_failures += 1;
                    out.reset(&format!("connect: {e}"));
                    return;
                }
            }
            if stream.peer_addr().is_err() {
                return; // still connecting
            }
            out.connected = true;
        }
        while out.sent < out.queue.len() {
            match stream.write(&out.queue[out.sent..]) {
                Ok(0) => {
                    out.reset("write returned 0");
                    return;
                }
                Ok(n) => out.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    out.reset(&format!("write: {e}"));
                    return;
                }
            }
        }
        out.queue.clear();
        out.sent = 0;
    }
}

/// Begin a non-blocking connect (the driver thread must never wait on one).
fn start_connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    socket.set_nodelay(true)?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e)
            if e.raw_os_error() == Some(libc::EINPROGRESS)
                || e.kind() == io::ErrorKind::WouldBlock => {}
        Err(e) => return Err(e),
    }
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Poll until `done` or 5 s; returns the frames received.
    fn poll_until(mesh: &mut Mesh, done: impl Fn(&Mesh) -> bool) -> Vec<Vec<u8>> {
        let end = Instant::now() + Duration::from_secs(5);
        let mut got = Vec::new();
        while !done(mesh) && Instant::now() < end {
            got.extend(mesh.poll());
            std::thread::sleep(Duration::from_millis(1));
        }
        got
    }

    #[test]
    fn frames_arrive_whole_and_in_order_over_loopback() {
        let mut a = Mesh::new(MemberId(1), "127.0.0.1:0".parse().unwrap()).unwrap();
        let mut b = Mesh::new(MemberId(2), "127.0.0.1:0".parse().unwrap()).unwrap();
        a.set_peers(vec![(MemberId(2), b.local_addr().unwrap())]);
        let frames: Vec<Vec<u8>> = (0..200u32)
            .map(|i| vec![i as u8; (i as usize * 97) % 70_000 + 1])
            .collect();
        for f in &frames {
            a.send(MemberId(2), f.clone());
            a.flush();
        }
        let end = Instant::now() + Duration::from_secs(5);
        let mut got = Vec::new();
        while got.len() < frames.len() && Instant::now() < end {
            a.poll();
            got.extend(b.poll());
        }
        assert_eq!(got, frames);
        assert!(!a.has_backlog());
    }

    #[test]
    fn a_peer_whose_process_ends_is_reported_closed_at_once() {
        let mut a = Mesh::new(MemberId(1), "127.0.0.1:0".parse().unwrap()).unwrap();
        let mut b = Mesh::new(MemberId(2), "127.0.0.1:0".parse().unwrap()).unwrap();
        a.set_peers(vec![(MemberId(2), b.local_addr().unwrap())]);
        a.send(MemberId(2), vec![1; 10]);
        a.flush();
        let got = poll_until(&mut b, |m| m.stats().frames_received > 0);
        assert_eq!(got.len(), 1);
        assert!(a.take_closed().is_empty(), "a live peer is not reported");
        for _ in 0..20 {
            a.poll();
        }
        assert!(a.take_closed().is_empty(), "a live peer is not reported");
        // Its process ends: the kernel closes its side of every connection.
        drop(b);
        poll_until(&mut a, |m| m.stats().peer_closes > 0);
        assert_eq!(a.take_closed(), vec![MemberId(2)]);
        assert!(a.take_closed().is_empty(), "reported once");
    }

    #[test]
    fn a_stranger_sending_an_oversized_length_is_disconnected() {
        let mut b = Mesh::new(MemberId(2), "127.0.0.1:0".parse().unwrap()).unwrap();
        let mut s = TcpStream::connect(b.local_addr().unwrap()).unwrap();
        s.write_all(&u32::MAX.to_be_bytes()).unwrap();
        assert!(poll_until(&mut b, |m| m.stats().oversized_frames > 0).is_empty());
        assert_eq!(b.stats().oversized_frames, 1);
        assert!(b.inbound.is_empty());
    }

    #[test]
    fn an_unreachable_peer_does_not_block_and_its_queue_is_bounded() {
        let mut a = Mesh::new(MemberId(1), "127.0.0.1:0".parse().unwrap()).unwrap();
        // A port nobody listens on: connection refused, retried later.
        let closed = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        a.set_peers(vec![(MemberId(2), closed)]);
        let start = Instant::now();
        for _ in 0..100 {
            a.send(MemberId(2), vec![0; 1 << 20]);
            a.flush();
        }
        assert!(start.elapsed() < Duration::from_secs(2));
        let out = &a.outbound[&MemberId(2)];
        assert!(out.queue.len() <= MAX_QUEUE + (1 << 20) + 4);
    }
}
