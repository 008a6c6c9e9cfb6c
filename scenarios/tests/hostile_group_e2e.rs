//! Hostile input through the redirector to a group of 3: the probe's
//! crafted segments (see `testnet/hostile/probe.py`) reach every replica as
//! copies. No replica may crash, no client input may cause a view change,
//! the group must answer as a single stack would, and afterwards the group
//! must still carry a connection across a primary crash (a replica whose
//! state had diverged would break it).

mod common;

use std::time::Duration;

use common::{cluster, echo_verdict, serial};
use scenarios::clients;
use scenarios::cluster::VIP;
use testnet::hostile;
use testnet::netns::privileged;

/// The probe's source: no host owns it.
const SPOOF: &str = "198.18.0.50";

/// What a client must observe from the group: the answers Linux gives
/// (checked case by case against Linux by the standalone hostile test),
/// with the same deliberate differences, and one of a group's own: a
/// segment acknowledging output nobody sent is refused by the primary with
/// an ACK (as by Linux), but a backup cannot tell it from an ACK of output
/// the primary sent and its own application has not written yet, so it
/// takes the segment's bytes, and the primary then fetches them from it.
/// They are the client's own bytes at their place in its stream: the
/// stream stays whole (see `docs/security.md`).
const EXPECTED: &[(&str, &str)] = &[
    ("syn", "SYN-ACK acking the SYN, with MSS"),
    ("bad_checksum", "answers -"),
    ("bad_ip_header_length", "answers -"),
    ("truncated_options", "answers -"),
    ("fragmented_syn", "answers -"),
    ("rst_out_of_window", "answers -, alive True"),
    ("rst_in_window_not_exact", "challenge ACK True, alive True"),
    ("rst_exact", "after: R"),
    ("syn_on_established", "challenge ACK True, alive True"),
    (
        "data_beyond_window",
        "dup ACK True, echoed False, alive True",
    ),
    ("ack_of_unsent_data", "answers A, echoed True, alive True"),
    (
        "paws_old_timestamp",
        "dup ACK True, echoed False, alive True",
    ),
    ("overlapping_segments", "echo b'abcdefghi'"),
    ("retransmitted_segment", "echo b'hello'"),
    ("out_of_order", "SACK True, echo b'helloworld'"),
    (
        "zero_window",
        "sent beyond a zero window False, echo after opening True",
    ),
    ("spoofed_handshake", "echoed False"),
    ("syn_flood", "connection after the flood works True"),
];

#[test]
fn hostile_segments_through_the_redirector_cause_no_view_change() {
    if !privileged("hostile_segments_through_the_redirector_cause_no_view_change") {
        return;
    }
    let _serial = serial();
    let mut c = cluster("hsg", 3);
    hostile::route_spoofed_source(
        &c.topo,
        &c.redirector_ns,
        &c.redirector_client_link,
        &c.client_ns,
        &c.client_link,
        SPOOF,
    )
    .unwrap();
    let (epoch, primary, live) = c.view().unwrap();
    let got = hostile::probe(
        &c.topo,
        &c.client_ns,
        &c.client_link,
        &VIP.to_string(),
        7,
        SPOOF,
        None,
    )
    .unwrap();
    let mut wrong = Vec::new();
    for (case, want) in EXPECTED {
        let ours = got.get(*case).map(String::as_str).unwrap_or("missing");
        if ours != *want {
            wrong.push(format!("{case}: group `{ours}`, expected `{want}`"));
        }
    }
    assert!(wrong.is_empty(), "group answers:\n{}", wrong.join("\n"));
    for member in 1..=3u8 {
        assert!(
            c.member_running(member),
            "replica {member} died under hostile input; logs in {}",
            c.log_dir().display()
        );
    }
    assert_eq!(
        c.view().unwrap(),
        (epoch, primary, live),
        "client input changed the view; logs in {}",
        c.log_dir().display()
    );

    // The replicas still agree: a stream survives the primary's crash.
    let stream = clients::start_echo(&c, 4, 2 << 20, 4096, Duration::from_millis(5)).unwrap();
    std::thread::sleep(Duration::from_millis(800));
    c.kill_member(primary.expect("a primary")).unwrap();
    echo_verdict(
        &clients::finish_echo(stream).unwrap(),
        "echo after hostile input",
    );
}
