//! Hostile input, compared with Linux: the same crafted segments (RFC 5961
//! resets and SYNs, PAWS, out-of-window data and ACKs, overlapping,
//! retransmitted and reordered segments, a zero window, bad checksums, bad
//! IP header lengths, truncated options, fragments, a blind spoofed
//! handshake, a SYN flood) go to `hydra-replica standalone` and to a kernel
//! echo listener on the same path, and what a client observes must be the
//! same, except for the deliberate differences listed here and in
//! `docs/security.md`.
//!
//! ```text
//! client ns --veth-- server ns (router; kernel echo on 198.18.21.1:7)
//!                      --TUN-- hydra-replica standalone (198.18.20.1:7)
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use testnet::hostile::{self, Outcomes};
use testnet::netns::{privileged, Topology};

const HYDRA: &str = "198.18.20.1";
const KERNEL: &str = "198.18.21.1";
/// The probe's source: no host owns it.
const SPOOF: &str = "198.18.10.50";

/// Cases where Hydra answers differently from Linux on purpose: the case,
/// what Hydra does, and why.
const DELIBERATE: &[(&str, &str, &str)] = &[
    (
        "truncated_options",
        "answers -",
        "a segment whose options run past its header is dropped whole (RFC 1122 \
         4.2.2.5 leaves the handling of an illegal option length open); Linux \
         stops parsing options there and takes the segment",
    ),
    (
        "fragmented_syn",
        "answers -",
        "IP fragments are refused and counted (a TCP sender that honours path \
         MTU discovery never fragments); Linux reassembles",
    ),
];

struct Setup {
    topo: Topology,
    client: String,
    client_link: String,
}

fn setup(tag: &str) -> Setup {
    let mut topo = Topology::new(tag);
    let client = topo.namespace("c").unwrap();
    let server = topo.namespace("s").unwrap();
    let (client_link, server_link) = topo
        .veth(
            (&client, "198.18.10.1/24"),
            (&server, "198.18.10.2/24"),
            1500,
        )
        .unwrap();
    topo.router(&server).unwrap();
    for net in ["198.18.20.0/24", "198.18.21.0/24"] {
        topo.ip(&client, &["route", "add", net, "via", "198.18.10.2"])
            .unwrap();
    }
    hostile::route_spoofed_source(&topo, &server, &server_link, &client, &client_link, SPOOF)
        .unwrap();
    topo.ip(
        &server,
        &["addr", "add", &format!("{KERNEL}/32"), "dev", "lo"],
    )
    .unwrap();
    hostile::spawn_kernel_echo(&mut topo, &server, KERNEL, 7).unwrap();

    let tun = topo.name("t");
    let mut cmd = topo.command(&server, env!("CARGO_BIN_EXE_hydra-replica"));
    cmd.args(["standalone", "--tun", &tun, "--address", HYDRA]);
    cmd.args(["--app", "echo:7", "--admin", "198.18.10.2:9100"]);
    topo.spawn("replica", cmd).unwrap();
    topo.wait_link(&server, &tun, Duration::from_secs(10))
        .unwrap();
    topo.ip(
        &server,
        &["route", "add", &format!("{HYDRA}/32"), "dev", &tun],
    )
    .unwrap();
    Setup {
        topo,
        client,
        client_link,
    }
}

fn probe(s: &Setup, target: &str) -> Outcomes {
    hostile::probe(&s.topo, &s.client, &s.client_link, target, 7, SPOOF, None)
        .unwrap_or_else(|e| panic!("probe against {target}: {e}"))
}

#[test]
fn hostile_segments_get_the_answers_linux_gives() {
    if !privileged("hostile_segments_get_the_answers_linux_gives") {
        return;
    }
    let mut s = setup("hos");
    let kernel = probe(&s, KERNEL);
    let hydra = probe(&s, HYDRA);
    assert!(
        s.topo.alive("replica"),
        "hydra-replica died under the probe"
    );
    let deliberate: BTreeMap<&str, &str> = DELIBERATE.iter().map(|(c, o, _)| (*c, *o)).collect();
    let mut wrong = Vec::new();
    for (case, theirs) in &kernel {
        assert!(
            !theirs.starts_with("probe error"),
            "{case}: the probe failed against Linux: {theirs}"
        );
        let ours = hydra.get(case).map(String::as_str).unwrap_or("missing");
        let want = deliberate.get(case.as_str()).copied().unwrap_or(theirs);
        if ours != want {
            wrong.push(format!(
                "{case}: hydra `{ours}`, expected `{want}` (linux `{theirs}`)"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "answers that differ from Linux:\n{}\nall of Linux's: {kernel:#?}",
        wrong.join("\n")
    );
    // The cases must have probed something: the kernel handled every one.
    assert_eq!(kernel.len(), hydra.len());
    assert!(kernel.len() >= 18, "the probe ran {} cases", kernel.len());
}
