//! The run's report as tables on stdout, with ratios to kernel TCP and to
//! our standalone stack (of the same address family), and each IPv6
//! figure against the IPv4 one of the same run.

use crate::report::{self, Report};
use crate::setups::{ipv4_counterpart, V6_SUFFIX};

pub fn print_table(r: &Report) {
    let find = |config: &str, dir: &str, msg: usize| {
        r.throughput
            .iter()
            .find(|t| t.config == config && t.direction == dir && t.msg == msg && t.error.is_none())
            .map(|t| t.gbit_s)
    };
    println!("\nThroughput (Gbit/s), ratios to kernel TCP and to our standalone stack, same run:");
    println!(
        "{:<9} {:<9} {:>8} {:>9} {:>9} {:>9} {:>11}",
        "config", "dir", "msg", "Gbit/s", "x kernel", "x hydra", "CPU s/GiB"
    );
    for t in &r.throughput {
        if let Some(e) = &t.error {
            println!("{:<9} {:<9} {:>8} error: {e}", t.config, t.direction, t.msg);
            continue;
        }
        // References of the row's own family: kernel-v6 for an IPv6 row.
        let family = if ipv4_counterpart(&t.config).is_some() {
            V6_SUFFIX
        } else {
            ""
        };
        println!(
            "{:<9} {:<9} {:>8} {:>9.2} {:>9} {:>9} {:>11.2}",
            t.config,
            t.direction,
            t.msg,
            t.gbit_s,
            report::ratio(
                t.gbit_s,
                find(&format!("kernel{family}"), &t.direction, t.msg)
            ),
            report::ratio(
                t.gbit_s,
                find(&format!("hydra{family}"), &t.direction, t.msg)
            ),
            t.cpu_s_per_gib
        );
    }
    println!("\nLatency (request/response round trip, us; client and servers share the cores):");
    println!(
        "{:<9} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "config", "msg", "p50", "p99", "p99.9", "max"
    );
    for l in &r.latency {
        match &l.error {
            Some(e) => println!("{:<9} {:>8} error: {e}", l.config, l.msg),
            None => println!(
                "{:<9} {:>8} {:>8} {:>8} {:>8} {:>8}",
                l.config, l.msg, l.p50_us, l.p99_us, l.p999_us, l.max_us
            ),
        }
    }
    print_ipv6_ratios(r);
    for (f, what) in [
        (&r.failover, "primary crashes"),
        (&r.handover, "handovers (SIGTERM)"),
        (&r.lost_host, "lost primary hosts (SIGSTOP, links down)"),
    ] {
        if f.crashes == 0 && f.errors.is_empty() {
            continue;
        }
        println!(
            "\nStall over {} {what} (ms): p50 {:.1}  p99 {:.1}  max {:.1}",
            f.crashes, f.p50_ms, f.p99_ms, f.max_ms
        );
        for e in &f.errors {
            println!("  error: {e}");
        }
    }
    if !r.rejoin.rejoin_ms.is_empty() || !r.rejoin.errors.is_empty() {
        let j = &r.rejoin;
        let fmt = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:.0}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        println!(
            "\nRejoin with {} connections held: process start to live member (ms): {}; slowest 64 B round trip meanwhile (ms): {}",
            j.connections,
            fmt(&j.rejoin_ms),
            fmt(&j.stall_ms)
        );
        for e in &j.errors {
            println!("  error: {e}");
        }
    }
    if r.failover.crashes > 0 && r.handover.crashes > 0 && r.failover.p50_ms > 0.0 {
        println!(
            "Handover vs crash stall: p50 {:.2}x, max {:.2}x",
            r.handover.p50_ms / r.failover.p50_ms,
            r.handover.max_ms / r.failover.max_ms.max(1e-9)
        );
    }
    if r.failover.crashes > 0 && r.lost_host.crashes > 0 && r.failover.p50_ms > 0.0 {
        println!(
            "Lost host vs crash stall: p50 {:.2}x, max {:.2}x",
            r.lost_host.p50_ms / r.failover.p50_ms,
            r.lost_host.max_ms / r.failover.max_ms.max(1e-9)
        );
    }
    for s in &r.scale {
        match &s.error {
            Some(e) => println!("\nScale {}: error: {e}", s.config),
            None => println!(
                "\nScale {}: {} connections held, {:.0} setups/s, {:.0} bytes per connection",
                s.config, s.connections, s.setup_per_s, s.bytes_per_connection
            ),
        }
    }
}

/// Every IPv6 figure of the run against the IPv4 one of the same
/// configuration, direction and message size: throughput (above 1 is
/// faster over IPv6) and round trip p50 and p99 (above 1 is slower).
fn print_ipv6_ratios(r: &Report) {
    let v6_throughput: Vec<_> = r
        .throughput
        .iter()
        .filter(|t| t.error.is_none())
        .filter_map(|t| Some((t, ipv4_counterpart(&t.config)?)))
        .collect();
    let v6_latency: Vec<_> = r
        .latency
        .iter()
        .filter(|l| l.error.is_none())
        .filter_map(|l| Some((l, ipv4_counterpart(&l.config)?)))
        .collect();
    if v6_throughput.is_empty() && v6_latency.is_empty() {
        return;
    }
    println!("\nIPv6 against IPv4, same run (IPv6 / IPv4; throughput: above 1 is faster, round trip: above 1 is slower):");
    println!(
        "{:<9} {:<16} {:>8} {:>10} {:>10} {:>8}",
        "config", "measure", "msg", "IPv6", "IPv4", "ratio"
    );
    for (t, v4_config) in v6_throughput {
        let v4 = r
            .throughput
            .iter()
            .find(|b| {
                b.config == v4_config
                    && b.direction == t.direction
                    && b.msg == t.msg
                    && b.error.is_none()
            })
            .map(|b| b.gbit_s);
        println!(
            "{:<9} {:<16} {:>8} {:>10.2} {:>10} {:>8}",
            v4_config,
            format!("{} Gbit/s", t.direction),
            t.msg,
            t.gbit_s,
            v4.map_or("-".into(), |g| format!("{g:.2}")),
            report::ratio(t.gbit_s, v4)
        );
    }
    for (l, v4_config) in v6_latency {
        let v4 = r
            .latency
            .iter()
            .find(|b| b.config == v4_config && b.msg == l.msg && b.error.is_none());
        for (what, v6_us, v4_us) in [
            ("rtt p50 us", l.p50_us, v4.map(|b| b.p50_us)),
            ("rtt p99 us", l.p99_us, v4.map(|b| b.p99_us)),
        ] {
            println!(
                "{:<9} {:<16} {:>8} {:>10} {:>10} {:>8}",
                v4_config,
                what,
                l.msg,
                v6_us,
                v4_us.map_or("-".into(), |u| u.to_string()),
                report::ratio(v6_us as f64, v4_us.map(|u| u as f64))
            );
        }
    }
}
