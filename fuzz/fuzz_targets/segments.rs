//! Arbitrary input packets into a stack in every role: it must never panic.
//! Input: a mode byte (role; the high bit repairs the IP and TCP checksums
//! so mutated segments get past checksum verification into the state
//! machine), then packets as [len_hi, len_lo, bytes...], each followed by a
//! time step. Run: `./hydra fuzz` (every target) or
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run segments` in fuzz/.
#![no_main]

use std::net::{Ipv6Addr, SocketAddr};

use hydra_fuzz::fix_checksums;
use libfuzzer_sys::fuzz_target;
use stack::{Config, Duration, Instant, Role, Stack};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let role = mode & 0x7f;
    let repair = mode & 0x80 != 0;
    // A fixed key keeps a crashing input reproducible.
    let mut s = Stack::new(Config {
        isn_key: [7; 16],
        ..Config::default()
    });
    let role = match role % 3 {
        0 => Role::Standalone,
        1 => Role::Primary,
        _ => Role::Backup,
    };
    s.set_role(Instant::ZERO, role);
    // `[::]` takes IPv4 and IPv6 segments alike.
    let listening = SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 80);
    let _ = s.listen(listening);
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
        while let Some(k) = s.accept(listening) {
            let _ = s.send(k, b"hello");
        }
        let step = packet.first().copied().unwrap_or(1);
        now += Duration::from_millis(u64::from(step));
    }
});
