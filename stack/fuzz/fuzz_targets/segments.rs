//! Arbitrary input packets into a stack in every role: it must never panic.
//! Input: a mode byte (role; the high bit repairs the IPv4 and TCP checksums
//! so mutated segments get past checksum verification into the state
//! machine), then packets as [len_hi, len_lo, bytes...], each followed by a
//! time step. Run: `cargo +nightly fuzz run segments` in stack/.
#![no_main]

use std::net::{Ipv4Addr, SocketAddrV4};

use libfuzzer_sys::fuzz_target;
use stack::{Config, Duration, Instant, Role, Stack};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let role = mode & 0x7f;
    let repair = mode & 0x80 != 0;
    let mut s = Stack::new(Config::default());
    let role = match role % 3 {
        0 => Role::Standalone,
        1 => Role::Primary,
        _ => Role::Backup,
    };
    s.set_role(Instant::ZERO, role);
    let _ = s.listen(SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 80));
    let mut now = Instant::ZERO;
    let mut out = vec![0u8; 65536];
    let mut buf = [0u8; 4096];
    while rest.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let (packet, tail) = rest[2..].split_at(len);
        rest = tail;
        let mut owned = packet.to_vec();
        if repair {
            fix_checksums(&mut owned);
        }
        let packet = &owned[..];
        s.handle_packet(now, packet);
        s.handle_timeout(now);
        while let Some(n) = s.poll_transmit(now, &mut out) {
            assert!(n <= out.len());
        }
        while let Some(ev) = s.poll_event() {
            if let stack::Event::Readable(k) = ev {
                let _ = s.recv(k, &mut buf);
            }
        }
        while let Some(k) = s.accept(SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 80)) {
            let _ = s.send(k, b"hello");
        }
        let step = packet.first().copied().unwrap_or(1);
        now += Duration::from_millis(u64::from(step));
    }
});

fn checksum(data: &[u8], mut sum: u32) -> u16 {
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Make the IPv4 header and TCP checksums right for whatever the bytes say.
fn fix_checksums(p: &mut [u8]) {
    if p.len() < 20 || p[0] >> 4 != 4 {
        return;
    }
    let ihl = usize::from(p[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([p[2], p[3]])).min(p.len());
    if ihl < 20 || ihl > total {
        return;
    }
    p[10] = 0;
    p[11] = 0;
    let c = checksum(&p[..ihl], 0);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    if p[9] != 6 || total < ihl + 20 {
        return;
    }
    let tcp_len = total - ihl;
    p[ihl + 16] = 0;
    p[ihl + 17] = 0;
    let mut pseudo = 0u32;
    for w in [&p[12..14], &p[14..16], &p[16..18], &p[18..20]] {
        pseudo += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    pseudo += 6 + tcp_len as u32;
    let c = checksum(&p[ihl..total], pseudo);
    p[ihl + 16..ihl + 18].copy_from_slice(&c.to_be_bytes());
}
