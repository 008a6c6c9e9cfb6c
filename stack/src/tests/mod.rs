//! Segment-level tests of the state machine through the stack's public API:
//! packets in, packets out, as a peer on the wire would see them. This
//! file holds the harness (segments as values, a stack with a clock);
//! the tests are in `segments` (handshake, data, RFC 5961 and 7323 checks,
//! closing, timers), `hostile` (malformed and spoofed input, budgets,
//! half-open lifetime, cookies, ICMP) and `replication` (roles, gates,
//! take-over, transfer, fills).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use smoltcp::wire::{TcpControl, TcpRepr, TcpSeqNumber, TcpTimestampRepr};

use crate::iface::{ConnKey, Event, Gate, Role, Stack};
use crate::tcp::State;
use crate::wire;
use crate::Config;
use hydra_base::time::{Duration, Instant};
use hydra_base::Seq;

mod hostile;
mod ipv6;
mod replication;
mod segments;

const SERVER_IP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const SERVER: SocketAddr = SocketAddr::V4(SocketAddrV4::new(SERVER_IP, 80));
const CLIENT: SocketAddr = SocketAddr::V4(SocketAddrV4::new(CLIENT_IP, 40000));
const CLIENT_ISN: u32 = 1_000_000;

/// An owned segment, easy to build and compare.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seg {
    pub ctl: Ctl,
    pub seq: u32,
    pub ack: Option<u32>,
    pub win: u16,
    pub mss: Option<u16>,
    pub ws: Option<u8>,
    pub sack_perm: bool,
    pub sacks: Vec<(u32, u32)>,
    pub ts: Option<(u32, u32)>,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Ctl {
    #[default]
    None,
    Syn,
    Fin,
    Rst,
}

impl Seg {
    fn repr(&self) -> TcpRepr<'_> {
        let mut sack_ranges = [None; 3];
        for (i, s) in self.sacks.iter().take(3).enumerate() {
            sack_ranges[i] = Some(*s);
        }
        TcpRepr {
            src_port: CLIENT.port(),
            dst_port: SERVER.port(),
            control: match self.ctl {
                Ctl::None => TcpControl::None,
                Ctl::Syn => TcpControl::Syn,
                Ctl::Fin => TcpControl::Fin,
                Ctl::Rst => TcpControl::Rst,
            },
            seq_number: TcpSeqNumber(self.seq as i32),
            ack_number: self.ack.map(|a| TcpSeqNumber(a as i32)),
            window_len: self.win,
            window_scale: self.ws,
            max_seg_size: self.mss,
            sack_permitted: self.sack_perm,
            sack_ranges,
            timestamp: self.ts.map(|(v, e)| TcpTimestampRepr::new(v, e)),
            payload: &self.payload,
        }
    }

    /// The segment from [`CLIENT`] to [`SERVER`].
    pub fn packet(&self) -> Vec<u8> {
        self.packet_between(CLIENT, SERVER)
    }

    /// The segment from `client` to `server` (the ports are taken from
    /// [`CLIENT`] and [`SERVER`] whatever the addresses).
    pub fn packet_between(&self, client: SocketAddr, server: SocketAddr) -> Vec<u8> {
        let mut buf = vec![0u8; 2000 + self.payload.len()];
        let n = wire::emit_tcp(
            &mut buf,
            SocketAddr::new(client.ip(), CLIENT.port()),
            SocketAddr::new(server.ip(), SERVER.port()),
            64,
            &self.repr(),
            (&self.payload, &[]),
        )
        .unwrap();
        buf.truncate(n);
        buf
    }

    fn from_packet(pkt: &[u8]) -> Option<Seg> {
        let wire::Packet::Tcp(s) = wire::parse(pkt).ok()? else {
            return None;
        };
        let t = s.tcp;
        Some(Seg {
            ctl: match t.control {
                TcpControl::Syn => Ctl::Syn,
                TcpControl::Fin => Ctl::Fin,
                TcpControl::Rst => Ctl::Rst,
                _ => Ctl::None,
            },
            seq: t.seq_number.0 as u32,
            ack: t.ack_number.map(|a| a.0 as u32),
            win: t.window_len,
            mss: t.max_seg_size,
            ws: t.window_scale,
            sack_perm: t.sack_permitted,
            sacks: t.sack_ranges.iter().flatten().copied().collect(),
            ts: t.timestamp.map(|ts| (ts.tsval, ts.tsecr)),
            payload: t.payload.to_vec(),
        })
    }
}

/// A server stack and a scripted client.
pub struct Harness {
    pub stack: Stack,
    pub now: Instant,
    /// Server ISN learned from the SYN-ACK.
    pub iss: u32,
    pub key: ConnKey,
}

/// A fixed key keeps the tests' ISNs reproducible (a stack's default key
/// is random).
pub fn test_config() -> Config {
    Config {
        isn_key: [0x11; 16],
        delayed_ack: Some(Duration::from_millis(40)),
        ..Config::default()
    }
}

impl Harness {
    pub fn new(cfg: Config) -> Harness {
        Harness::between(cfg, SERVER, CLIENT)
    }

    /// A server listening on `server`, its client at `client` (ports as
    /// in [`SERVER`] and [`CLIENT`]).
    pub fn between(cfg: Config, server: SocketAddr, client: SocketAddr) -> Harness {
        let server = SocketAddr::new(server.ip(), SERVER.port());
        let client = SocketAddr::new(client.ip(), CLIENT.port());
        let mut stack = Stack::new(cfg);
        stack.listen(server).unwrap();
        Harness {
            stack,
            now: Instant::from_millis(1000),
            iss: 0,
            key: ConnKey {
                local: server,
                remote: client,
            },
        }
    }

    pub fn send(&mut self, seg: Seg) {
        let pkt = seg.packet_between(self.key.remote, self.key.local);
        self.stack.handle_packet(self.now, &pkt);
    }

    /// Everything the stack wants to send now.
    pub fn recv_all(&mut self) -> Vec<Seg> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 70000];
        while let Some(n) = self.stack.poll_transmit(self.now, &mut buf) {
            out.push(Seg::from_packet(&buf[..n]).expect("stack emitted an unparsable packet"));
        }
        out
    }

    #[track_caller]
    pub fn recv_one(&mut self) -> Seg {
        let mut v = self.recv_all();
        assert_eq!(v.len(), 1, "expected exactly one segment, got {v:#?}");
        v.remove(0)
    }

    pub fn advance(&mut self, d: Duration) {
        self.now += d;
        self.stack.handle_timeout(self.now);
    }

    /// Three-way handshake with timestamps; returns the accepted connection.
    pub fn establish(&mut self) -> ConnKey {
        self.send(client_syn());
        if self.stack.role() == Role::Primary {
            // A replicated primary answers the SYN only once the backups
            // hold it: nothing goes out until the gate covers the SYN.
            assert!(
                self.recv_all().is_empty(),
                "SYN-ACK before the backups held the SYN"
            );
            let (_, edge, _) = self
                .stack
                .receive_progress(self.key)
                .expect("half-open connection");
            self.stack.set_gate(
                self.key,
                Some(Gate {
                    ack: Seq(CLIENT_ISN + 1),
                    right_edge: edge,
                }),
            );
        }
        let synack = self.recv_one();
        assert_eq!(synack.ctl, Ctl::Syn);
        assert_eq!(synack.ack, Some(CLIENT_ISN + 1));
        self.iss = synack.seq;
        self.send(self.ack_seg(CLIENT_ISN + 1, synack.seq + 1));
        let key = self
            .stack
            .accept(self.key.local)
            .expect("connection not acceptable after handshake");
        assert_eq!(key, self.key);
        key
    }

    /// Handshake for a backup: it answers nothing, so the server ISN is
    /// computed as every replica computes it.
    pub fn establish_silently(&mut self) -> ConnKey {
        self.send(client_syn());
        assert!(self.recv_all().is_empty(), "a backup sent something");
        let (local, remote) = (self.key.local, self.key.remote);
        self.iss =
            crate::tcp::isn::server_isn(&self.stack.config().isn_key, local, remote, CLIENT_ISN);
        self.send(self.ack_seg(CLIENT_ISN + 1, self.iss + 1));
        self.stack.accept(local).expect("backup did not establish")
    }

    pub fn ack_seg(&self, seq: u32, ack: u32) -> Seg {
        Seg {
            seq,
            ack: Some(ack),
            win: 1024,
            ts: Some((200, 1)),
            ..Default::default()
        }
    }

    pub fn data_seg(&self, off: u32, data: &[u8]) -> Seg {
        Seg {
            seq: CLIENT_ISN + 1 + off,
            ack: Some(self.iss + 1),
            win: 1024,
            ts: Some((200, 1)),
            payload: data.to_vec(),
            ..Default::default()
        }
    }

    pub fn state(&self) -> State {
        self.stack
            .conn_info(self.key)
            .map_or(State::Closed, |i| i.state)
    }

    pub fn read_all(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.stack.recv(self.key, &mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        out
    }
}

/// The client's SYN with every option Hydra negotiates: MSS, window
/// scale, SACK and timestamps.
fn client_syn() -> Seg {
    Seg {
        ctl: Ctl::Syn,
        seq: CLIENT_ISN,
        win: 65535,
        mss: Some(1460),
        ws: Some(7),
        sack_perm: true,
        ts: Some((100, 0)),
        ..Default::default()
    }
}

fn h() -> Harness {
    Harness::new(test_config())
}
