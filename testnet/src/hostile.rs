//! The hostile-input probe (`testnet/hostile/probe.py`, scapy): crafted TCP
//! segments sent to an echo listener, and what came back, case by case. A
//! test runs it against Hydra and against a Linux kernel listener on the
//! same path and compares the outcomes.
//!
//! The probe speaks from an address no host owns, so no kernel on its side
//! answers the target's segments with resets of its own: the router before
//! the targets gets a static neighbour entry sending that address to the
//! probe's link, where the probe sniffs the answers.

use std::collections::BTreeMap;
use std::io;
use std::process::Command;

use crate::netns::{run, Topology};

/// The probe script.
pub const PROBE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/hostile/probe.py");

/// Debian's interpreter, where `python3-scapy` installs (a `python3` earlier
/// on the PATH may be another one).
pub const PYTHON: &str = "/usr/bin/python3";

/// What each case observed, by case name.
pub type Outcomes = BTreeMap<String, String>;

/// MAC address of `link` in `ns`.
pub fn mac(topo: &Topology, ns: &str, link: &str) -> io::Result<String> {
    let out = run(topo
        .command(ns, "cat")
        .arg(format!("/sys/class/net/{link}/address")))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Make `router_ns` deliver packets for `spoof` to the probe's link
/// (`probe_ns`/`probe_link`), reached from the router over `router_link`.
pub fn route_spoofed_source(
    topo: &Topology,
    router_ns: &str,
    router_link: &str,
    probe_ns: &str,
    probe_link: &str,
    spoof: &str,
) -> io::Result<()> {
    let lladdr = mac(topo, probe_ns, probe_link)?;
    topo.ip(
        router_ns,
        &[
            "neigh",
            "replace",
            spoof,
            "lladdr",
            &lladdr,
            "dev",
            router_link,
        ],
    )
}

/// Run the probe from `ns` against `target:port`, speaking from `src` and
/// sniffing on `iface`; `only` limits it to some cases.
pub fn probe(
    topo: &Topology,
    ns: &str,
    iface: &str,
    target: &str,
    port: u16,
    src: &str,
    only: Option<&str>,
) -> io::Result<Outcomes> {
    let mut cmd: Command = topo.command(ns, PYTHON);
    cmd.arg(PROBE)
        .args(["--target", target, "--port", &port.to_string()])
        .args(["--src", src, "--iface", iface]);
    if let Some(only) = only {
        cmd.args(["--only", only]);
    }
    let out = run(&mut cmd)?;
    serde_json::from_slice(&out.stdout).map_err(|e| {
        io::Error::other(format!(
            "probe output is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        ))
    })
}

/// A Linux kernel echo listener (Python sockets) on `addr:port` in `ns`,
/// stopped with the topology.
pub fn spawn_kernel_echo(topo: &mut Topology, ns: &str, addr: &str, port: u16) -> io::Result<()> {
    let script = format!(
        "import socket, threading\n\
         s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('{addr}', {port})); s.listen(4096)\n\
         def serve(c):\n\
         \x20   try:\n\
         \x20       while True:\n\
         \x20           d = c.recv(65536)\n\
         \x20           if not d: break\n\
         \x20           c.sendall(d)\n\
         \x20   except OSError:\n\
         \x20       pass  # the probe resets its connections\n\
         \x20   c.close()\n\
         while True:\n\
         \x20   c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()\n"
    );
    let mut cmd = topo.command(ns, PYTHON);
    cmd.args(["-c", &script]);
    topo.spawn("kernel-echo", cmd)?;
    Ok(())
}
