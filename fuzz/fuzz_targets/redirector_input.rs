//! What reaches the redirector from outside: client packets from its TUN
//! (classified by the service map, pooled flows routed) and control
//! datagrams from replicas (into the group's `ViewAuthority`, sealed with
//! the group key so the decoders behind authentication are reached). Nothing
//! may panic and the pool's flow table stays within its limit.
//!
//! Input: records of [target, kind, sender, len, bytes...].
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ackchannel::auth::{seal, GroupKey, Header};
use ackchannel::control::{GroupPolicy, ViewAuthority};
use libfuzzer_sys::fuzz_target;
use redirector::pool::{Placement, Policy, Pool, PoolLimits};
use redirector::services::{ServiceMap, Target, Verdict};
use stack::{Duration, Instant};

const CONTROL_DOMAIN: &[u8] = b"hydra control v1";

fuzz_target!(|data: &[u8]| {
    let key = GroupKey([9; 32]);
    let vip = IpAddr::V4(Ipv4Addr::new(198, 18, 100, 1));
    let vip6 = IpAddr::V6(Ipv6Addr::new(0xfd00, 0x100, 0, 0, 0, 0, 0, 1));
    let mut services = ServiceMap::default();
    services.add(vip, vec![80], Target::Pool(0));
    services.add(vip, vec![], Target::Group(0));
    services.add(vip6, vec![80], Target::Pool(0));
    let limits = PoolLimits {
        max_flows: 64,
        ..PoolLimits::default()
    };
    let mut pool = Pool::new(
        "fuzz".into(),
        Policy::LeastConnections,
        vec![(0, "a".into(), 1), (1, "b".into(), 2)],
        limits,
        7,
    );
    let mut authority = ViewAuthority::new(GroupPolicy {
        name: "fuzz".into(),
        key: key.clone(),
        members: vec![1, 2, 3],
        min_members: 2,
        keepalive_timeout: Duration::from_millis(100),
        lease: Duration::from_millis(60),
        heartbeat: Duration::from_millis(10),
        preferred_primary: None,
    });
    let mut now = Instant::ZERO;
    let mut counter = 1u64;
    let mut rest = data;
    while rest.len() >= 4 {
        let (head, tail) = rest.split_at(4);
        let len = usize::from(head[3]).min(tail.len());
        let (bytes, tail) = tail.split_at(len);
        rest = tail;
        let target = head[0];
        now += Duration::from_millis(u64::from(target >> 2));
        match target & 3 {
            0 | 1 => {
                if let Verdict::Pool(p, Some(flow)) = services.classify(bytes) {
                    assert_eq!(p, 0);
                    let available = [target & 1 == 0, true];
                    if let Placement::Group(g) = pool.place(now, &flow, &available) {
                        assert!(g < 2);
                    }
                }
            }
            2 => {
                counter += 1;
                let header = Header {
                    kind: head[1],
                    epoch: 0,
                    sender: head[2] % 5,
                    counter,
                };
                let _ = authority.handle_datagram(now, &seal(&key, CONTROL_DOMAIN, header, bytes));
            }
            _ => {
                let _ = authority.handle_datagram(now, bytes);
            }
        }
        authority.handle_timeout(now);
        assert!(
            pool.status().flows <= 64,
            "the pool's flow table outgrew its limit"
        );
    }
});
