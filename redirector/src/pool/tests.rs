use super::*;

/// The group a packet goes to (`None`: dropped, or a flow the table does
/// not know).
fn route_of(p: &mut Pool, now: Instant, packet: &FlowPacket, available: &[bool]) -> Option<usize> {
    match p.place(now, packet, available) {
        Placement::Group(g) => Some(g),
        Placement::Unknown | Placement::Dropped => None,
    }
}

fn pool(policy: Policy, weights: &[u32]) -> Pool {
    let groups = weights
        .iter()
        .enumerate()
        .map(|(i, w)| (i, format!("g{i}"), *w))
        .collect();
    Pool::new("p".into(), policy, groups, PoolLimits::default(), 7)
}

fn packet(client: u8, port: u16) -> FlowPacket {
    FlowPacket {
        key: FlowKey {
            client: IpAddr::from([198, 18, 0, client]),
            client_port: port,
            service: IpAddr::from([198, 18, 100, 1]),
            service_port: 7,
        },
        syn: true,
        fin: false,
        rst: false,
    }
}

fn ms(n: u64) -> Instant {
    Instant::from_millis(n)
}

/// Open `n` new connections from one client; returns the groups chosen in order.
fn open(p: &mut Pool, n: u16, available: &[bool]) -> Vec<usize> {
    let first = 1000 + p.status().flows as u16;
    (first..first + n)
        .map(|port| route_of(p, ms(0), &packet(1, port), available).unwrap())
        .collect()
}

fn counts(groups: &[usize], n: usize) -> Vec<usize> {
    (0..n)
        .map(|g| groups.iter().filter(|x| **x == g).count())
        .collect()
}

#[test]
fn round_robin_alternates_and_skips_unavailable_groups() {
    let mut p = pool(Policy::RoundRobin, &[1, 1, 1]);
    assert_eq!(open(&mut p, 6, &[true; 3]), vec![0, 1, 2, 0, 1, 2]);
    assert_eq!(open(&mut p, 4, &[true, false, true]), vec![0, 2, 0, 2]);
}

#[test]
fn weighted_round_robin_is_proportional_and_smooth() {
    let mut p = pool(Policy::WeightedRoundRobin, &[3, 1]);
    let chosen = open(&mut p, 8, &[true, true]);
    assert_eq!(counts(&chosen, 2), vec![6, 2]);
    assert_eq!(&chosen[..4], &[0, 0, 1, 0], "smooth, not bursty");
}

#[test]
fn least_connections_fills_the_emptier_group() {
    let mut p = pool(Policy::LeastConnections, &[1, 1]);
    assert_eq!(open(&mut p, 4, &[true, true]), vec![0, 1, 0, 1]);
    // Close two of group 0's connections: the next two go there.
    for port in [1000, 1002] {
        let mut fin = packet(1, port);
        fin.syn = false;
        fin.fin = true;
        assert_eq!(route_of(&mut p, ms(1), &fin, &[true, true]), Some(0));
    }
    let more: Vec<usize> = (0..2)
        .map(|i| route_of(&mut p, ms(2), &packet(2, i), &[true, true]).unwrap())
        .collect();
    assert_eq!(more, vec![0, 0]);
}

#[test]
fn random_uses_every_group() {
    let mut p = pool(Policy::Random, &[1, 1]);
    let c = counts(&open(&mut p, 400, &[true, true]), 2);
    assert!(c[0] > 120 && c[1] > 120, "{c:?}");
}

#[test]
fn client_hash_keeps_a_client_on_one_group_and_spreads_clients() {
    let mut p = pool(Policy::ClientHash, &[1, 1, 1]);
    let one = open(&mut p, 20, &[true; 3]);
    assert!(one.iter().all(|g| *g == one[0]), "{one:?}");
    let spread: Vec<usize> = (1..=60)
        .map(|c| route_of(&mut p, ms(0), &packet(c, 5000), &[true; 3]).unwrap())
        .collect();
    let c = counts(&spread, 3);
    assert!(c.iter().all(|n| *n >= 8), "{c:?}");
    // A group that leaves moves only its own clients.
    let mut q = pool(Policy::ClientHash, &[1, 1, 1]);
    let moved = (1..=60)
        .filter(|&c| {
            let before = spread[usize::from(c) - 1];
            let after = route_of(&mut q, ms(0), &packet(c, 6000), &[true, true, false]).unwrap();
            before != 2 && before != after
        })
        .count();
    assert_eq!(moved, 0);
}

#[test]
fn a_connection_keeps_its_group_for_life() {
    let mut p = pool(Policy::RoundRobin, &[1, 1]);
    let g = route_of(&mut p, ms(0), &packet(1, 1), &[true, true]).unwrap();
    // SYN retransmission, data, even when its group stops taking new ones.
    assert_eq!(
        route_of(&mut p, ms(1), &packet(1, 1), &[true, true]),
        Some(g)
    );
    let mut data = packet(1, 1);
    data.syn = false;
    assert_eq!(route_of(&mut p, ms(2), &data, &[false, false]), Some(g));
    // After RST the pair is free; a new SYN is a new connection.
    data.rst = true;
    assert_eq!(route_of(&mut p, ms(3), &data, &[true, true]), Some(g));
    assert_eq!(p.status().flows, 0);
    assert_eq!(
        route_of(&mut p, ms(4), &packet(1, 1), &[true, true]),
        Some(1 - g)
    );
}

#[test]
fn unknown_flows_full_tables_and_empty_pools_are_counted_drops() {
    let mut p = Pool::new(
        "p".into(),
        Policy::RoundRobin,
        vec![(0, "a".into(), 1)],
        PoolLimits {
            max_flows: 2,
            ..PoolLimits::default()
        },
        1,
    );
    let mut data = packet(1, 1);
    data.syn = false;
    assert_eq!(p.place(ms(0), &data, &[true]), Placement::Unknown);
    assert_eq!(route_of(&mut p, ms(0), &packet(1, 2), &[false]), None);
    assert!(route_of(&mut p, ms(0), &packet(1, 3), &[true]).is_some());
    assert!(route_of(&mut p, ms(0), &packet(1, 4), &[true]).is_some());
    assert_eq!(route_of(&mut p, ms(0), &packet(1, 5), &[true]), None);
    let s = p.status();
    assert_eq!((s.dropped_no_group, s.dropped_table_full), (1, 1));
}

#[test]
fn idle_and_closed_flows_expire() {
    let mut p = Pool::new(
        "p".into(),
        Policy::RoundRobin,
        vec![(0, "a".into(), 1)],
        PoolLimits {
            max_flows: 10,
            idle_timeout: Duration::from_secs(10),
            closing_timeout: Duration::from_secs(2),
        },
        1,
    );
    route_of(&mut p, ms(0), &packet(1, 1), &[true]);
    route_of(&mut p, ms(0), &packet(1, 2), &[true]);
    let mut fin = packet(1, 2);
    fin.syn = false;
    fin.fin = true;
    route_of(&mut p, ms(0), &fin, &[true]);
    assert_eq!(p.status().members[0].open, 1);
    route_of(&mut p, ms(3_000), &packet(1, 3), &[true]);
    assert_eq!(p.status().flows, 2, "the closed flow went after 2 s");
    route_of(&mut p, ms(12_000), &packet(1, 4), &[true]);
    assert_eq!(p.status().flows, 2, "the idle one after 10 s");
    assert_eq!(p.status().members[0].open, 2);
}

#[test]
fn an_adopted_flow_keeps_the_group_that_claimed_it() {
    let mut p = Pool::new(
        "p".into(),
        Policy::RoundRobin,
        vec![(4, "a".into(), 1), (7, "b".into(), 1)],
        PoolLimits::default(),
        1,
    );
    let key = FlowKey {
        client: "198.18.0.2".parse().unwrap(),
        client_port: 4000,
        service: "198.18.100.1".parse().unwrap(),
        service_port: 7,
    };
    assert_eq!(FlowKey::from_conn_key(key.conn_key()), key);
    assert!(!p.knows(&key));
    assert!(!p.adopt(Instant::ZERO, key, 5), "not a group of this pool");
    assert!(p.adopt(Instant::ZERO, key, 7));
    assert!(p.knows(&key));
    let data = FlowPacket {
        key,
        syn: false,
        fin: false,
        rst: false,
    };
    // Group b keeps it even when only a takes new connections.
    assert_eq!(
        route_of(
            &mut p,
            Instant::ZERO,
            &data,
            &[false, false, false, false, true, false, false, false]
        ),
        Some(7)
    );
    let s = p.status();
    assert_eq!(s.adopted, 1);
    assert_eq!((s.members[0].open, s.members[1].open), (0, 1));
}
