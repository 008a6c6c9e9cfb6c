//! The group simulator's client: our own stack, or smoltcp's TCP (a peer we
//! did not write: no SACK, no timestamps, its own ACK and retransmission
//! policy), behind the few calls the simulator needs.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

use smoltcp::iface::{Config as IfaceConfig, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, IpEndpoint, Ipv4Address, Ipv6Address};
use stack::iface::{RecvError, SendError};
use stack::Seq;
use stack::State;
use stack::{Config, ConnKey, Instant, Stack};

/// Which TCP the client runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    Hydra,
    Smoltcp,
}

/// What a connection's receive call found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    Data(usize),
    Eof,
    WouldBlock,
}

/// A connection failed (reset or gave up).
#[derive(Debug, Clone)]
pub struct ClientError {
    /// It ran out of retransmissions (the group may have lost every member).
    pub timed_out: bool,
    pub what: String,
}

/// Where a connection stands, for the checker.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Its SYN is not answered yet.
    pub opening: bool,
    /// Both FINs are through (TIME-WAIT or closed).
    pub finished: bool,
    pub iss: Seq,
    /// Everything before this the server acknowledged.
    pub acked: Seq,
}

pub enum SimClient {
    Hydra(Box<Stack>),
    Smoltcp(Box<SmolClient>),
}

impl SimClient {
    pub fn new(kind: ClientKind, seed: u64) -> SimClient {
        match kind {
            // A key from the seed: a seed must replay the same run.
            ClientKind::Hydra => SimClient::Hydra(Box::new(Stack::new(Config {
                isn_key: (u128::from(seed) | 1 << 100).to_le_bytes(),
                ..Config::default()
            }))),
            ClientKind::Smoltcp => SimClient::Smoltcp(Box::new(SmolClient::new(seed))),
        }
    }

    pub fn connect(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Result<ConnKey, String> {
        match self {
            SimClient::Hydra(s) => s.connect(now, local, remote).map_err(|e| e.to_string()),
            SimClient::Smoltcp(s) => s.connect(local, remote),
        }
    }

    /// Past SYN-SENT: it may send.
    pub fn established(&self, key: ConnKey) -> bool {
        self.progress(key).is_some_and(|p| !p.opening)
    }

    /// Queue bytes; `Ok(0)` when the send buffer is full.
    pub fn send(&mut self, key: ConnKey, data: &[u8]) -> Result<usize, ClientError> {
        match self {
            SimClient::Hydra(s) => match s.send(key, data) {
                Ok(n) => Ok(n),
                Err(SendError::WouldBlock) => Ok(0),
                Err(e) => Err(ClientError {
                    timed_out: e == SendError::TimedOut,
                    what: format!("send failed: {e}"),
                }),
            },
            SimClient::Smoltcp(s) => s.send(key, data),
        }
    }

    pub fn shutdown_write(&mut self, key: ConnKey) {
        match self {
            SimClient::Hydra(s) => s.shutdown_write(key),
            SimClient::Smoltcp(s) => s.socket(key).close(),
        }
    }

    pub fn recv(&mut self, key: ConnKey, buf: &mut [u8]) -> Result<Received, ClientError> {
        match self {
            SimClient::Hydra(s) => match s.recv(key, buf) {
                Ok(0) => Ok(Received::Eof),
                Ok(n) => Ok(Received::Data(n)),
                Err(RecvError::WouldBlock) => Ok(Received::WouldBlock),
                Err(e) => Err(ClientError {
                    timed_out: e == RecvError::TimedOut,
                    what: e.to_string(),
                }),
            },
            SimClient::Smoltcp(s) => s.recv(key, buf),
        }
    }

    pub fn handle_packet(&mut self, now: Instant, packet: &[u8]) {
        match self {
            SimClient::Hydra(s) => s.handle_packet(now, packet),
            SimClient::Smoltcp(s) => s.device.rx.push_back(packet.to_vec()),
        }
    }

    /// Process what arrived and what timers ask for.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self {
            SimClient::Hydra(s) => s.handle_timeout(now),
            SimClient::Smoltcp(s) => s.poll(now),
        }
    }

    /// Hand every packet the client wants to send to `out`.
    pub fn transmit(&mut self, now: Instant, scratch: &mut [u8], mut out: impl FnMut(&[u8])) {
        match self {
            SimClient::Hydra(s) => {
                while s.poll_event().is_some() {}
                while let Some(n) = s.poll_transmit(now, scratch) {
                    out(&scratch[..n]);
                }
            }
            SimClient::Smoltcp(s) => {
                s.poll(now);
                while let Some(p) = s.device.tx.pop_front() {
                    s.note_syn(&p);
                    out(&p);
                }
            }
        }
    }

    pub fn poll_timeout(&mut self) -> Option<Instant> {
        match self {
            SimClient::Hydra(s) => s.poll_timeout(),
            SimClient::Smoltcp(s) => s.poll_timeout(),
        }
    }

    pub fn progress(&self, key: ConnKey) -> Option<Progress> {
        match self {
            SimClient::Hydra(s) => {
                let info = s.conn_info(key)?;
                let iss = s.open_record(key).map_or(Seq(0), |r| r.iss);
                Some(Progress {
                    opening: info.state == State::SynSent,
                    finished: matches!(info.state, State::TimeWait | State::Closed),
                    iss,
                    acked: info.snd_una,
                })
            }
            SimClient::Smoltcp(s) => s.progress(key),
        }
    }
}

/// A smoltcp device that is two packet queues: what the simulated links
/// delivered (`rx`) and what smoltcp sent (`tx`).
#[derive(Default)]
pub struct PacketQueue {
    pub rx: VecDeque<Vec<u8>>,
    pub tx: VecDeque<Vec<u8>>,
}

pub struct RxToken(Vec<u8>);
pub struct TxToken<'a>(&'a mut VecDeque<Vec<u8>>);

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut packet = vec![0u8; len];
        let r = f(&mut packet);
        self.0.push_back(packet);
        r
    }
}

impl phy::Device for PacketQueue {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _now: smoltcp::time::Instant) -> Option<(RxToken, TxToken<'_>)> {
        let packet = self.rx.pop_front()?;
        Some((RxToken(packet), TxToken(&mut self.tx)))
    }

    fn transmit(&mut self, _now: smoltcp::time::Instant) -> Option<TxToken<'_>> {
        Some(TxToken(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = 1500;
        caps
    }
}

struct SmolConn {
    handle: SocketHandle,
    /// Bytes the application queued so far.
    written: u64,
    /// From the SYN it sent.
    iss: Option<Seq>,
}

pub struct SmolClient {
    iface: Interface,
    device: PacketQueue,
    sockets: SocketSet<'static>,
    conns: HashMap<ConnKey, SmolConn>,
    now: Instant,
}

/// Send and receive buffers: above 64 KiB, so smoltcp scales its window.
const SMOL_BUFFER: usize = 128 * 1024;

fn smol_time(now: Instant) -> smoltcp::time::Instant {
    smoltcp::time::Instant::from_micros(now.total_micros() as i64)
}

impl SmolClient {
    fn new(seed: u64) -> SmolClient {
        let mut device = PacketQueue::default();
        let mut config = IfaceConfig::new(HardwareAddress::Ip);
        // Its initial sequence numbers and ports follow the seed.
        config.random_seed = seed;
        let mut iface = Interface::new(config, &mut device, smoltcp::time::Instant::ZERO);
        iface.update_ip_addrs(|a| {
            // The whole benchmark range and the ULA prefix are on-link: no
            // route needed to the VIP of either family.
            let _ = a.push(IpCidr::new(
                IpAddress::Ipv4(Ipv4Address::new(198, 18, 0, 1)),
                15,
            ));
            let _ = a.push(IpCidr::new(
                IpAddress::Ipv6(Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, 1)),
                8,
            ));
        });
        SmolClient {
            iface,
            device,
            sockets: SocketSet::new(Vec::new()),
            conns: HashMap::new(),
            now: Instant::ZERO,
        }
    }

    fn connect(&mut self, local: SocketAddr, remote: SocketAddr) -> Result<ConnKey, String> {
        let mut socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; SMOL_BUFFER]),
            tcp::SocketBuffer::new(vec![0; SMOL_BUFFER]),
        );
        let to = IpEndpoint::new(IpAddress::from(remote.ip()), remote.port());
        let from = IpEndpoint::new(IpAddress::from(local.ip()), local.port());
        socket
            .connect(self.iface.context(), to, from)
            .map_err(|e| format!("smoltcp connect: {e}"))?;
        let handle = self.sockets.add(socket);
        let key = ConnKey { local, remote };
        self.conns.insert(
            key,
            SmolConn {
                handle,
                written: 0,
                iss: None,
            },
        );
        Ok(key)
    }

    fn socket(&mut self, key: ConnKey) -> &mut tcp::Socket<'static> {
        let handle = self.conns[&key].handle;
        self.sockets.get_mut::<tcp::Socket>(handle)
    }

    fn send(&mut self, key: ConnKey, data: &[u8]) -> Result<usize, ClientError> {
        let socket = self.socket(key);
        if !socket.is_open() {
            return Err(ClientError {
                timed_out: false,
                what: "send failed: smoltcp's socket is closed".into(),
            });
        }
        let n = socket.send_slice(data).map_err(|e| ClientError {
            timed_out: false,
            what: format!("send failed: {e}"),
        })?;
        if let Some(c) = self.conns.get_mut(&key) {
            c.written += n as u64;
        }
        Ok(n)
    }

    fn recv(&mut self, key: ConnKey, buf: &mut [u8]) -> Result<Received, ClientError> {
        let socket = self.socket(key);
        if matches!(
            socket.state(),
            tcp::State::SynSent | tcp::State::SynReceived
        ) {
            return Ok(Received::WouldBlock);
        }
        if socket.can_recv() {
            let n = socket.recv_slice(buf).map_err(|e| ClientError {
                timed_out: false,
                what: format!("recv failed: {e}"),
            })?;
            return Ok(if n == 0 {
                Received::WouldBlock
            } else {
                Received::Data(n)
            });
        }
        // No more bytes will come: the server's FIN, or a reset (the
        // simulator sees every reset the group sends).
        Ok(if socket.may_recv() {
            Received::WouldBlock
        } else {
            Received::Eof
        })
    }

    fn poll(&mut self, now: Instant) {
        self.now = now;
        self.iface
            .poll(smol_time(now), &mut self.device, &mut self.sockets);
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        if !self.device.tx.is_empty() || !self.device.rx.is_empty() {
            return Some(self.now);
        }
        let at = self.iface.poll_at(smol_time(self.now), &self.sockets)?;
        Some(Instant::from_micros(at.total_micros().max(0) as u64))
    }

    /// Learn a connection's ISS from its SYN.
    fn note_syn(&mut self, packet: &[u8]) {
        let Some(tcp) = crate::simnet::tcp_segment(packet) else {
            return;
        };
        if !tcp.syn() || tcp.ack() {
            return;
        }
        let port = tcp.src_port();
        if let Some(c) = self.conns.iter_mut().find(|(k, _)| k.local.port() == port) {
            c.1.iss = Some(Seq(tcp.seq_number().0 as u32));
        }
    }

    fn progress(&self, key: ConnKey) -> Option<Progress> {
        let c = self.conns.get(&key)?;
        let socket = self.sockets.get::<tcp::Socket>(c.handle);
        let iss = c.iss?;
        let state = socket.state();
        // Unacknowledged bytes stay in smoltcp's send buffer.
        let acked = c.written - socket.send_queue() as u64;
        Some(Progress {
            opening: state == tcp::State::SynSent,
            finished: matches!(state, tcp::State::TimeWait | tcp::State::Closed),
            iss,
            acked: iss + (1 + acked as usize),
        })
    }
}
