//! What a replica receives from other hosts: ack-channel frames from its
//! peers (into the `Replicator`, as a backup and as a primary) and control
//! datagrams from the redirector (into the `MemberAgent`). Inputs are
//! sealed with the group key the target uses, so the decoders behind the
//! authentication are reached; a record can also go in unsealed, to fuzz the
//! authentication itself. Nothing may panic; every frame is either taken or
//! refused with an error.
//!
//! Input: records of [target, kind, sender, epoch, len, body...].
#![no_main]

use std::net::{Ipv4Addr, SocketAddr};

use ackchannel::auth::{seal, GroupKey, Header};
use ackchannel::control::{MemberAgent, AUTHORITY};
use ackchannel::replication::{MemberId, ReplicationConfig, ReplicationView, Replicator};
use libfuzzer_sys::fuzz_target;
use stack::{Duration, Instant};

/// Wire domains of the two message families (as the crates seal them).
const ACKCHANNEL_DOMAIN: &[u8] = b"hydra ackchannel v1";
const CONTROL_DOMAIN: &[u8] = b"hydra control v1";

fuzz_target!(|data: &[u8]| {
    // A fixed key keeps a crashing input reproducible.
    let key = GroupKey([9; 32]);
    let view = ReplicationView {
        epoch: 1,
        members: vec![MemberId(1), MemberId(2), MemberId(3)],
        joining: vec![],
    };
    let mut backup = Replicator::new(MemberId(2), key.clone(), ReplicationConfig::default());
    let mut primary = Replicator::new(MemberId(1), key.clone(), ReplicationConfig::default());
    let now = Instant::ZERO;
    backup.install_view(now, view.clone());
    primary.install_view(now, view);
    let addr = SocketAddr::new(Ipv4Addr::new(198, 18, 1, 12).into(), 7100);
    let mut agent = MemberAgent::new(
        "fuzz".into(),
        2,
        key.clone(),
        addr,
        addr,
        Duration::from_millis(10),
    );
    let mut now = now;
    let mut counter = 1u64;
    let mut rest = data;
    while rest.len() >= 5 {
        let (head, tail) = rest.split_at(5);
        let len = usize::from(head[4]).min(tail.len());
        let (body, tail) = tail.split_at(len);
        rest = tail;
        let target = head[0];
        counter += u64::from(target >> 6);
        let header = Header {
            kind: head[1],
            epoch: u64::from(head[3] % 4),
            sender: head[2] % 5,
            counter,
        };
        let sealed = match target & 3 {
            0 | 1 => seal(&key, ACKCHANNEL_DOMAIN, header, body),
            2 => seal(
                &key,
                CONTROL_DOMAIN,
                Header {
                    sender: AUTHORITY,
                    ..header
                },
                body,
            ),
            _ => body.to_vec(),
        };
        match target & 3 {
            0 => {
                let _ = backup.handle_frame(now, &sealed);
            }
            1 => {
                let _ = primary.handle_frame(now, &sealed);
            }
            2 => {
                let _ = agent.handle_datagram(now, &sealed);
            }
            _ => {
                let _ = backup.handle_frame(now, &sealed);
                let _ = agent.handle_datagram(now, &sealed);
            }
        }
        now += Duration::from_millis(u64::from(target >> 2 & 0x0f));
        for r in [&mut backup, &mut primary] {
            r.handle_timeout(now);
            while r.poll_transmit().is_some() {}
            while r.poll_action().is_some() {}
        }
        agent.handle_timeout(now);
    }
});
