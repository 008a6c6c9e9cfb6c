use std::net::IpAddr;

use super::*;
use crate::pool::{Policy, PoolLimits};

fn flow(port: u16) -> FlowKey {
    FlowKey {
        client: IpAddr::from([198, 18, 0, 2]),
        client_port: port,
        service: IpAddr::from([198, 18, 100, 1]),
        service_port: 7,
    }
}

/// Pool 0 of groups 0 and 1; pool 1 of group 2.
fn pools() -> Vec<Pool> {
    let pool = |name: &str, groups: Vec<(usize, String, u32)>| {
        Pool::new(
            name.into(),
            Policy::RoundRobin,
            groups,
            PoolLimits::default(),
            1,
        )
    };
    vec![
        pool("a", vec![(0, "g0".into(), 1), (1, "g1".into(), 1)]),
        pool("b", vec![(2, "g2".into(), 1)]),
    ]
}

fn ms(n: u64) -> Instant {
    Instant::from_millis(n)
}

#[test]
fn a_claimed_connection_releases_its_packets_in_order_to_its_group() {
    let pools = pools();
    let mut a = Adoption::default();
    assert!(a.park(ms(0), 0, flow(1), b"first"));
    assert!(a.park(ms(1), 0, flow(1), b"second"));
    assert!(a.park(ms(1), 1, flow(2), b"other pool"));
    let q = a.questions(&pools, 3).expect("changed");
    assert_eq!(q[0], vec![flow(1).conn_key()]);
    assert_eq!(q[1], vec![flow(1).conn_key()]);
    assert_eq!(q[2], vec![flow(2).conn_key()]);
    assert!(a.questions(&pools, 3).is_none(), "nothing changed");
    // Group 2 is not in pool 0: its word about flow 1 counts for nothing.
    assert!(a.claim(&pools, 2, flow(1).conn_key()).is_none());
    let (pool, packets) = a.claim(&pools, 1, flow(1).conn_key()).unwrap();
    assert_eq!(pool, 0);
    assert_eq!(packets, vec![b"first".to_vec(), b"second".to_vec()]);
    assert!(
        a.claim(&pools, 0, flow(1).conn_key()).is_none(),
        "claimed once"
    );
    assert_eq!(a.counters.adopted, 1);
    assert_eq!(a.questions(&pools, 3).unwrap()[0], vec![]);
}

#[test]
fn unclaimed_connections_expire_and_parking_is_bounded() {
    let pools = pools();
    let mut a = Adoption::default();
    for _ in 0..MAX_PARKED_PER_FLOW {
        assert!(a.park(ms(0), 0, flow(1), &[0; 100]));
    }
    assert!(!a.park(ms(0), 0, flow(1), &[0; 100]), "per connection");
    assert!(
        !a.park(ms(0), 0, flow(2), &vec![0; MAX_PARKED_BYTES]),
        "bytes"
    );
    for port in 2..MAX_PENDING as u16 + 1 {
        assert!(a.park(ms(0), 0, flow(port), &[1]));
    }
    assert_eq!(a.pending(), MAX_PENDING);
    assert!(!a.park(ms(0), 0, flow(60000), &[1]), "connections");
    assert_eq!(a.counters.dropped_parking_full, 3);
    a.expire(ms(100));
    assert_eq!(a.pending(), MAX_PENDING, "not yet");
    a.expire(ms(600));
    assert_eq!(a.pending(), 0);
    assert_eq!(
        a.counters.dropped_unclaimed,
        (MAX_PARKED_PER_FLOW + MAX_PENDING - 1) as u64
    );
    assert_eq!(a.parked_bytes, 0);
    assert!(a.claim(&pools, 0, flow(1).conn_key()).is_none());
    // A SYN on the same ports drops what was parked for the old connection.
    a.park(ms(700), 0, flow(3), b"x");
    a.forget(&flow(3));
    assert_eq!((a.pending(), a.parked_bytes), (0, 0));
}
