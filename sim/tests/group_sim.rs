//! The whole-group simulator on a fixed seed set (the long sweep is
//! `hydra-sim --seeds N`), and proof that its checker catches a known bug.

use sim::groupsim::{run_seed, ClientKind, CoordinationBug, SimConfig, Verdict};

fn seeds() -> Vec<u64> {
    match std::env::var("HYDRA_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(seed) => vec![seed],
        None => (1..=24).collect(),
    }
}

#[test]
fn groups_of_three_survive_seeded_crashes_pauses_partitions_and_lossy_links() {
    let (mut failovers, mut handovers, mut rejoins, mut at_gate) = (0, 0, 0, 0);
    for seed in seeds() {
        match run_seed(SimConfig::new(seed)) {
            Verdict::Pass {
                failovers: f,
                handovers: h,
                rejoins: j,
                gate_deliveries: g,
                ..
            } => {
                failovers += f;
                handovers += h;
                rejoins += j;
                at_gate += g;
            }
            Verdict::GroupLost { .. } => {}
            Verdict::Violation { at_ms, what } => {
                panic!("seed {seed} at {at_ms} ms: {what}\nrepro: cargo run -p hydra-sim --bin hydra-sim -- --trace {seed}")
            }
        }
    }
    assert!(failovers > 0, "the fixed seeds must exercise failovers");
    assert!(
        at_gate > 0,
        "the echo connections (a plain listener's) must take bytes at the gate"
    );
    if seeds().len() > 1 {
        assert!(handovers > 0, "the fixed seeds must exercise handovers");
        assert!(rejoins > 0, "the fixed seeds must exercise rejoins");
    }
}

/// With a preferred primary, every crash of it is followed (once it has
/// rejoined) by a deliberate handback while clients keep streaming: the
/// same invariants hold (one writer per epoch, every byte once and in
/// order), and the fixed seeds do exercise the handback.
#[test]
fn a_group_hands_the_primary_role_back_to_its_preferred_member() {
    let mut handbacks = 0;
    for seed in seeds() {
        let cfg = SimConfig {
            preferred_primary: Some(1),
            ..SimConfig::new(seed)
        };
        match run_seed(cfg) {
            Verdict::Pass { handbacks: h, .. } => handbacks += h,
            Verdict::GroupLost { .. } => {}
            Verdict::Violation { at_ms, what } => panic!(
                "seed {seed} at {at_ms} ms: {what}\nrepro: cargo run -p hydra-sim --bin hydra-sim -- --preferred-primary 1 --trace {seed}"
            ),
        }
    }
    if seeds().len() > 1 {
        assert!(handbacks > 0, "the fixed seeds must exercise a handback");
    }
}

#[test]
fn groups_of_two_survive_too() {
    for seed in seeds() {
        let cfg = SimConfig {
            replicas: 2,
            ..SimConfig::new(seed)
        };
        if let Verdict::Violation { at_ms, what } = run_seed(cfg) {
            panic!("seed {seed} at {at_ms} ms: {what}\nrepro: cargo run -p hydra-sim --bin hydra-sim -- --replicas 2 --trace {seed}");
        }
    }
}

/// Passive replication under the same faults: the echo runs only on the
/// primary, chunked differently on each replica, and keeps its position in
/// a state block; every takeover must find block and stream consistent
/// and the client must get its bytes back exactly.
#[test]
fn passive_groups_survive_the_same_faults() {
    let (mut failovers, mut checkpoints) = (0, 0);
    for seed in seeds() {
        let cfg = SimConfig {
            passive: true,
            ..SimConfig::new(seed)
        };
        match run_seed(cfg) {
            Verdict::Pass {
                failovers: f,
                checkpoints: c,
                ..
            } => {
                failovers += f;
                checkpoints += c;
            }
            Verdict::GroupLost { .. } => {}
            Verdict::Violation { at_ms, what } => panic!(
                "seed {seed} at {at_ms} ms: {what}\nrepro: cargo run -p hydra-sim --bin hydra-sim -- --passive --trace {seed}"
            ),
        }
    }
    assert!(failovers > 0, "the fixed seeds must exercise failovers");
    assert!(checkpoints > 0, "the passive runs must checkpoint");
}

/// Many short connections (16 of 1,500 bytes, opened 150 ms apart) under
/// the same faults, both modes: handshakes and closes fall in every phase
/// of the failovers, handovers and rejoins.
#[test]
fn many_short_connections_survive_too() {
    for seed in seeds() {
        for passive in [false, true] {
            let cfg = SimConfig {
                connections: 16,
                bytes_per_connection: 1500,
                passive,
                ..SimConfig::new(seed)
            };
            if let Verdict::Violation { at_ms, what } = run_seed(cfg) {
                let flag = if passive { " --passive" } else { "" };
                panic!("seed {seed} at {at_ms} ms: {what}\nrepro: cargo run -p hydra-sim --bin hydra-sim -- --connections 16 --bytes 1500{flag} --trace {seed}");
            }
        }
    }
}

/// smoltcp's TCP as the client (a peer we did not write: no SACK, no
/// timestamps, its own delayed ACKs and retransmission timer), streaming
/// and many short connections, under the same faults.
#[test]
fn a_smoltcp_client_survives_the_same_faults() {
    let mut failovers = 0;
    for seed in seeds() {
        for (connections, bytes) in [(4, 48 * 1024), (16, 1500)] {
            let cfg = SimConfig {
                client: ClientKind::Smoltcp,
                connections,
                bytes_per_connection: bytes,
                ..SimConfig::new(seed)
            };
            match run_seed(cfg) {
                Verdict::Pass { failovers: f, .. } => failovers += f,
                Verdict::GroupLost { .. } => {}
                Verdict::Violation { at_ms, what } => panic!(
                    "seed {seed} at {at_ms} ms: {what}\nrepro: cargo run -p hydra-sim --bin hydra-sim -- --client smoltcp --connections {connections} --bytes {bytes} --trace {seed}"
                ),
            }
        }
    }
    assert!(failovers > 0, "the fixed seeds must exercise failovers");
}

/// A backup that lost the copies of every connection's handshake ACK and
/// first data segment holds half-open copies, which no repair fills; the
/// primary's "opened" records complete them, the repair follows, and the
/// primary's gate does not wait for the client to retransmit (its RTO is
/// a second): in simulated time, the transfers end as soon as without the
/// loss, give or take a few round trips.
#[test]
fn a_backup_that_lost_the_handshake_acks_does_not_hold_the_group_back() {
    for seed in [3, 8, 21] {
        let run = |lose: Option<u8>| {
            // Request/response: nothing follows the first request until its
            // answer came back, so only the client's retransmission would
            // bring the backup the bytes it lost.
            let cfg = SimConfig {
                faults: false,
                lose_handshake_ack_to: lose,
                request: Some(1000),
                ..SimConfig::new(seed)
            };
            match run_seed(cfg) {
                Verdict::Pass { sim_ms, .. } => sim_ms,
                other => panic!("seed {seed}, lost ACKs to {lose:?}: {other:?}"),
            }
        };
        let (clean, lossy) = (run(None), run(Some(3)));
        assert!(
            lossy < clean + 200,
            "seed {seed}: {lossy} ms with member 3's handshake ACKs lost, {clean} ms without"
        );
    }
}

/// A backup that lost the copy of a client's SYN holds no copy of the
/// connection and never confirms it: without a repair the SYN-ACK waits
/// for the client's retransmitted SYN (1 s). The primary sends the backup
/// the connection's half-open record instead.
#[test]
fn a_backup_that_lost_the_syn_does_not_hold_the_handshake_back() {
    for seed in [3, 8, 21] {
        let run = |lose: Option<u8>| {
            let cfg = SimConfig {
                faults: false,
                lose_syn_to: lose,
                request: Some(1000),
                ..SimConfig::new(seed)
            };
            match run_seed(cfg) {
                Verdict::Pass { sim_ms, .. } => sim_ms,
                other => panic!("seed {seed}, lost SYN to {lose:?}: {other:?}"),
            }
        };
        let (clean, lossy) = (run(None), run(Some(2)));
        assert!(
            lossy < clean + 200,
            "seed {seed}: {lossy} ms with member 2's SYN copies lost, {clean} ms without"
        );
        eprintln!("seed {seed}: {lossy} ms with the SYN copies lost, {clean} ms without");
    }
}

/// IPv6 clients (ours and smoltcp's) of active and passive groups, under
/// the same faults: the same invariants over the other family.
#[test]
fn ipv6_clients_survive_the_same_faults() {
    let mut failovers = 0;
    for seed in seeds() {
        for (client, passive) in [
            (ClientKind::Hydra, false),
            (ClientKind::Smoltcp, false),
            (ClientKind::Hydra, true),
        ] {
            let cfg = SimConfig {
                ipv6: true,
                client,
                passive,
                ..SimConfig::new(seed)
            };
            match run_seed(cfg) {
                Verdict::Pass { failovers: f, .. } => failovers += f,
                Verdict::GroupLost { .. } => {}
                Verdict::Violation { at_ms, what } => panic!(
                    "seed {seed} at {at_ms} ms: {what}\nrepro: cargo run -p hydra-sim --bin hydra-sim -- --ipv6 --client {}{} --trace {seed}",
                    if client == ClientKind::Smoltcp { "smoltcp" } else { "hydra" },
                    if passive { " --passive" } else { "" }
                ),
            }
        }
    }
    assert!(failovers > 0, "the fixed seeds must exercise failovers");
}

/// Request/response (1 KiB requests, each sent once the last came back),
/// with either client, in both modes: takeovers fall between and inside
/// exchanges, with the connection often idle.
#[test]
fn request_response_survives_the_same_faults() {
    for seed in seeds() {
        for (client, passive) in [
            (ClientKind::Hydra, false),
            (ClientKind::Hydra, true),
            (ClientKind::Smoltcp, false),
        ] {
            let cfg = SimConfig {
                client,
                passive,
                request: Some(1024),
                bytes_per_connection: 16 * 1024,
                ..SimConfig::new(seed)
            };
            if let Verdict::Violation { at_ms, what } = run_seed(cfg) {
                let client_flag = match client {
                    ClientKind::Hydra => "",
                    ClientKind::Smoltcp => " --client smoltcp",
                };
                let passive_flag = if passive { " --passive" } else { "" };
                panic!("seed {seed} at {at_ms} ms: {what}\nrepro: cargo run -p hydra-sim --bin hydra-sim -- --request 1024 --bytes 16384{client_flag}{passive_flag} --trace {seed}");
            }
        }
    }
}

/// Replicas write large segments the device cuts (segmentation offload,
/// as over a TUN): retransmissions, SACK and takeovers over super-segments.
#[test]
fn segmentation_offload_survives_the_same_faults() {
    for seed in seeds() {
        for (passive, request) in [(false, None), (true, None), (false, Some(1024))] {
            let cfg = SimConfig {
                passive,
                request,
                segmentation_offload: true,
                ..SimConfig::new(seed)
            };
            if let Verdict::Violation { at_ms, what } = run_seed(cfg) {
                let passive_flag = if passive { " --passive" } else { "" };
                let request_flag = if request.is_some() {
                    " --request 1024"
                } else {
                    ""
                };
                panic!("seed {seed} at {at_ms} ms: {what}\nrepro: cargo run -p hydra-sim --bin hydra-sim -- --offload{passive_flag}{request_flag} --trace {seed}");
            }
        }
    }
}

/// A simulator that finds nothing may be blind: inject "ACK without
/// gating" and the checker must report acknowledged bytes a live replica
/// does not hold.
#[test]
fn the_checker_catches_acks_without_gating() {
    for client in [ClientKind::Hydra, ClientKind::Smoltcp] {
        let caught = (1..=12u64)
            .filter(|seed| {
                let cfg = SimConfig {
                    inject_no_gating: true,
                    client,
                    ..SimConfig::new(*seed)
                };
                matches!(run_seed(cfg), Verdict::Violation { what, .. } if what.contains("acknowledged"))
            })
            .count();
        assert!(
            caught >= 6,
            "{client:?} client: only {caught} of 12 seeds caught the injected bug"
        );
    }
}

#[test]
fn a_seed_replays_exactly() {
    let a = run_seed(SimConfig::new(5));
    let b = run_seed(SimConfig::new(5));
    assert_eq!(a, b);
    let two = || SimConfig {
        redirectors: 2,
        ..SimConfig::new(2)
    };
    assert_eq!(run_seed(two()), run_seed(two()));
}

/// The seeds of a two-redirector test: `HYDRA_SIM_SEED` alone, or 1 to `n`.
fn redirector_seeds(n: u64) -> Vec<u64> {
    match std::env::var("HYDRA_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(seed) => vec![seed],
        None => (1..=n).collect(),
    }
}

/// What the passing seeds of a two-redirector run added up to.
#[derive(Default)]
struct RedirectorTotals {
    passed: u64,
    elections: u64,
    deposed_writes: u64,
    heartbeat_depositions: u64,
}

/// Two redirectors (with a heartbeat of `heartbeat_ms`, if any) over each
/// seed; a violation fails the test with its repro command.
fn run_two_redirector_seeds(seeds: &[u64], heartbeat_ms: Option<u64>) -> RedirectorTotals {
    let mut t = RedirectorTotals::default();
    for &seed in seeds {
        let cfg = SimConfig {
            redirectors: 2,
            heartbeat_ms,
            connections: 2,
            bytes_per_connection: 16 * 1024,
            ..SimConfig::new(seed)
        };
        match run_seed(cfg) {
            Verdict::Pass {
                elections,
                deposed_writes,
                heartbeat_depositions,
                ..
            } => {
                t.passed += 1;
                t.elections += elections;
                t.deposed_writes += deposed_writes;
                t.heartbeat_depositions += heartbeat_depositions;
            }
            Verdict::GroupLost { .. } => {}
            Verdict::Violation { at_ms, what } => {
                let beat = heartbeat_ms.map_or(String::new(), |h| format!(" --heartbeat-ms {h}"));
                panic!(
                    "seed {seed} at {at_ms} ms: {what}\nrepro: cargo run -p hydra-sim --bin hydra-sim -- --redirectors 2{beat} --connections 2 --bytes 16384 --trace {seed}"
                )
            }
        }
    }
    t
}

/// A group served by two redirectors coordinated through the simulated
/// store, under the replica faults plus kills of the acting redirector
/// (and restarts), partitions of it from the store or from everything,
/// store latency spikes and view writes held up in the network past a
/// takeover: every view a member accepted or the store held is the one
/// view of its epoch, only the newest view's primary writes to the client,
/// and every stream comes back byte-exact with no reset.
#[test]
fn two_redirectors_keep_one_view_per_epoch_through_kills_partitions_and_a_slow_store() {
    let seeds = redirector_seeds(200);
    let t = run_two_redirector_seeds(&seeds, None);
    let (elections, deposed, passed) = (t.elections, t.deposed_writes, t.passed);
    if seeds.len() > 1 {
        assert!(
            elections > passed + passed / 4,
            "the seeds must exercise takeovers: {elections} elections in {passed} passing runs"
        );
        assert!(
            deposed > 0,
            "the seeds must bring a deposed authority's view write to the store"
        );
    }
}

/// The checks above can fail. Without the fence on the authority key's
/// `create_revision`, a deposed authority's view write held up in the
/// network lands after its successor carried on from the older view: the
/// store names a primary other than the one serving under the successor
/// (whom the next authority would restore at once, its lease still
/// running). With view writes comparing nothing at all, the held-up write
/// lands over the successor's own: two views for one epoch. The same
/// seeds pass with the real rules.
#[test]
fn unfenced_view_writes_are_caught() {
    let cfg = |seed, bug| SimConfig {
        redirectors: 2,
        inject_coordination: bug,
        ..SimConfig::new(seed)
    };
    let cases = [
        (
            CoordinationBug::NoFence,
            [35, 63, 94, 116],
            "wrote to the client while view",
        ),
        (
            CoordinationBug::NoCompare,
            [11, 31, 50, 58],
            "two views for epoch",
        ),
    ];
    for (bug, seeds, caught) in cases {
        for seed in seeds {
            match run_seed(cfg(seed, Some(bug))) {
                Verdict::Violation { what, .. } if what.contains(caught) => {}
                other => panic!("seed {seed}, {bug:?}: went unnoticed: {other:?}"),
            }
            if let Verdict::Violation { at_ms, what } = run_seed(cfg(seed, None)) {
                panic!("seed {seed} with the real rules, at {at_ms} ms: {what}");
            }
        }
    }
}

/// Two redirectors with a heartbeat of 20 ms (the store's lease is
/// 150 ms): the acting one writes it every interval and acts only until
/// three intervals after sending the last one the store took, and a
/// standby revokes its lease once the heartbeat has not changed for four.
/// Under the same kills, partitions, slow store and held-up writes, every
/// invariant holds (one view per epoch, no two redirectors answering at
/// once, byte-exact streams), and standbys do depose silent authorities.
#[test]
fn two_redirectors_with_a_heartbeat_depose_silent_authorities_and_keep_one_view_per_epoch() {
    let seeds = redirector_seeds(60);
    let t = run_two_redirector_seeds(&seeds, Some(20));
    let (elections, depositions, passed) = (t.elections, t.heartbeat_depositions, t.passed);
    if seeds.len() > 1 {
        assert!(
            elections > passed + passed / 4,
            "the seeds must exercise takeovers: {elections} elections in {passed} passing runs"
        );
        assert!(
            depositions >= 10,
            "the seeds must have standbys depose silent authorities: {depositions} in {passed} passing runs"
        );
    }
}

/// The heartbeat's rule can be broken visibly. An authority that acts
/// until its lease runs out, instead of until three heartbeats after the
/// last one the store took, still answers the replicas when a standby,
/// having seen its heartbeat stop, revoked its lease and was elected: two
/// redirectors answer at once. The same seeds pass with the real rule.
#[test]
fn acting_past_the_heartbeats_deadline_is_caught() {
    let cfg = |seed, bug| SimConfig {
        redirectors: 2,
        heartbeat_ms: Some(20),
        connections: 2,
        bytes_per_connection: 16 * 1024,
        inject_coordination: bug,
        ..SimConfig::new(seed)
    };
    for seed in [38, 50, 79, 94] {
        match run_seed(cfg(seed, Some(CoordinationBug::NoBeatDeadline))) {
            Verdict::Violation { what, .. } if what.contains("answer the replicas at once") => {}
            other => panic!(
                "seed {seed}: acting past the heartbeat's deadline went unnoticed: {other:?}"
            ),
        }
        if let Verdict::Violation { at_ms, what } = run_seed(cfg(seed, None)) {
            panic!("seed {seed} with the real rules, at {at_ms} ms: {what}");
        }
    }
}

/// Regression seeds: each puts the group in one hard corner (named at its
/// entry) and every invariant must still hold: no acknowledged byte lost,
/// every stream delivered and echoed exactly, no reset, one writer per
/// view, TSvals never back, the right edge never shrinking, transfers
/// finishing.
#[test]
fn regression_seeds_keep_every_invariant() {
    let passive = |seed| SimConfig {
        passive: true,
        ..SimConfig::new(seed)
    };
    let request_response = |seed, passive| SimConfig {
        passive,
        request: Some(1024),
        bytes_per_connection: 16 * 1024,
        ..SimConfig::new(seed)
    };
    let ordered = |seed| SimConfig {
        ordered: true,
        connections: 6,
        ..SimConfig::new(seed)
    };
    for cfg in [
        // A primary paused past its death commits an entry its backups
        // held; the new primary must log those first, in their order.
        ordered(68),
        // A handover, then 5 ms later a crash of the new primary: the third
        // replica takes over with TSvals above the short-lived primary's.
        SimConfig::new(907),
        // A new primary advertises no window edge beyond what every other
        // member promised.
        SimConfig::new(977),
        // The last live member's process restarts before its death is
        // noticed; named primary by the old view, it resets no client.
        SimConfig::new(4115),
        // A joiner's stale send time leaves the primary no deadline in the
        // past (no busy loop).
        SimConfig::new(7149),
        // A joiner reported ready while the primary still skips it for a new
        // connection: no byte of that connection is acknowledged without it.
        SimConfig::new(8388),
        // A connection the new primary logs again in its view ends on a
        // backup before that entry commits: the backup does not revive it
        // with nothing held.
        passive(16),
        // A demoted primary rewinds its reads and its state blocks together,
        // and is primary again before any full checkpoint.
        passive(98),
        // A demoted primary drops a FIN its application queued in a step the
        // group never held.
        passive(4647),
        // A replica holding out-of-order bytes does not count them against
        // its window: taking over, its right edge is not below one another
        // member advertised, and transfers finish.
        SimConfig::new(55654),
        SimConfig::new(57423),
        SimConfig::new(58070),
        passive(10240),
        // A view change keeps a primary's uncommitted "closed" entry and
        // backups apply committed ones: a backup that missed the client's
        // last packets drops the connection, and no later primary sends from
        // a stale copy.
        SimConfig::new(59522),
        // A joining member takes every connection by snapshot, never from a
        // SYN, so the bytes acknowledged before its first confirmation reach
        // it and the gate never waits on it for ever.
        SimConfig::new(62064),
        // A restarted replica parks client packets until its first view: it
        // opens no copy from a packet in flight, and as a joiner it is sent
        // its snapshot.
        SimConfig::new(23102),
        // The primary reports its backup during a partition and crashes 49 ms
        // later, after the third member was dropped for a pause: no member
        // holds the state, so the run ends as group lost, not a violation.
        SimConfig::new(77916),
        // A backup that missed the client's handshake ACK keeps a half-open
        // copy with no echo of the client's timestamps; taking over after a
        // primary whose floor raised them, its SYN-ACK's TSval does not go
        // back.
        request_response(197, false),
        request_response(106, true),
        // A primary demoted and promoted again with no full checkpoint in
        // between resumes reading where it had read ahead to, and the
        // passive checks count that read.
        request_response(88, true),
        // A joiner admitted and then paused before it saw the view admitting
        // it, declared dead, stops (as a dropped live member does) instead of
        // registering again with stale copies the gate would wait on.
        SimConfig::new(30787),
        request_response(323, true),
        // The client's first SYN reaches only some replicas and is sent
        // again, so replicas disagree on the epoch the connection opened in:
        // every takeover floor counts its margin from the group's first
        // epoch, so no TSval goes back (passive 201087: the connection still
        // half-open at the takeover).
        SimConfig::new(203454),
        passive(201087),
        request_response(301554, false),
        request_response(300557, true),
        // A promoted backup accepts the client's ACKs of the old primary's
        // output.
        request_response(302386, false),
    ] {
        let seed = cfg.seed;
        if let Verdict::Violation { at_ms, what } = run_seed(cfg) {
            panic!("seed {seed} at {at_ms} ms: {what}");
        }
    }
}

/// A known defect, kept as its reproduction: a new primary waits at most
/// 30 ms for every member's first confirmation, then advertises its own
/// window edge. Here a member hears of the view only after 40 ms, the
/// primary hands the role to it, and it advertises its own, smaller edge:
/// the window shrinks by about 13 KB (bytes the client sends beyond it are
/// dropped and sent again; nothing is lost). Run it with `--ignored`.
#[test]
#[ignore = "known defect: the window edge after a member missed the view for 30 ms"]
fn a_member_that_missed_the_view_for_30_ms_does_not_shrink_the_window_as_primary() {
    let cfg = SimConfig {
        passive: true,
        ..SimConfig::new(12859)
    };
    if let Verdict::Violation { at_ms, what } = run_seed(cfg) {
        panic!("passive seed 12859 at {at_ms} ms: {what}");
    }
}

/// Connections whose application shares state (an ordered listener): on
/// every replica the state built from the ordered deliveries is the same,
/// or a prefix of it where a replica lags or crashed, across crashes,
/// pauses, partitions, handovers and lossy links.
#[test]
fn an_application_sharing_state_across_connections_sees_one_order_everywhere() {
    let mut passed = 0;
    for seed in seeds() {
        let cfg = SimConfig {
            ordered: true,
            connections: 6,
            ..SimConfig::new(seed)
        };
        match run_seed(cfg) {
            Verdict::Pass {
                gate_deliveries, ..
            } => {
                passed += 1;
                assert_eq!(
                    gate_deliveries, 0,
                    "seed {seed}: an ordered connection took bytes ahead of the log"
                );
            }
            Verdict::GroupLost { .. } => {}
            Verdict::Violation { at_ms, what } => {
                panic!("seed {seed} at {at_ms} ms: {what}\nrepro: cargo run -p hydra-sim --bin hydra-sim -- --ordered --trace {seed}")
            }
        }
    }
    assert!(passed > 0, "no seed ran to the end");
}

/// The check above can fail: an application that reads past each
/// delivery (whatever its replica happens to have received) builds a
/// different state on different replicas, and some seed shows it.
#[test]
fn an_application_reading_past_its_deliveries_is_caught() {
    let caught = seeds().into_iter().any(|seed| {
        let cfg = SimConfig {
            ordered: true,
            inject_overread: true,
            connections: 6,
            ..SimConfig::new(seed)
        };
        matches!(run_seed(cfg), Verdict::Violation { what, .. } if what.contains("shared state diverged") || what.contains("different digests"))
    });
    assert!(
        caught,
        "the planted over-reading application went unnoticed"
    );
}
