//! The whole-group simulator on a fixed seed set (the long sweep is
//! `hydra-sim --seeds N`), and proof that its checker catches a known bug.

use sim::groupsim::{run_seed, ClientKind, SimConfig, Verdict};

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
    let (mut failovers, mut handovers, mut rejoins) = (0, 0, 0);
    for seed in seeds() {
        match run_seed(SimConfig::new(seed)) {
            Verdict::Pass {
                failovers: f,
                handovers: h,
                rejoins: j,
                ..
            } => {
                failovers += f;
                handovers += h;
                rejoins += j;
            }
            Verdict::GroupLost { .. } => {}
            Verdict::Violation { at_ms, what } => {
                panic!("seed {seed} at {at_ms} ms: {what}\nrepro: cargo run -p hydra-sim --bin hydra-sim -- --trace {seed}")
            }
        }
    }
    assert!(failovers > 0, "the fixed seeds must exercise failovers");
    if seeds().len() > 1 {
        assert!(handovers > 0, "the fixed seeds must exercise handovers");
        assert!(rejoins > 0, "the fixed seeds must exercise rejoins");
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
}

/// Seeds the long sweep once failed on, kept as regressions. 907: a
/// handover then, 5 ms later, a crash of the new primary; the third
/// replica took over with a timestamp below the short-lived primary's.
/// Passive 16: a connection the new primary logged again in its view
/// ended on a backup before that entry committed, which then revived it
/// with nothing held. 977: a new primary advertised a window another
/// member had not promised. 4115: the last live member's process restarted
/// before its death was noticed and, named primary by the old view, reset
/// the clients. Passive 4647: a demoted primary kept a FIN its application
/// queued in a step the group never held. 7149: a joiner's stale send time
/// left the primary a deadline in the past (a busy loop). 8388: a joiner
/// reported ready was admitted while the primary still skipped it for a
/// new connection, whose bytes it then acknowledged without it. Passive
/// 98: a demoted primary rewound its reads but kept its state blocks, and
/// was primary again before any full checkpoint came. 57423, 58070,
/// passive 12859: a replica holding out-of-order bytes counted them
/// against its window, so its right edge sat below the one another
/// member had advertised, and it shrank the window when it took over;
/// 55654 and passive 10240 (no progress for 120 s) came from the same
/// cause (with the fix alone they pass on the code that failed). 59522: a
/// view change dropped a primary's uncommitted "closed" entry and backups
/// ignored committed ones, so a backup that missed the client's last
/// packets kept the connection for ever; the next primary logged it
/// again and a later one sent from its stale state (the TSval went back).
/// 62064: a joining member opened a connection from its SYN and missed
/// copies the group acknowledged before its first confirmation, which the
/// primary's application had read: no repair could bring them, and the
/// gate waited for it for ever (joiners now take every connection by
/// snapshot). 23102: a restarted replica, before its first view, opened
/// a copy of a connection from a client packet still in flight (it parks
/// everything until then), and as a joiner was never sent its snapshot.
/// 77916 was the checker's: the primary reported its backup during a
/// partition and crashed 49 ms later, after the third member had been
/// dropped for a pause; no member held the state any more, but the
/// client's timeout was called a violation before the group-lost test.
/// Request/response 197 and passive 106: a backup missed the client's
/// handshake ACK, so its copy stayed half-open with no echo of our
/// timestamps; taking over (after a primary whose floor had raised them)
/// it resent the SYN-ACK on the bare clock and the TSval went back. Passive
/// request/response 88 was the checker's: a primary demoted and promoted
/// again with no full checkpoint in between resumes reading where it had
/// read ahead to, which the checker did not count. 30787 and passive
/// request/response 323: a joiner, admitted, paused before it saw the
/// view that admitted it; declared dead, it registered again as the same
/// process and was taken back as a joiner with the stale copies it held,
/// which could never confirm the bytes acknowledged without it: the gate
/// waited for it for ever (now it stops, as a dropped live member does).
/// 203454 and passive 201087: the client's first SYN reached only some
/// replicas and it sent it again later, so replicas disagreed on the epoch
/// the connection opened in, from which the takeover margin counts; a
/// takeover with no echo to go by (passive 201087: the connection still
/// half-open) came out below a SYN-ACK an earlier primary had sent from its
/// older copy; request/response 301554 and passive 300557, the same with
/// one floor counted from the group's first epoch and the next from the
/// connection's. Every takeover floor now counts its margin from the
/// group's first epoch.
#[test]
fn seeds_that_once_failed_the_sweep() {
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
        SimConfig::new(907),
        SimConfig::new(977),
        SimConfig::new(4115),
        SimConfig::new(7149),
        SimConfig::new(8388),
        passive(16),
        passive(98),
        passive(4647),
        SimConfig::new(55654),
        SimConfig::new(57423),
        SimConfig::new(58070),
        SimConfig::new(59522),
        SimConfig::new(62064),
        SimConfig::new(23102),
        SimConfig::new(77916),
        passive(10240),
        passive(12859),
        request_response(197, false),
        request_response(106, true),
        request_response(88, true),
        SimConfig::new(30787),
        request_response(323, true),
        SimConfig::new(203454),
        passive(201087),
        request_response(301554, false),
        request_response(300557, true),
        request_response(302386, false),
    ] {
        let seed = cfg.seed;
        if let Verdict::Violation { at_ms, what } = run_seed(cfg) {
            panic!("seed {seed} at {at_ms} ms: {what}");
        }
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
            Verdict::Pass { .. } => passed += 1,
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
