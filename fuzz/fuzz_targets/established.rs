//! A connection past its handshake fed arbitrary well-formed segments: any
//! flags, sequence and acknowledgement numbers near the connection's own,
//! any window, any option bytes, any payload, and any timing, while the
//! application reads, writes and closes. The stack must never panic and
//! never emit more than a packet buffer holds.
//!
//! Input: records of [flags, dseq_hi, dseq_lo, dack_hi, dack_lo, win_hi,
//! win_lo, optlen, options..., paylen, payload..., step, app], where dseq
//! and dack are signed offsets from the client's next sequence number and
//! the server's highest sent sequence number.
#![no_main]

use std::net::{Ipv4Addr, SocketAddr};

use hydra_fuzz::{flags, reply_fields, tcp_packet, Tcp};
use libfuzzer_sys::fuzz_target;
use stack::{Config, Duration, Instant, Stack};

const CLIENT: ([u8; 4], u16) = ([198, 18, 0, 1], 40000);
const SERVER: ([u8; 4], u16) = ([198, 18, 0, 2], 80);
/// MSS 1460, SACK permitted, timestamps, window scale 7.
const SYN_OPTIONS: [u8; 20] = [
    2, 4, 5, 180, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
];

struct Peer {
    stack: Stack,
    now: Instant,
    out: Vec<u8>,
    /// Highest sequence number the server has sent (plus its length).
    server_next: u32,
}

impl Peer {
    fn input(&mut self, packet: &[u8]) {
        self.stack.handle_packet(self.now, packet);
        self.stack.handle_timeout(self.now);
        while let Some(n) = self.stack.poll_transmit(self.now, &mut self.out) {
            assert!(n <= self.out.len());
            if let Some((seq, _, f, len)) = reply_fields(&self.out[..n]) {
                let syn_fin = u32::from(f & (flags::SYN | flags::FIN) != 0);
                let end = seq.wrapping_add(len as u32).wrapping_add(syn_fin);
                if end.wrapping_sub(self.server_next) as i32 > 0 {
                    self.server_next = end;
                }
            }
        }
    }
}

fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if rest.len() < n {
        return None;
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Some(head)
}

fuzz_target!(|data: &[u8]| {
    let local = SocketAddr::new(Ipv4Addr::from(SERVER.0).into(), SERVER.1);
    let mut stack = Stack::new(Config {
        isn_key: [7; 16],
        ..Config::default()
    });
    if stack.listen(local).is_err() {
        return;
    }
    let mut peer = Peer {
        stack,
        now: Instant::ZERO,
        out: vec![0u8; 65536],
        server_next: 0,
    };
    let client_isn = 1_000_000u32;
    peer.input(&tcp_packet(&Tcp {
        src: CLIENT,
        dst: SERVER,
        seq: client_isn,
        ack: 0,
        flags: flags::SYN,
        window: 65535,
        options: &SYN_OPTIONS,
        payload: &[],
    }));
    let mut client_next = client_isn.wrapping_add(1);
    peer.input(&tcp_packet(&Tcp {
        src: CLIENT,
        dst: SERVER,
        seq: client_next,
        ack: peer.server_next,
        flags: flags::ACK,
        window: 1024,
        options: &[],
        payload: &[],
    }));
    let Some(key) = peer.stack.accept(local) else {
        return;
    };
    let mut buf = [0u8; 8192];
    let mut rest = data;
    while let Some(head) = take(&mut rest, 8) {
        let f = head[0];
        let dseq = i16::from_be_bytes([head[1], head[2]]);
        let dack = i16::from_be_bytes([head[3], head[4]]);
        let window = u16::from_be_bytes([head[5], head[6]]);
        let Some(options) = take(&mut rest, usize::from(head[7] % 41)) else {
            return;
        };
        let Some(&paylen) = rest.first() else {
            return;
        };
        rest = &rest[1..];
        let Some(payload) = take(&mut rest, usize::from(paylen)) else {
            return;
        };
        let seq = client_next.wrapping_add(dseq as i32 as u32);
        peer.input(&tcp_packet(&Tcp {
            src: CLIENT,
            dst: SERVER,
            seq,
            ack: peer.server_next.wrapping_add(dack as i32 as u32),
            flags: f,
            window,
            options,
            payload,
        }));
        if dseq == 0 && f & flags::RST == 0 {
            client_next = client_next
                .wrapping_add(payload.len() as u32)
                .wrapping_add(u32::from(f & (flags::SYN | flags::FIN) != 0));
        }
        let Some(step_app) = take(&mut rest, 2) else {
            return;
        };
        peer.now += Duration::from_millis(u64::from(step_app[0]) * 4);
        match step_app[1] % 8 {
            0..=3 => {
                let _ = peer.stack.recv(key, &mut buf);
            }
            4 | 5 => {
                let _ = peer.stack.send(key, &buf[..usize::from(step_app[1]) * 16]);
            }
            6 => peer.stack.shutdown_write(key),
            _ => peer.stack.close(key),
        }
        peer.input(&[]);
    }
});
