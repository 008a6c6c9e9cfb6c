//! Segment-level tests of the state machine through the stack's public API:
//! packets in, packets out, as a peer on the wire would see them.

use std::net::{Ipv4Addr, SocketAddrV4};

use smoltcp::wire::{TcpControl, TcpRepr, TcpSeqNumber, TcpTimestampRepr};

use crate::iface::{ConnKey, Event, Gate, Role, Stack};
use crate::tcp::State;
use crate::wire;
use crate::Config;
use hydra_base::time::{Duration, Instant};
use hydra_base::Seq;

const SERVER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 19, 0, 1), 80);
const CLIENT: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 40000);
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

    pub fn packet(&self) -> Vec<u8> {
        let mut buf = vec![0u8; 2000 + self.payload.len()];
        let n = wire::emit_tcp(
            &mut buf,
            CLIENT,
            SERVER,
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
        let mut stack = Stack::new(cfg);
        stack.listen(SERVER).unwrap();
        Harness {
            stack,
            now: Instant::from_millis(1000),
            iss: 0,
            key: ConnKey {
                local: SERVER,
                remote: CLIENT,
            },
        }
    }

    pub fn send(&mut self, seg: Seg) {
        let pkt = seg.packet();
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
        self.send(Seg {
            ctl: Ctl::Syn,
            seq: CLIENT_ISN,
            win: 65535,
            mss: Some(1460),
            ws: Some(7),
            sack_perm: true,
            ts: Some((100, 0)),
            ..Default::default()
        });
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
            .accept(SERVER)
            .expect("connection not acceptable after handshake");
        assert_eq!(key, self.key);
        key
    }

    /// Handshake for a backup: it answers nothing, so the server ISN is
    /// computed as every replica computes it.
    pub fn establish_silently(&mut self) -> ConnKey {
        self.send(Seg {
            ctl: Ctl::Syn,
            seq: CLIENT_ISN,
            win: 65535,
            mss: Some(1460),
            ws: Some(7),
            sack_perm: true,
            ts: Some((100, 0)),
            ..Default::default()
        });
        assert!(self.recv_all().is_empty(), "a backup sent something");
        self.iss =
            crate::tcp::isn::server_isn(&self.stack.config().isn_key, SERVER, CLIENT, CLIENT_ISN);
        self.send(self.ack_seg(CLIENT_ISN + 1, self.iss + 1));
        self.stack.accept(SERVER).expect("backup did not establish")
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

fn h() -> Harness {
    Harness::new(test_config())
}

#[test]
fn handshake_negotiates_options() {
    let mut h = h();
    h.send(Seg {
        ctl: Ctl::Syn,
        seq: CLIENT_ISN,
        win: 65535,
        mss: Some(1400),
        ws: Some(7),
        sack_perm: true,
        ts: Some((100, 0)),
        ..Default::default()
    });
    let synack = h.recv_one();
    assert_eq!(synack.ctl, Ctl::Syn);
    assert_eq!(synack.ack, Some(CLIENT_ISN + 1));
    assert_eq!(synack.mss, Some(1460));
    assert!(synack.ws.is_some());
    assert!(synack.sack_perm);
    assert_eq!(
        synack.ts.map(|t| t.1),
        Some(100),
        "SYN-ACK echoes the client's TSval"
    );
    assert_eq!(
        h.stack.accept(SERVER),
        None,
        "not acceptable before the final ACK"
    );
    h.send(h.ack_seg(CLIENT_ISN + 1, synack.seq + 1));
    assert_eq!(h.stack.accept(SERVER), Some(h.key));
    assert_eq!(h.state(), State::Established);
}

//= RFC 6528 section 3
//# ISN = M + F(localip, localport, remoteip, remoteport, secretkey)
#[test]
fn replicas_with_one_key_choose_the_same_isn() {
    let mut a = h();
    let mut b = h();
    a.establish();
    b.establish();
    assert_eq!(a.iss, b.iss);
    let mut cfg = test_config();
    cfg.isn_key = [7; 16];
    let mut c = Harness::new(cfg);
    c.establish();
    assert_ne!(a.iss, c.iss, "a different key must give a different ISN");
}

//= RFC 6528 section 3
//# The secret key ... SHOULD be of at least 128 bits
#[test]
fn two_stacks_started_the_same_way_choose_different_isns() {
    let mut a = Harness::new(Config::default());
    let mut b = Harness::new(Config::default());
    a.establish();
    b.establish();
    assert_eq!(a.key, b.key, "the same 4-tuple");
    assert_ne!(a.iss, b.iss, "ISNs a reader of the source could predict");
}

#[test]
fn in_order_data_is_delivered_and_acked_every_second_segment() {
    let mut h = h();
    h.establish();
    h.send(h.data_seg(0, &[1u8; 1000]));
    assert!(
        h.recv_all().is_empty(),
        "first segment waits for the delayed ACK"
    );
    h.send(h.data_seg(1000, &[2u8; 1000]));
    let ack = h.recv_one();
    assert_eq!(ack.ack, Some(CLIENT_ISN + 1 + 2000));
    let data = h.read_all();
    assert_eq!(data.len(), 2000);
    assert!(data[..1000].iter().all(|&b| b == 1) && data[1000..].iter().all(|&b| b == 2));
}

/// A coalesced segment (receive offload, GRO) carrying several full-sized
/// segments is acknowledged at once, as they would have been: counted as
/// one, the last of a burst waited for the delayed-ACK timer.
#[test]
fn a_coalesced_segment_of_several_full_segments_is_acked_at_once() {
    let mut h = h();
    h.establish();
    h.send(h.data_seg(0, &[3u8; 4 * 1460]));
    assert_eq!(h.recv_one().ack, Some(CLIENT_ISN + 1 + 4 * 1460));
}

#[test]
fn delayed_ack_fires_after_timeout() {
    let mut h = h();
    h.establish();
    h.send(h.data_seg(0, b"x"));
    assert!(h.recv_all().is_empty());
    h.advance(Duration::from_millis(41));
    assert_eq!(h.recv_one().ack, Some(CLIENT_ISN + 2));
}

//= RFC 2018 section 4
//# the first SACK block MUST specify the contiguous block of data containing the segment
//# which triggered this ACK
/// The stack-wide budget for out-of-order bytes holds whatever the
/// per-connection limit allows, and in-order data still gets through.
#[test]
fn out_of_order_bytes_stay_within_the_stack_wide_budget() {
    let mut h = Harness::new(Config {
        ooo_budget: 3000,
        ..test_config()
    });
    h.establish();
    for i in 1..=6u32 {
        h.send(h.data_seg(i * 2000, &[7u8; 1000]));
        h.recv_all();
    }
    assert!(
        h.stack.out_of_order_bytes() <= 3000,
        "{}",
        h.stack.out_of_order_bytes()
    );
    assert_eq!(h.stack.out_of_order_bytes(), 3000);
    assert_eq!(h.stack.stats().drop_ooo_budget, 3);
    // In order, always taken.
    h.send(h.data_seg(0, &[1u8; 1000]));
    assert_eq!(h.read_all().len(), 1000);
}

#[test]
fn out_of_order_data_gets_immediate_dup_ack_with_sack() {
    let mut h = h();
    h.establish();
    h.send(h.data_seg(100, &[9u8; 50]));
    let ack = h.recv_one();
    assert_eq!(ack.ack, Some(CLIENT_ISN + 1));
    assert_eq!(ack.sacks, vec![(CLIENT_ISN + 101, CLIENT_ISN + 151)]);
    h.send(h.data_seg(0, &[8u8; 100]));
    let ack = h.recv_one();
    assert_eq!(
        ack.ack,
        Some(CLIENT_ISN + 151),
        "hole filled: cumulative ACK covers both"
    );
    assert!(ack.sacks.is_empty());
    assert_eq!(h.read_all().len(), 150);
}

#[test]
fn out_of_order_bytes_do_not_move_the_right_edge_left() {
    // Two backups hold the same bytes in order; one also holds bytes past
    // a hole. Both must report the same right edge: the one with fewer
    // bytes may become primary after the other advertised its edge.
    let backup = || {
        let mut b = h();
        b.stack.set_role(b.now, Role::Backup);
        b.establish_silently();
        b.send(b.data_seg(0, &[1u8; 100]));
        b
    };
    let mut plain = backup();
    let mut holding = backup();
    holding.send(holding.data_seg(1000, &[2u8; 1400]));
    let (held, edge, _) = plain.stack.receive_progress(plain.key).unwrap();
    let (held_too, edge_too, _) = holding.stack.receive_progress(holding.key).unwrap();
    assert_eq!(held, held_too);
    assert_eq!(
        edge_too, edge,
        "out-of-order bytes moved the right edge left"
    );
}

//= RFC 9293 section 3.7.1
//# the TCP sender SHOULD reduce the segment size by the TCP options length
#[test]
fn data_segments_carrying_sack_blocks_still_fit_the_peers_mss() {
    let mut h = h();
    h.establish();
    h.send(Seg {
        win: 65535,
        ..h.ack_seg(CLIENT_ISN + 1, h.iss + 1)
    });
    // Three holes in what the client sent: every segment we send carries
    // SACK blocks (2 + 8 per block) besides the timestamps.
    for off in [100, 300, 500] {
        h.send(h.data_seg(off, &[9u8; 50]));
    }
    h.recv_all();
    h.stack.send(h.key, &vec![7u8; 8 * 1460]).unwrap();
    let mut buf = vec![0u8; 70000];
    let mut sent = 0;
    while let Some(n) = h.stack.poll_transmit(h.now, &mut buf) {
        let seg = Seg::from_packet(&buf[..n]).unwrap();
        assert_eq!(seg.sacks.len(), 3, "the segments report the holes");
        // IP (20) and TCP (20) headers plus at most the MSS of 1460.
        assert!(n <= 1500, "a {n}-byte packet for an MSS of 1460");
        sent += seg.payload.len();
    }
    assert!(
        sent >= 4 * 1400,
        "the initial window went out ({sent} bytes)"
    );
}

//= RFC 5961 section 3.2
//# If the RST bit is set and the sequence number exactly matches the next expected sequence
//# number (RCV.NXT), then TCP MUST reset the connection.
#[test]
fn rst_at_rcv_nxt_resets() {
    let mut h = h();
    h.establish();
    h.send(Seg {
        ctl: Ctl::Rst,
        seq: CLIENT_ISN + 1,
        ..Default::default()
    });
    assert_eq!(h.state(), State::Closed);
    let mut buf = [0u8; 8];
    assert_eq!(
        h.stack.recv(h.key, &mut buf),
        Err(crate::iface::RecvError::Reset)
    );
    assert!(h.stack.poll_event().is_some());
}

//= RFC 5961 section 3.2
//# If the RST bit is set and the sequence number does not exactly match the next expected
//# sequence value, yet is within the current receive window, TCP MUST send an
//# acknowledgment (challenge ACK)
#[test]
fn in_window_rst_gets_challenge_ack() {
    let mut h = h();
    h.establish();
    h.send(Seg {
        ctl: Ctl::Rst,
        seq: CLIENT_ISN + 500,
        ..Default::default()
    });
    assert_eq!(h.state(), State::Established);
    let ack = h.recv_one();
    assert_eq!(ack.ctl, Ctl::None);
    assert_eq!(ack.ack, Some(CLIENT_ISN + 1));
    assert_eq!(h.stack.stats().challenge_acks, 1);
}

#[test]
fn out_of_window_rst_is_dropped_silently() {
    let mut h = h();
    h.establish();
    h.send(Seg {
        ctl: Ctl::Rst,
        seq: CLIENT_ISN.wrapping_add(1 << 30),
        ..Default::default()
    });
    assert_eq!(h.state(), State::Established);
    assert!(h.recv_all().is_empty());
}

//= RFC 5961 section 4.2
//# ... if the SYN bit is set, irrespective of the sequence number, TCP MUST send an ACK
//# (also referred to as challenge ACK) to the remote peer
#[test]
fn syn_in_established_gets_challenge_ack() {
    let mut h = h();
    h.establish();
    h.send(Seg {
        ctl: Ctl::Syn,
        seq: CLIENT_ISN + 10,
        ts: Some((300, 0)),
        ..Default::default()
    });
    assert_eq!(h.state(), State::Established);
    let ack = h.recv_one();
    assert_eq!(ack.ack, Some(CLIENT_ISN + 1));
    assert_eq!(h.stack.stats().challenge_acks, 1);
}

//= RFC 5961 section 5.2
//# All incoming segments whose ACK value doesn't satisfy the above condition MUST be
//# discarded and an ACK sent back.
#[test]
fn ack_above_snd_nxt_is_discarded_with_challenge_ack() {
    let mut h = h();
    h.establish();
    let mut seg = h.data_seg(0, b"evil");
    seg.ack = Some(h.iss + 1 + 100_000);
    h.send(seg);
    assert_eq!(h.recv_one().ack, Some(CLIENT_ISN + 1));
    assert!(
        h.read_all().is_empty(),
        "data of a segment with a bad ACK is not accepted"
    );
    assert_eq!(h.stack.stats().challenge_acks, 1);
}

//= RFC 7323 section 5.3
//# If there is a Timestamps option in the arriving segment, SEG.TSval < TS.Recent, ...
//# then treat the arriving segment as not acceptable
#[test]
fn old_timestamp_is_rejected_by_paws() {
    let mut h = h();
    h.establish();
    let mut seg = h.data_seg(0, b"new");
    seg.ts = Some((500, 1));
    h.send(seg);
    h.recv_all();
    let mut old = h.data_seg(3, b"old");
    old.ts = Some((400, 1));
    h.send(old);
    assert_eq!(h.stack.stats().drop_paws, 1);
    assert_eq!(
        h.recv_one().ack,
        Some(CLIENT_ISN + 4),
        "PAWS drop answers with an ACK"
    );
    assert_eq!(h.read_all(), b"new");
}

#[test]
fn bad_checksum_truncated_and_malformed_packets_are_counted_drops() {
    let mut h = h();
    h.establish();
    let mut pkt = h.data_seg(0, b"hello").packet();
    let last = pkt.len() - 1;
    pkt[last] ^= 0xff;
    h.stack.handle_packet(h.now, &pkt);
    assert_eq!(h.stack.stats().drop_bad_tcp, 1);
    let good = h.data_seg(0, b"hello").packet();
    h.stack.handle_packet(h.now, &good[..30]);
    assert!(h.stack.stats().drop_bad_ip + h.stack.stats().drop_bad_tcp >= 2);
    // A TCP option with length 1 is malformed.
    let mut bad_opt = h.data_seg(0, b"").packet();
    bad_opt[20 + 12] = 0x60; // data offset 6 words: 4 option bytes
    bad_opt.splice(40..40, [8u8, 1, 0, 0]);
    let total = bad_opt.len() as u16;
    bad_opt[2..4].copy_from_slice(&total.to_be_bytes());
    h.stack.handle_packet(h.now, &bad_opt);
    for n in 0..good.len() {
        h.stack.handle_packet(h.now, &good[..n]);
    }
    assert!(h.read_all().is_empty());
    assert_eq!(h.state(), State::Established);
}

/// `pkt` rewritten to come from `src` and go to `dst`, checksums redone.
fn readdressed(mut pkt: Vec<u8>, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    pkt[12..16].copy_from_slice(&src.octets());
    pkt[16..20].copy_from_slice(&dst.octets());
    pkt[10..12].copy_from_slice(&[0, 0]);
    let ip_sum = !crate::checksum::sum(&pkt[..20]);
    pkt[10..12].copy_from_slice(&ip_sum.to_be_bytes());
    pkt[36..38].copy_from_slice(&[0, 0]);
    let tcp_sum = crate::checksum::tcp_checksum(src, dst, &pkt[20..]);
    pkt[36..38].copy_from_slice(&tcp_sum.to_be_bytes());
    pkt
}

//= RFC 1122 section 3.2.1.3
//# (a) { 0, 0 } ... MUST NOT be sent, except as a source address as part of
//# an initialization procedure
#[test]
fn syns_from_impossible_sources_or_to_broadcast_are_dropped_and_counted() {
    let mut h = h();
    let syn = Seg {
        ctl: Ctl::Syn,
        seq: CLIENT_ISN,
        win: 65535,
        mss: Some(1460),
        ..Default::default()
    };
    let server = *SERVER.ip();
    let sources = [
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::BROADCAST,
        Ipv4Addr::new(224, 0, 0, 1),
        Ipv4Addr::new(127, 0, 0, 1),
        Ipv4Addr::new(240, 0, 0, 9),
    ];
    for src in sources {
        let pkt = readdressed(syn.packet(), src, server);
        h.stack.handle_packet(h.now, &pkt);
    }
    // A SYN to a broadcast or multicast address, from a fine source.
    for dst in [Ipv4Addr::BROADCAST, Ipv4Addr::new(239, 1, 2, 3)] {
        let pkt = readdressed(syn.packet(), *CLIENT.ip(), dst);
        h.stack.handle_packet(h.now, &pkt);
    }
    assert!(h.recv_all().is_empty(), "answered an impossible address");
    assert_eq!(
        h.stack.connection_count(),
        0,
        "a half-open connection was made"
    );
    assert_eq!(h.stack.stats().drop_bad_address, 7);
    // The same SYN from a real address is answered.
    h.send(syn);
    assert_eq!(h.recv_one().ctl, Ctl::Syn);
}

//= RFC 1122 section 3.3.2
//# A host ... MAY discard fragments; the policy is documented
#[test]
fn ip_fragments_are_refused_and_counted() {
    let mut h = h();
    h.establish();
    let mut first = h.data_seg(0, b"hello").packet();
    first[6] |= 0x20; // more fragments
    h.stack
        .handle_packet(h.now, &readdressed(first, *CLIENT.ip(), *SERVER.ip()));
    let mut later = h.data_seg(0, b"hello").packet();
    later[7] = 3; // offset 24 bytes
    h.stack
        .handle_packet(h.now, &readdressed(later, *CLIENT.ip(), *SERVER.ip()));
    assert_eq!(h.stack.stats().drop_fragment, 2);
    assert!(h.read_all().is_empty());
    assert!(h.stack.stats().counters().contains(&("drop_fragment", 2)));
}

/// `pkt` (addressed and checksummed) cut into IPv4 fragments of `size`
/// payload bytes (a multiple of 8), each with its own header checksum.
fn fragments_of(pkt: &[u8], size: usize) -> Vec<Vec<u8>> {
    let payload = &pkt[20..];
    let mut out = Vec::new();
    for (i, part) in payload.chunks(size).enumerate() {
        let mut f = pkt[..20].to_vec();
        f.extend_from_slice(part);
        let more = (i + 1) * size < payload.len();
        let field = ((i * size / 8) as u16) | if more { 0x2000 } else { 0 };
        let len = f.len() as u16;
        f[2..4].copy_from_slice(&len.to_be_bytes());
        f[6..8].copy_from_slice(&field.to_be_bytes());
        f[10..12].copy_from_slice(&[0, 0]);
        let sum = !crate::checksum::sum(&f[..20]);
        f[10..12].copy_from_slice(&sum.to_be_bytes());
        out.push(f);
    }
    out
}

//= RFC 1122 section 3.3.2
//# A host MUST be capable of receiving a datagram of 576 bytes which it
//# may receive in fragments
/// With `FragmentPolicy::Reassemble` fragments in any order make whole
/// segments, and fragments from addresses no host owns get no memory.
#[test]
fn with_reassembly_fragments_make_whole_segments() {
    let mut h = Harness::new(Config {
        fragments: crate::FragmentPolicy::LINUX_REASSEMBLY,
        ..test_config()
    });
    let syn = Seg {
        ctl: Ctl::Syn,
        seq: CLIENT_ISN,
        win: 65535,
        mss: Some(1460),
        sack_perm: true,
        ..Default::default()
    };
    let syn_pkt = readdressed(syn.packet(), *CLIENT.ip(), *SERVER.ip());
    let mut frags = fragments_of(&syn_pkt, 16);
    assert_eq!(frags.len(), 2);
    frags.reverse();
    for f in &frags {
        h.stack.handle_packet(h.now, f);
    }
    let synack = h.recv_one();
    assert_eq!(synack.ctl, Ctl::Syn);
    assert_eq!(synack.ack, Some(CLIENT_ISN + 1));
    assert_eq!(h.stack.stats().fragments_reassembled, 1);
    assert_eq!(h.stack.stats().drop_fragment, 0);
    h.iss = synack.seq;
    h.send(h.ack_seg(CLIENT_ISN + 1, synack.seq + 1));
    let data: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
    let seg = readdressed(h.data_seg(0, &data).packet(), *CLIENT.ip(), *SERVER.ip());
    for f in fragments_of(&seg, 256) {
        h.stack.handle_packet(h.now, &f);
    }
    h.stack.accept(SERVER).unwrap();
    assert_eq!(h.read_all(), data);
    assert_eq!(h.stack.fragment_bytes(), 0);
    let martian = readdressed(syn.packet(), Ipv4Addr::new(224, 0, 0, 1), *SERVER.ip());
    h.stack.handle_packet(h.now, &fragments_of(&martian, 8)[0]);
    assert_eq!(h.stack.fragment_bytes(), 0);
    assert_eq!(h.stack.stats().drop_bad_address, 1);
}

/// An unacceptable ACK in SYN-RECEIVED is answered with one RST, counted once.
#[test]
fn a_reset_for_an_unacceptable_ack_is_counted_once() {
    let mut h = h();
    h.send(Seg {
        ctl: Ctl::Syn,
        seq: CLIENT_ISN,
        win: 65535,
        mss: Some(1460),
        ..Default::default()
    });
    let synack = h.recv_one();
    h.send(h.ack_seg(CLIENT_ISN + 1, synack.seq + 1000));
    let rst = h.recv_one();
    assert_eq!(rst.ctl, Ctl::Rst);
    assert_eq!(h.stack.stats().resets_sent, 1);
}

#[test]
fn segment_for_closed_port_gets_rst() {
    let mut h = h();
    let mut seg = Seg {
        ctl: Ctl::Syn,
        seq: 5,
        ..Default::default()
    };
    seg.payload.clear();
    let mut pkt = seg.packet();
    pkt[22..24].copy_from_slice(&81u16.to_be_bytes()); // dst port 81
    pkt[36..38].copy_from_slice(&[0, 0]);
    let mut p = smoltcp::wire::TcpPacket::new_unchecked(&mut pkt[20..]);
    p.fill_checksum(&(*SERVER.ip()).into(), &(*CLIENT.ip()).into());
    // Recompute with the right address order (src = client).
    p.fill_checksum(&(*CLIENT.ip()).into(), &(*SERVER.ip()).into());
    h.stack.handle_packet(h.now, &pkt);
    let rst = h.recv_one();
    assert_eq!(rst.ctl, Ctl::Rst);
    assert_eq!(rst.ack, Some(6));
}

#[test]
fn peer_fin_then_close_goes_through_close_wait_and_last_ack() {
    let mut h = h();
    h.establish();
    let mut fin = h.data_seg(0, b"bye");
    fin.ctl = Ctl::Fin;
    h.send(fin);
    assert_eq!(h.state(), State::CloseWait);
    assert_eq!(h.recv_one().ack, Some(CLIENT_ISN + 5));
    assert_eq!(h.read_all(), b"bye");
    let mut buf = [0u8; 4];
    assert_eq!(h.stack.recv(h.key, &mut buf), Ok(0), "end of stream");
    h.stack.close(h.key);
    let our_fin = h.recv_one();
    assert_eq!(our_fin.ctl, Ctl::Fin);
    assert_eq!(h.state(), State::LastAck);
    h.send(h.ack_seg(CLIENT_ISN + 5, h.iss + 2));
    assert!(h.stack.conn_info(h.key).is_none(), "freed after LAST-ACK");
}

#[test]
fn active_close_reaches_time_wait_and_expires() {
    let mut h = h();
    h.establish();
    h.stack.close(h.key);
    assert_eq!(h.recv_one().ctl, Ctl::Fin);
    assert_eq!(h.state(), State::FinWait1);
    h.send(h.ack_seg(CLIENT_ISN + 1, h.iss + 2));
    assert_eq!(h.state(), State::FinWait2);
    h.send(Seg {
        ctl: Ctl::Fin,
        ..h.ack_seg(CLIENT_ISN + 1, h.iss + 2)
    });
    assert_eq!(h.state(), State::TimeWait);
    assert_eq!(h.recv_one().ack, Some(CLIENT_ISN + 2));
    h.advance(Duration::from_secs(61));
    assert!(h.stack.conn_info(h.key).is_none());
}

//= RFC 6298 section 5
//# (5.4) Retransmit the earliest segment that has not been acknowledged by the TCP receiver.
//# (5.5) The host MUST set RTO <- RTO * 2 ("back off the timer").
#[test]
fn rto_retransmits_and_backs_off() {
    let mut h = h();
    h.establish();
    h.stack.send(h.key, b"data").unwrap();
    let first = h.recv_one();
    assert_eq!(first.payload, b"data");
    let rto1 = h.stack.poll_timeout().unwrap() - h.now;
    h.advance(rto1);
    let again = h.recv_one();
    assert_eq!(again.seq, first.seq);
    assert_eq!(again.payload, b"data");
    let rto2 = h.stack.poll_timeout().unwrap() - h.now;
    assert!(
        rto2 >= rto1.saturating_mul(2) - Duration::from_millis(1),
        "{rto2} vs {rto1}"
    );
    assert_eq!(h.stack.stats().rto_expirations, 1);
}

//= RFC 5681 section 3.2
//# The fast retransmit algorithm uses the arrival of 3 duplicate ACKs ... as an indication
//# that a segment has been lost.
#[test]
fn three_dup_acks_trigger_fast_retransmit() {
    let mut h = h();
    h.establish();
    h.send(Seg {
        win: 65535,
        ..h.ack_seg(CLIENT_ISN + 1, h.iss + 1)
    });
    let data = vec![7u8; 8 * 1448];
    h.stack.send(h.key, &data).unwrap();
    let segs = h.recv_all();
    assert!(segs.len() >= 4, "initial window sends several segments");
    let una = h.iss + 1;
    for i in 0..3 {
        let mut d = h.ack_seg(CLIENT_ISN + 1, una);
        d.win = 65535;
        d.sacks = vec![(una + 1448, una + 1448 * (i + 2))];
        h.send(d);
    }
    let out = h.recv_all();
    assert!(
        out.iter().any(|s| s.seq == una && !s.payload.is_empty()),
        "first segment resent: {out:?}"
    );
    assert_eq!(h.stack.stats().fast_retransmits, 1);
}

#[test]
fn zero_window_is_probed_by_the_persist_timer() {
    let mut h = h();
    h.establish();
    h.send(Seg {
        win: 0,
        ..h.ack_seg(CLIENT_ISN + 1, h.iss + 1)
    });
    h.stack.send(h.key, b"waiting").unwrap();
    assert!(h.recv_all().is_empty(), "nothing fits a zero window");
    let deadline = h.stack.poll_timeout().expect("persist timer armed");
    h.now = deadline;
    h.stack.handle_timeout(h.now);
    let probe = h.recv_one();
    assert_eq!(probe.payload.len(), 1);
    assert_eq!(probe.seq, h.iss + 1);
}

//= RFC 1122 section 4.2.2.17
//# the sending TCP MUST allow the connection to stay open as long as the
//# receiving TCP continues to send acknowledgments in response to the probe
#[test]
fn a_zero_window_answered_for_longer_than_the_retransmission_limit_keeps_the_connection() {
    let mut h = h();
    h.establish();
    let zero = Seg {
        win: 0,
        ..h.ack_seg(CLIENT_ISN + 1, h.iss + 1)
    };
    h.send(zero.clone());
    h.stack.send(h.key, b"waiting").unwrap();
    assert!(h.recv_all().is_empty(), "nothing fits a zero window");
    // Well past max_retransmissions backed-off timeouts (about 15 minutes).
    let end = h.now + Duration::from_secs(3600);
    let mut probes = 0;
    while h.now < end {
        let deadline = h
            .stack
            .poll_timeout()
            .expect("a probe timer while the window is closed");
        h.now = deadline.max(h.now);
        h.stack.handle_timeout(h.now);
        for seg in h.recv_all() {
            assert_ne!(seg.ctl, Ctl::Rst, "reset after {probes} answered probes");
            probes += 1;
            // The receiver answers every probe: still no room.
            h.send(zero.clone());
        }
        assert_eq!(
            h.state(),
            State::Established,
            "dropped after {probes} answered probes"
        );
    }
    assert!(probes > 16, "only {probes} probes in an hour");
    // The window opens: the data goes, the connection is whole.
    h.send(Seg {
        win: 1024,
        ..h.ack_seg(CLIENT_ISN + 1, h.iss + 1)
    });
    let sent: Vec<u8> = h.recv_all().into_iter().flat_map(|s| s.payload).collect();
    assert_eq!(sent, b"waiting");
    assert_eq!(h.state(), State::Established);
}

/// Spoofed SYNs from many ports (no final ACK ever comes): each gets the
/// SYN-ACK and `synack_retries` retransmissions, Linux's count, then its
/// half-open entry is gone. None outlives the retries.
#[test]
fn half_open_connections_get_five_synack_retries_then_expire() {
    let mut h = h();
    let spoofed = 300u16;
    for i in 0..spoofed {
        let syn = Seg {
            ctl: Ctl::Syn,
            seq: CLIENT_ISN + u32::from(i) * 1000,
            win: 65535,
            mss: Some(1460),
            ..Default::default()
        };
        let mut pkt = syn.packet();
        pkt[20..22].copy_from_slice(&(10_000 + i).to_be_bytes());
        let pkt = readdressed(pkt, *CLIENT.ip(), *SERVER.ip());
        h.stack.handle_packet(h.now, &pkt);
    }
    assert_eq!(h.stack.connection_count(), usize::from(spoofed));
    let start = h.now;
    let mut synacks = h.recv_all().len();
    while let Some(t) = h.stack.poll_timeout() {
        if t > start + Duration::from_secs(600) {
            break;
        }
        h.now = t.max(h.now);
        h.stack.handle_timeout(h.now);
        synacks += h.recv_all().iter().filter(|s| s.ctl == Ctl::Syn).count();
    }
    assert_eq!(h.stack.connection_count(), 0, "half-open entries left");
    assert_eq!(
        synacks,
        usize::from(spoofed) * 6,
        "SYN-ACKs per spoofed SYN: 1 + 5"
    );
    let took = h.now.total_millis() - start.total_millis();
    assert!(
        (60_000..=70_000).contains(&took),
        "the last entry went after {took} ms (Linux: about 63 s)"
    );
}

fn spoofed_syn(port: u16) -> Vec<u8> {
    let syn = Seg {
        ctl: Ctl::Syn,
        seq: CLIENT_ISN,
        win: 65535,
        mss: Some(1460),
        ..Default::default()
    };
    let mut pkt = syn.packet();
    pkt[20..22].copy_from_slice(&port.to_be_bytes());
    readdressed(pkt, *CLIENT.ip(), *SERVER.ip())
}

/// A backup never sends the SYN-ACK whose retransmissions would end a
/// half-open connection, and the primary's end of it reaches backups through
/// the log only for connections logged as opened, which half-open ones never
/// are. So a half-open entry has a lifetime of its own in every role: the
/// primary's SYN-ACK schedule and one initial RTO more. Without it a burst
/// of spoofed SYNs filled a backup's backlog for good, and the primary
/// (which answers a SYN only when its backups hold it) accepted nothing.
#[test]
fn a_backups_half_open_entries_expire_and_free_the_backlog() {
    let mut h = Harness::new(Config {
        syn_backlog: 8,
        ..test_config()
    });
    h.stack.set_role(h.now, Role::Backup);
    let start = h.now;
    for port in 0..8u16 {
        h.stack.handle_packet(h.now, &spoofed_syn(41_000 + port));
    }
    assert_eq!(h.stack.connection_count(), 8);
    h.stack.handle_packet(h.now, &spoofed_syn(42_000));
    assert_eq!(h.stack.stats().drop_syn_overflow, 1, "the backlog is full");
    while let Some(at) = h.stack.poll_timeout() {
        if at > start + Duration::from_secs(600) {
            break;
        }
        h.now = at;
        h.stack.handle_timeout(at);
    }
    assert_eq!(h.stack.connection_count(), 0, "half-open entries remain");
    assert_eq!(h.stack.stats().half_open_expired, 8);
    assert_eq!(
        (h.now - start).total_millis(),
        64_000,
        "63 s + one initial RTO"
    );
    assert!(h.recv_all().is_empty(), "a backup sends nothing");
    h.stack.handle_packet(h.now, &spoofed_syn(42_001));
    assert_eq!(h.stack.connection_count(), 1, "the backlog has room again");
}

/// A primary answers a SYN only once its backups hold it; if they never
/// confirm it, the entry still ends.
#[test]
fn a_primary_whose_backups_never_confirm_a_syn_forgets_it() {
    let mut h = h();
    h.stack.set_role(h.now, Role::Primary);
    h.stack.handle_packet(h.now, &spoofed_syn(43_000));
    assert!(
        h.recv_all().is_empty(),
        "no SYN-ACK before the backups hold the SYN"
    );
    assert_eq!(h.stack.connection_count(), 1);
    let deadline = h
        .stack
        .poll_timeout()
        .expect("a half-open entry has a timer");
    h.now = deadline;
    h.stack.handle_timeout(deadline);
    assert_eq!(h.stack.connection_count(), 0);
    assert_eq!(h.stack.stats().half_open_expired, 1);
}

#[test]
fn the_half_open_lifetime_does_not_touch_established_connections() {
    let mut h = h();
    h.establish();
    h.advance(Duration::from_secs(3600));
    assert_eq!(h.state(), State::Established);
    assert_eq!(h.stack.stats().half_open_expired, 0);
}

#[test]
fn nagle_holds_small_segments_until_acked_unless_nodelay() {
    let mut h = h();
    h.establish();
    h.send(Seg {
        win: 65535,
        ..h.ack_seg(CLIENT_ISN + 1, h.iss + 1)
    });
    h.stack.send(h.key, b"a").unwrap();
    assert_eq!(h.recv_one().payload, b"a");
    h.stack.send(h.key, b"b").unwrap();
    assert!(
        h.recv_all().is_empty(),
        "Nagle holds a small segment while data is outstanding"
    );
    h.stack.set_nodelay(h.key, true);
    assert_eq!(h.recv_one().payload, b"b");
}

//= RFC 4987 section 3.6
//# SYN cookies ... the state is encoded in the initial sequence number
/// Half-open connections are bounded over all listeners too: a flood
/// spread over ports meets the same bound and gets cookies beyond it.
#[test]
fn half_open_connections_are_bounded_over_all_listeners() {
    let mut h = Harness::new(Config {
        max_half_open: 2,
        ..test_config()
    });
    for port in [81u16, 82] {
        h.stack
            .listen(SocketAddrV4::new(*SERVER.ip(), port))
            .unwrap();
    }
    let syn = Seg {
        ctl: Ctl::Syn,
        seq: 77,
        mss: Some(1460),
        ..Default::default()
    };
    for (i, port) in [SERVER.port(), 81, 82].into_iter().enumerate() {
        let mut pkt = syn.packet();
        pkt[20..22].copy_from_slice(&(40_000 + i as u16).to_be_bytes());
        pkt[22..24].copy_from_slice(&port.to_be_bytes());
        let pkt = readdressed(pkt, *CLIENT.ip(), *SERVER.ip());
        h.stack.handle_packet(h.now, &pkt);
    }
    assert_eq!(h.recv_all().len(), 3, "every SYN is answered");
    assert_eq!(
        h.stack.connection_count(),
        2,
        "state for two, a cookie for the third"
    );
    assert_eq!(h.stack.stats().syn_cookies_sent, 1);
}

#[test]
fn syn_flood_falls_back_to_cookies() {
    let mut cfg = test_config();
    cfg.syn_backlog = 1;
    let mut h = Harness::new(cfg);
    // Fill the backlog with a half-open connection from another port.
    let mut other = Seg {
        ctl: Ctl::Syn,
        seq: 1,
        mss: Some(1460),
        ..Default::default()
    }
    .packet();
    other[20..22].copy_from_slice(&40001u16.to_be_bytes());
    let mut p = smoltcp::wire::TcpPacket::new_unchecked(&mut other[20..]);
    p.fill_checksum(&(*CLIENT.ip()).into(), &(*SERVER.ip()).into());
    h.stack.handle_packet(h.now, &other);
    h.recv_all();
    h.send(Seg {
        ctl: Ctl::Syn,
        seq: CLIENT_ISN,
        win: 65535,
        mss: Some(1460),
        sack_perm: true,
        ..Default::default()
    });
    let synack = h.recv_one();
    assert_eq!(h.stack.stats().syn_cookies_sent, 1);
    assert!(
        h.stack.conn_info(h.key).is_none(),
        "no state kept for a cookie SYN-ACK"
    );
    h.send(Seg {
        seq: CLIENT_ISN + 1,
        ack: Some(synack.seq + 1),
        win: 1024,
        payload: b"hi".to_vec(),
        ..Default::default()
    });
    assert_eq!(h.stack.stats().syn_cookies_accepted, 1);
    assert_eq!(h.stack.accept(SERVER), Some(h.key));
    assert_eq!(h.read_all(), b"hi");
    // A forged cookie is refused with a RST.
    let mut forged = Seg {
        seq: 77,
        ack: Some(synack.seq.wrapping_add(12345)),
        win: 1,
        ..Default::default()
    }
    .packet();
    forged[20..22].copy_from_slice(&40002u16.to_be_bytes());
    let mut p = smoltcp::wire::TcpPacket::new_unchecked(&mut forged[20..]);
    p.fill_checksum(&(*CLIENT.ip()).into(), &(*SERVER.ip()).into());
    h.stack.handle_packet(h.now, &forged);
    assert_eq!(h.stack.stats().syn_cookies_rejected, 1);
}

#[test]
fn icmp_echo_is_answered() {
    use smoltcp::wire::Icmpv4Repr;
    let mut h = h();
    let req = Icmpv4Repr::EchoRequest {
        ident: 7,
        seq_no: 3,
        data: b"ping",
    };
    let mut buf = vec![0u8; 64];
    let n = wire::emit_icmp(&mut buf, *CLIENT.ip(), *SERVER.ip(), 64, &req).unwrap();
    h.stack.handle_packet(h.now, &buf[..n]);
    let mut out = vec![0u8; 128];
    let n = h.stack.poll_transmit(h.now, &mut out).expect("echo reply");
    match wire::parse(&out[..n]).unwrap() {
        wire::Packet::Icmp {
            dst,
            repr:
                Icmpv4Repr::EchoReply {
                    ident,
                    seq_no,
                    data,
                },
            ..
        } => {
            assert_eq!(
                (dst, ident, seq_no, data),
                (*CLIENT.ip(), 7, 3, &b"ping"[..])
            );
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_connection_taken_out_and_imported_carries_on_mid_transfer() {
    let mut a = h();
    a.establish();
    a.send(a.data_seg(0, b"first half "));
    a.stack.send(a.key, b"reply-1").unwrap();
    let sent = a.recv_all();
    assert!(sent.iter().any(|s| s.payload == b"reply-1"));
    let snap = a.stack.take_connection(a.key).unwrap();
    let bytes = snap.encode();
    let snap2 = crate::tcp::snapshot::ConnSnapshot::decode(&bytes).unwrap();
    assert_eq!(snap, snap2);
    assert!(a.stack.conn_info(a.key).is_none());
    assert!(a.recv_all().is_empty(), "export is silent: no RST, no FIN");

    let mut b = Harness::new(test_config());
    b.iss = a.iss;
    b.now = a.now;
    b.stack.import(b.now, snap2).unwrap();
    b.recv_all();
    b.send(b.data_seg(11, b"second half"));
    assert_eq!(b.read_all(), b"first half second half");
    // Unacknowledged output is retransmitted by the new stack.
    b.advance(Duration::from_secs(2));
    let out = b.recv_all();
    assert!(out.iter().any(|s| s.payload == b"reply-1"), "{out:?}");
}

#[test]
fn backup_sends_nothing_and_primary_gates_acks() {
    let mut p = h();
    let mut b = h();
    b.stack.set_role(b.now, Role::Backup);
    p.stack.set_role(p.now, Role::Primary);
    p.establish();
    // The backup sees the same client packets; it never answers.
    b.send(Seg {
        ctl: Ctl::Syn,
        seq: CLIENT_ISN,
        win: 65535,
        mss: Some(1460),
        ws: Some(7),
        sack_perm: true,
        ts: Some((100, 0)),
        ..Default::default()
    });
    assert!(b.recv_all().is_empty());
    b.iss = p.iss;
    b.send(b.ack_seg(CLIENT_ISN + 1, p.iss + 1));
    assert!(b.stack.accept(SERVER).is_some());
    // Gate the primary at the start: data arrives but the ACK stays at the gate.
    let start = Seq(CLIENT_ISN + 1);
    p.stack.set_gate(
        p.key,
        Some(Gate {
            ack: start,
            right_edge: start + 65535u32,
        }),
    );
    p.send(p.data_seg(0, &[5u8; 1000]));
    p.send(p.data_seg(1000, &[5u8; 1000]));
    let acks = p.recv_all();
    assert!(
        acks.iter().all(|s| s.ack == Some(CLIENT_ISN + 1)),
        "{acks:?}"
    );
    // The backup confirms: raising the gate makes the primary ACK at once.
    p.stack.set_gate(
        p.key,
        Some(Gate {
            ack: start + 2000u32,
            right_edge: start + 65535u32,
        }),
    );
    assert_eq!(p.recv_one().ack, Some(CLIENT_ISN + 2001));
    b.send(b.data_seg(0, &[5u8; 1000]));
    assert!(b.recv_all().is_empty());
    assert_eq!(b.stack.receive_progress(b.key).unwrap().0, start + 1000u32);
}

#[test]
fn backup_promoted_retransmits_unacked_output_and_acks_at_once() {
    let mut b = h();
    b.stack.set_role(b.now, Role::Backup);
    b.send(Seg {
        ctl: Ctl::Syn,
        seq: CLIENT_ISN,
        win: 65535,
        mss: Some(1460),
        ws: Some(7),
        sack_perm: true,
        ts: Some((100, 0)),
        ..Default::default()
    });
    let iss = crate::tcp::isn::server_isn(&test_config().isn_key, SERVER, CLIENT, CLIENT_ISN);
    b.iss = iss;
    b.send(b.ack_seg(CLIENT_ISN + 1, iss + 1));
    let key = b.stack.accept(SERVER).unwrap();
    b.stack.send(key, b"0123456789").unwrap();
    // The client acknowledged 4 bytes the primary sent.
    b.send(Seg {
        win: 1024,
        ..b.ack_seg(CLIENT_ISN + 1, iss + 5)
    });
    assert!(b.recv_all().is_empty());
    b.stack.set_role(b.now, Role::Primary);
    let out = b.recv_all();
    assert!(
        out.iter()
            .any(|s| s.seq == iss + 5 && s.payload == b"456789"),
        "{out:?}"
    );
    assert!(out.iter().all(|s| s.ack == Some(CLIENT_ISN + 1)));
    assert!(
        out.iter().all(|s| s.ts.unwrap().0 >= 1),
        "timestamps jump forward"
    );
}

#[test]
fn backup_accepts_acks_for_output_its_application_has_not_written_yet() {
    let mut b = h();
    b.stack.set_role(b.now, Role::Backup);
    b.send(Seg {
        ctl: Ctl::Syn,
        seq: CLIENT_ISN,
        win: 65535,
        mss: Some(1460),
        ..Default::default()
    });
    let iss = crate::tcp::isn::server_isn(&test_config().isn_key, SERVER, CLIENT, CLIENT_ISN);
    b.send(Seg {
        seq: CLIENT_ISN + 1,
        ack: Some(iss + 1),
        win: 1024,
        ..Default::default()
    });
    let key = b.stack.accept(SERVER).unwrap();
    b.send(Seg {
        seq: CLIENT_ISN + 1,
        ack: Some(iss + 7),
        win: 1024,
        ..Default::default()
    });
    assert_eq!(b.stack.stats().challenge_acks, 0);
    b.stack.send(key, b"abcdefghij").unwrap();
    assert_eq!(
        b.stack.conn_info(key).unwrap().send_queued,
        4,
        "the 6 acknowledged bytes are not kept"
    );
    let _ = Event::Closed(key);
}

//= docs/design.md rule 2
//# So any byte the client has seen acknowledged is held by every live replica.
#[test]
fn primary_acknowledges_nothing_before_a_gate_is_set() {
    let mut p = h();
    p.stack.set_role(p.now, Role::Primary);
    p.establish();
    p.send(p.data_seg(0, &[1u8; 1000]));
    p.advance(Duration::from_millis(500));
    let out = p.recv_all();
    assert!(out.iter().all(|s| s.ack == Some(CLIENT_ISN + 1)), "{out:?}");
    // Nor is the byte delivered to the application before the log commits it.
    let mut buf = [0u8; 10];
    assert_eq!(
        p.stack.recv(p.key, &mut buf),
        Err(crate::iface::RecvError::WouldBlock)
    );
}

/// Sweep seed 302386: the backup lost the client's segment acknowledging
/// the old primary's last output, then took over before its application
/// wrote that output. The client's ACKs are above anything the new primary
/// sent; answering each with a challenge ACK deadlocked the connection.
#[test]
fn promoted_backup_accepts_acks_for_output_the_old_primary_sent() {
    let mut b = h();
    b.stack.set_role(b.now, Role::Backup);
    let key = b.establish_silently();
    b.stack.set_role(b.now, Role::Primary);
    b.recv_all();
    // The old primary had sent 6 bytes; the client acknowledges them.
    b.send(b.ack_seg(CLIENT_ISN + 1, b.iss + 7));
    assert_eq!(b.stack.stats().challenge_acks, 0);
    b.stack.send(key, b"abcdefghij").unwrap();
    let out = b.recv_all();
    let sent: Vec<u8> = out.iter().flat_map(|s| s.payload.clone()).collect();
    assert_eq!(sent, b"ghij", "{out:?}");
    assert!(out.iter().all(|s| s.seq == b.iss + 7), "{out:?}");
    // Far above anything a primary could have sent: still refused.
    b.send(b.ack_seg(CLIENT_ISN + 1, b.iss.wrapping_add(7 + (1 << 30))));
    assert_eq!(b.stack.stats().challenge_acks, 1);
}

#[test]
fn promoted_backup_acknowledges_only_committed_bytes_until_confirmed() {
    let mut b = h();
    b.stack.set_role(b.now, Role::Backup);
    b.establish_silently();
    b.send(b.data_seg(0, &[7u8; 3000]));
    // The log committed 1000 bytes before the old primary died.
    let start = Seq(CLIENT_ISN + 1);
    b.stack.set_delivery_limit(b.key, Some(start + 1000u32));
    b.stack.set_role(b.now, Role::Primary);
    let out = b.recv_all();
    assert!(!out.is_empty(), "takeover must ACK at once");
    assert!(
        out.iter().all(|s| s.ack == Some(CLIENT_ISN + 1001)),
        "{out:?}"
    );
    // Confirmations from the surviving backups raise the gate.
    b.stack.set_gate(
        b.key,
        Some(Gate {
            ack: start + 3000u32,
            right_edge: start + 65535u32,
        }),
    );
    assert_eq!(b.recv_one().ack, Some(CLIENT_ISN + 3001));
}

#[test]
fn a_backup_fills_a_lost_copy_from_bytes_the_primary_held() {
    let mut p = h();
    let mut b = h();
    b.stack.set_role(b.now, Role::Backup);
    p.stack.set_role(p.now, Role::Primary);
    p.establish();
    let bk = b.establish_silently();
    let start = Seq(CLIENT_ISN + 1);
    let data: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    for off in [0u32, 1000, 2000] {
        p.send(p.data_seg(off, &data[off as usize..off as usize + 1000]));
    }
    // The backup's copy of the middle segment was lost.
    b.send(b.data_seg(0, &data[..1000]));
    b.send(b.data_seg(2000, &data[2000..]));
    assert_eq!(b.stack.receive_progress(bk).unwrap().0, start + 1000u32);
    let held = p.stack.held_bytes(p.key, start + 1000u32, 1 << 20).unwrap();
    assert_eq!(held, &data[1000..]);
    assert_eq!(
        p.stack.held_bytes(p.key, start + 3000u32, 10),
        None,
        "nothing past rcv_nxt"
    );
    b.stack.fill_received(bk, start + 1000u32, &held[..1000]);
    assert_eq!(
        b.stack.receive_progress(bk).unwrap().0,
        start + 3000u32,
        "the hole and the queued data"
    );
    assert!(b.recv_all().is_empty(), "a backup stays silent");
    b.stack.set_delivery_limit(bk, None);
    assert_eq!(b.read_all(), data);
}

#[test]
fn the_window_after_a_syn_ack_never_exceeds_the_buffer() {
    // Found by the group simulator: the SYN-ACK's unscaled window was
    // recorded as if scaled, so later ACKs offered up to 65535 << shift.
    let mut s = h();
    s.send(Seg {
        ctl: Ctl::Syn,
        seq: CLIENT_ISN,
        win: 65535,
        mss: Some(1460),
        ws: Some(7),
        sack_perm: true,
        ts: Some((100, 0)),
        ..Default::default()
    });
    let synack = s.recv_one();
    let shift = u32::from(synack.ws.expect("window scaling negotiated"));
    s.iss = synack.seq;
    s.send(s.ack_seg(CLIENT_ISN + 1, synack.seq + 1));
    s.stack.accept(SERVER).expect("established");
    s.send(s.data_seg(0, &[1u8; 100]));
    s.send(s.data_seg(100, &[1u8; 100]));
    let cap = test_config().recv_buffer as u64;
    for seg in s.recv_all() {
        let offered = u64::from(seg.win) << shift;
        assert!(
            offered <= cap,
            "offered {offered} bytes of window with a {cap}-byte buffer"
        );
    }
}
