//! The run's report as tables on stdout, with ratios to kernel TCP and to
//! our standalone stack.

use crate::report::{self, Report};

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
        println!(
            "{:<9} {:<9} {:>8} {:>9.2} {:>9} {:>9} {:>11.2}",
            t.config,
            t.direction,
            t.msg,
            t.gbit_s,
            report::ratio(t.gbit_s, find("kernel", &t.direction, t.msg)),
            report::ratio(t.gbit_s, find("hydra", &t.direction, t.msg)),
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
    for (f, what) in [
        (&r.failover, "primary crashes"),
        (&r.handover, "handovers (SIGTERM)"),
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
