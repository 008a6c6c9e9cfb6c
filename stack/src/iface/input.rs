//! Input: packets off the device, IP checks and fragments, TCP demultiplexing,
//! resets, and ICMP (answering echo and port-unreachable, acting on
//! unreachables).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::wire::{Icmpv4Repr, Icmpv6Repr, TcpControl, TcpRepr, TcpSeqNumber};

use super::*;
use crate::tcp::conn::{ConnError, Signals};
use crate::tcp::State;
use crate::wire::{self, ParseError};
use hydra_base::time::Instant;
use hydra_base::Seq;

impl Stack {
    /// Process one IPv4 or IPv6 packet read from the device at time `now`: parse and
    /// check it, then hand a TCP segment to its connection or listener (a
    /// joining replica parks segments of connections it does not hold yet),
    /// answer ICMP echo (if configured) and act on destination unreachable.
    /// Call it for every packet, then drain [`poll_event`](Self::poll_event)
    /// and [`poll_transmit`](Self::poll_transmit): replies are queued, never
    /// sent from here.
    ///
    /// Returns nothing: a packet that is malformed, not for us or not
    /// acceptable is dropped and counted in [`Stats`].
    pub fn handle_packet(&mut self, now: Instant, packet: &[u8]) {
        self.stats.packets_in += 1;
        self.packets_since_recount += 1;
        if self.packets_since_recount >= 4096 {
            // Paths other than input (repairs, imports) change what
            // connections hold out of order too: recount, amortised.
            self.packets_since_recount = 0;
            self.ooo_total = self.out_of_order_bytes();
        }
        self.stats.bytes_in += packet.len() as u64;
        self.ip_input(now, packet);
    }

    /// One IP packet off the device, or reassembled from fragments.
    pub(super) fn ip_input(&mut self, now: Instant, packet: &[u8]) {
        match wire::parse(packet) {
            Err(ParseError::BadIp) | Err(ParseError::BadOther) => self.stats.drop_bad_ip += 1,
            Err(ParseError::BadTcp) => self.stats.drop_bad_tcp += 1,
            Err(ParseError::Fragment) => self.fragment_input(now, packet),
            Ok(wire::Packet::Tcp(seg)) if !plausible(seg.src.ip(), seg.dst.ip()) => {
                //= RFC 9293 section 3.10.7.2
                //# If the SYN bit is set ... An incoming SYN segment with a
                //# broadcast or multicast destination address ... SHOULD be
                //# silently discarded
                // Nor is anything from an address no host owns answered: a
                // SYN-ACK to 0.0.0.0 or a broadcast address helps nobody.
                self.stats.drop_bad_address += 1;
            }
            Ok(wire::Packet::Tcp(seg)) => {
                let key = ConnKey {
                    local: seg.dst,
                    remote: seg.src,
                };
                // A joining replica takes every connection by snapshot, new
                // ones too: one it opened from the SYN itself may miss copies
                // the group acknowledged before it first confirmed, which the
                // primary's application may have read (seed 62064).
                if self.parking.is_some() && !self.conns.contains_key(&key) {
                    self.park(key, packet);
                } else {
                    self.tcp_input(now, seg.dst, seg.src, &seg.tcp)
                }
            }
            Ok(wire::Packet::Icmp { src, dst, repr }) => self.icmp_input(now, src, dst, &repr),
            Ok(wire::Packet::Icmpv6 { src, dst, repr }) => self.icmpv6_input(src, dst, &repr),
            Ok(wire::Packet::Icmpv6Ignored) => self.stats.icmp_ignored += 1,
            Ok(wire::Packet::Udp { src, dst, .. }) if !plausible(src, dst) => {
                // No ICMP error answers a multicast or broadcast datagram
                // (RFC 1122 3.2.2, RFC 4443 2.4(e)), nor goes to a source
                // no host owns.
                self.stats.drop_bad_address += 1;
            }
            Ok(wire::Packet::Udp { src, dst, quote }) => {
                self.stats.drop_no_socket += 1;
                //= RFC 1122 section 3.2.2.1
                //# A host SHOULD generate Destination Unreachable messages with code: 3 (Port
                //# Unreachable), if the designated transport protocol (e.g., UDP) is unable to
                //# demultiplex the datagram
                if self.role != Role::Backup {
                    self.queue_port_unreachable(dst, src, quote);
                }
            }
            Ok(wire::Packet::Other { .. }) => self.stats.drop_unknown_protocol += 1,
        }
    }

    /// A valid IPv4 fragment: dropped or reassembled, per `Config::fragments`.
    pub(super) fn fragment_input(&mut self, now: Instant, packet: &[u8]) {
        let Some(reassembly) = self.reassembly.as_mut() else {
            self.stats.drop_fragment += 1;
            return;
        };
        // Fragments from or to addresses no host owns get no memory.
        if let Some((src, dst)) = wire::ipv4_addresses(packet) {
            if !plausible(src.into(), dst.into()) {
                self.stats.drop_bad_address += 1;
                return;
            }
        }
        let outcome = reassembly.insert(now, packet);
        self.stats.drop_fragment += outcome.dropped;
        if let Some(whole) = outcome.complete {
            self.stats.fragments_reassembled += 1;
            self.ip_input(now, &whole);
        }
    }

    pub(super) fn tcp_input(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        seg: &TcpRepr<'_>,
    ) {
        let key = ConnKey { local, remote };
        if let Some(tcb) = self.conns.get_mut(&key) {
            // RFC 6191: a new SYN may reuse a 4-tuple in TIME-WAIT if its sequence number is higher.
            let reuse = tcb.state == State::TimeWait
                && seg.control == TcpControl::Syn
                && seg.ack_number.is_none()
                && Seq(seg.seq_number.0 as u32) > tcb.rcv_nxt;
            if !reuse {
                // The stack-wide budget for out-of-order bytes: this
                // connection may hold what the others leave of it.
                let held = tcb.recv.ooo_bytes;
                let others = self.ooo_total.saturating_sub(held);
                let room = self.cfg.ooo_budget.saturating_sub(others);
                tcb.recv.ooo_limit = self.cfg.ooo_limit.min(room);
                let clamped = room < self.cfg.ooo_limit;
                let drops = self.stats.drop_ooo_limit;
                let sig = tcb.input(now, &self.cfg, seg, &mut self.stats);
                self.ooo_total = others + tcb.recv.ooo_bytes;
                if clamped {
                    self.stats.drop_ooo_budget += self.stats.drop_ooo_limit - drops;
                }
                if let Some(seq) = tcb.reply_rst.take() {
                    self.queue_rst(local, remote, seq, None);
                }
                self.after_change(key, sig);
                return;
            }
            self.remove(key);
        }
        match self.listener_for(local) {
            Some(l) => self.listen_input(now, l, key, seg),
            None => {
                self.stats.drop_no_socket += 1;
                self.reset_for(key, seg);
            }
        }
    }

    //= RFC 9293 section 3.10.7.1
    //# If the state is CLOSED ... An incoming segment not containing a RST causes a RST to be
    //# sent in response. If the ACK bit is off, sequence number zero is used,
    //# <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>
    //# If the ACK bit is on, <SEQ=SEG.ACK><CTL=RST>
    pub(super) fn reset_for(&mut self, key: ConnKey, seg: &TcpRepr<'_>) {
        if seg.control == TcpControl::Rst || self.role == Role::Backup {
            return;
        }
        match seg.ack_number {
            Some(ack) => self.queue_rst(key.local, key.remote, Seq(ack.0 as u32), None),
            None => {
                let ack = Seq(seg.seq_number.0 as u32) + seg.segment_len();
                self.queue_rst(key.local, key.remote, Seq(0), Some(ack));
            }
        }
    }

    pub(super) fn icmp_input(
        &mut self,
        now: Instant,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        repr: &Icmpv4Repr<'_>,
    ) {
        match *repr {
            Icmpv4Repr::EchoRequest {
                ident,
                seq_no,
                data,
            } => {
                if !self.cfg.icmp_echo || self.role == Role::Backup {
                    return;
                }
                let reply = Icmpv4Repr::EchoReply {
                    ident,
                    seq_no,
                    data,
                };
                let mut buf = vec![0u8; wire::IPV4_HEADER_LEN + reply.buffer_len()];
                if let Some(n) = wire::emit_icmp(&mut buf, dst, src, self.cfg.ttl, &reply) {
                    buf.truncate(n);
                    self.stats.icmp_echo_replies += 1;
                    self.push_control(buf);
                }
            }
            Icmpv4Repr::DstUnreachable { header, data, .. } => {
                self.stats.icmp_unreachable_received += 1;
                //= RFC 5461 section 4
                //# ... TCP SHOULD abort connections in SYN-SENT state on hard errors (port unreachable);
                //# established connections treat them as soft errors.
                if header.next_header == wire::IpProtocol::Tcp {
                    let src = IpAddr::V4(header.src_addr);
                    let dst = IpAddr::V4(header.dst_addr);
                    self.unreachable_input(src, dst, data);
                }
                let _ = now;
            }
            _ => {}
        }
    }

    /// A destination unreachable for a segment of ours from `src` to
    /// `dst`, whose TCP header begins `quoted`.
    fn unreachable_input(&mut self, src: IpAddr, dst: IpAddr, quoted: &[u8]) {
        let Some(key) = quoted_key(src, dst, quoted) else {
            return;
        };
        if let Some(tcb) = self.conns.get_mut(&key) {
            if tcb.state == State::SynSent {
                let mut sig = Signals::default();
                tcb.close_with(Some(ConnError::Refused), &mut sig);
                self.after_change(key, sig);
            }
        }
    }

    pub(super) fn icmpv6_input(&mut self, src: Ipv6Addr, dst: Ipv6Addr, repr: &Icmpv6Repr<'_>) {
        match *repr {
            Icmpv6Repr::EchoRequest {
                ident,
                seq_no,
                data,
            } => {
                //= RFC 4443 section 4.1
                //# Every node MUST implement an ICMPv6 Echo responder function
                // Unless the operator turned echo off, as for IPv4; a backup
                // keeps quiet, its primary answers.
                if !self.cfg.icmp_echo || self.role == Role::Backup || dst.is_multicast() {
                    return;
                }
                let reply = Icmpv6Repr::EchoReply {
                    ident,
                    seq_no,
                    data,
                };
                let mut buf = vec![0u8; wire::IPV6_HEADER_LEN + reply.buffer_len()];
                if let Some(n) = wire::emit_icmpv6(&mut buf, dst, src, self.cfg.ttl, &reply) {
                    buf.truncate(n);
                    self.stats.icmp_echo_replies += 1;
                    self.push_control(buf);
                }
            }
            Icmpv6Repr::DstUnreachable { header, data, .. } => {
                self.stats.icmp_unreachable_received += 1;
                if header.next_header == wire::IpProtocol::Tcp {
                    self.unreachable_input(header.src_addr.into(), header.dst_addr.into(), data);
                }
            }
            Icmpv6Repr::PktTooBig { mtu, header, data } => {
                self.stats.icmp_packet_too_big += 1;
                if header.next_header != wire::IpProtocol::Tcp || data.len() < 8 {
                    return;
                }
                let src = IpAddr::V6(header.src_addr);
                let Some(key) = quoted_key(src, header.dst_addr.into(), data) else {
                    return;
                };
                let seq = Seq(u32::from_be_bytes([data[4], data[5], data[6], data[7]]));
                if let Some(tcb) = self.conns.get_mut(&key) {
                    if tcb.on_packet_too_big(mtu, seq) {
                        self.stats.path_mtu_lowered += 1;
                        self.after_change(key, Signals::default());
                    }
                }
            }
            _ => {}
        }
    }

    pub(super) fn queue_port_unreachable(&mut self, local: IpAddr, remote: IpAddr, quote: &[u8]) {
        if let Some(pkt) = wire::port_unreachable(local, remote, self.cfg.ttl, quote) {
            self.push_control(pkt);
        }
    }

    pub(super) fn queue_rst(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        seq: Seq,
        ack: Option<Seq>,
    ) {
        let hdr = TcpRepr {
            src_port: local.port(),
            dst_port: remote.port(),
            control: TcpControl::Rst,
            seq_number: TcpSeqNumber(seq.0 as i32),
            ack_number: ack.map(|a| TcpSeqNumber(a.0 as i32)),
            window_len: 0,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload: &[],
        };
        let mut buf = vec![0u8; 64];
        if let Some(n) = wire::emit_tcp(&mut buf, local, remote, self.cfg.ttl, &hdr, (&[], &[])) {
            buf.truncate(n);
            self.stats.resets_sent += 1;
            self.push_control(buf);
        }
    }

    pub(super) fn push_control(&mut self, pkt: Vec<u8>) {
        if self.control.len() >= MAX_CONTROL_QUEUE {
            self.stats.drop_syn_overflow += 1;
            return;
        }
        self.control.push_back(pkt);
    }
}

/// The connection a quoted TCP header (of a segment we sent from `src` to
/// `dst`) belongs to: its first four bytes are the ports.
fn quoted_key(src: IpAddr, dst: IpAddr, quoted: &[u8]) -> Option<ConnKey> {
    let ports = quoted.get(..4)?;
    Some(ConnKey {
        local: SocketAddr::new(src, u16::from_be_bytes([ports[0], ports[1]])),
        remote: SocketAddr::new(dst, u16::from_be_bytes([ports[2], ports[3]])),
    })
}
