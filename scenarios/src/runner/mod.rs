//! Plays scenario files on the real binaries and judges them.

use std::net::IpAddr;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;

use crate::clients;
use crate::cluster::{Binaries, Cluster, ClusterSpec, VIP, VIP6};
use crate::spec::{Action, Family, Scenario, Workload};

mod redirectors;

/// What one scenario did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Outcome {
    pub name: String,
    pub passed: bool,
    pub failures: Vec<String>,
    /// Longest client-observed gap over the echo streams (ms).
    pub stall_ms: Option<f64>,
    /// Download or upload throughput over the whole transfer, the lowest
    /// of them (MiB/s).
    pub mib_s: Option<f64>,
    /// wrk's request rate, when a wrk workload ran.
    pub requests_per_s: Option<f64>,
    /// Longest time from a redirector fault until another redirector
    /// acted (ms).
    pub takeover_ms: Option<f64>,
    pub resets: u64,
    pub seconds: f64,
    /// What the fault schedule did, with times.
    pub events: Vec<String>,
}

enum Running {
    Download {
        child: Child,
        original: std::path::PathBuf,
        fetched: std::path::PathBuf,
        size: usize,
        started: Instant,
    },
    Upload {
        child: Child,
        size: usize,
        sha256: String,
        started: Instant,
    },
    Wrk(Child),
    Nc {
        child: Child,
        sent: std::path::PathBuf,
        got: std::path::PathBuf,
        size: usize,
    },
    Echo(Child),
    Short(Child),
    Hog(Vec<std::thread::JoinHandle<()>>),
}

pub fn play(s: &Scenario, bins: &Binaries, index: usize) -> Outcome {
    let started = Instant::now();
    let mut out = Outcome {
        name: s.name.clone(),
        ..Outcome::default()
    };
    if let Err(e) = play_inner(s, bins, index, &mut out) {
        out.failures.push(format!("{e:#}"));
    }
    out.seconds = started.elapsed().as_secs_f64();
    out.passed = out.failures.is_empty();
    out
}

fn play_inner(
    s: &Scenario,
    bins: &Binaries,
    index: usize,
    out: &mut Outcome,
) -> anyhow::Result<()> {
    let t = &s.topology;
    let spec = ClusterSpec {
        replicas: t.replicas,
        heartbeat_ms: t.heartbeat_ms,
        failure_timeout_ms: t.failure_timeout_ms,
        lease_ms: t.failure_timeout_ms * 6 / 10,
        relays: t.relays,
        ipv6: t.ipv6,
        redirectors: t.redirectors,
        etcd: t.redirectors > 1,
        etcd_members: t.etcd_members,
        ..ClusterSpec::default()
    };
    let _ = index;
    if spec.etcd {
        redirectors::tools_present()?;
    }
    let mut c = Cluster::start("sc", spec, bins.clone())?;
    if let Some(line) = &t.link {
        for i in 0..t.replicas {
            c.set_link(i, line)?;
        }
    }
    let first_epoch = match s.checks.max_view_changes {
        Some(_) => c.view()?.0,
        None => 0,
    };
    let mut running = Vec::new();
    for (i, w) in s.workload.iter().enumerate() {
        running.push(start(&c, i, w)?);
    }
    let t0 = Instant::now();
    let mut last_target = None;
    let mut coordination = redirectors::Faults::start(&c);
    for f in &s.fault {
        std::thread::sleep(Duration::from_millis(f.at_ms).saturating_sub(t0.elapsed()));
        if !f.action.strikes_a_member() {
            coordination.apply(&mut c, f, t0, out)?;
            continue;
        }
        let target = resolve(&c, f.target.as_deref().unwrap_or_default(), last_target)?;
        if f.action == Action::Kill && s.checks.killed_holding_out_of_order {
            let held = wait_out_of_order(&c, target)?;
            out.events
                .push(format!("member {target} held {held} bytes out of order"));
            if held == 0 {
                out.failures.push(format!(
                    "member {target} held no out-of-order data within 2 s (the scenario's premise)"
                ));
            }
        }
        let at = t0.elapsed().as_millis();
        match f.action {
            Action::Kill => c.kill_member(target)?,
            Action::Stop => c.signal_member(target, libc::SIGSTOP)?,
            Action::Cont => c.signal_member(target, libc::SIGCONT)?,
            Action::LoseHost => c.lose_member_host(target)?,
            Action::WaitView => wait_in_view(&c, target, false)?,
            Action::Term => c.signal_member(target, libc::SIGTERM)?,
            Action::Handover => {
                let answer = c.replica_action(target, "/handover")?;
                anyhow::ensure!(answer.contains("started"), "handover refused: {answer}");
            }
            Action::Restart => c.start_replica(usize::from(target) - 1)?,
            Action::WaitLive => wait_in_view(&c, target, true)?,
            Action::Link => c.set_link(
                usize::from(target) - 1,
                f.link.as_deref().unwrap_or_default(),
            )?,
            Action::RestartRedirector
            | Action::KillActingRedirector
            | Action::PartitionActingRedirector
            | Action::KillEtcdMember => bail!("{:?} strikes no member", f.action),
        }
        out.events
            .push(format!("{at} ms: {:?} member {target}", f.action));
        last_target = Some(target);
    }
    for r in running {
        judge(r, s, out)?;
    }
    coordination.finish(&c, out)?;
    if let Some(max) = s.checks.max_view_changes {
        let changes = c.view()?.0.saturating_sub(first_epoch);
        out.events.push(format!("{changes} view changes"));
        if changes > max {
            out.failures.push(format!(
                "{changes} view changes, over the {max} allowed (a failover nothing caused)"
            ));
        }
    }
    if s.checks.paused_member_stops {
        let old = last_target.context("paused_member_stops needs a fault target")?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while c.member_running(old) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if c.member_running(old) {
            out.failures.push(format!(
                "member {old} kept running after the group moved on"
            ));
        }
    }
    if let (Some(max), Some(stall)) = (s.checks.max_stall_ms, out.stall_ms) {
        if stall > max {
            out.failures
                .push(format!("stall {stall:.0} ms over the {max:.0} ms allowed"));
        }
    }
    if let (Some(max), Some(took)) = (s.checks.max_takeover_ms, out.takeover_ms) {
        if took > max {
            out.failures.push(format!(
                "a redirector took over {took:.0} ms after the fault, over the {max:.0} ms allowed"
            ));
        }
    }
    if let (Some(min), Some(rate)) = (s.checks.min_mib_s, out.mib_s) {
        if rate < min {
            out.failures.push(format!(
                "download {rate:.1} MiB/s under the {min:.1} required"
            ));
        }
    }
    if !out.failures.is_empty() {
        out.failures
            .push(format!("logs: {}", c.log_dir().display()));
        // Keep the logs of a failed run.
        std::env::set_var("HYDRA_KEEP_LOGS", "1");
    }
    Ok(())
}

fn start(c: &Cluster, i: usize, w: &Workload) -> anyhow::Result<Running> {
    Ok(match w {
        Workload::Download { size_mib, rate } => {
            let name = format!("w{i}.bin");
            let original = c.www.join(&name);
            clients::write_random_file(&original, size_mib << 20)?;
            let fetched = c.log_dir().join(format!("got{i}.bin"));
            let child = clients::start_download(c, &name, &fetched, rate)?;
            Running::Download {
                child,
                original,
                fetched,
                size: size_mib << 20,
                started: Instant::now(),
            }
        }
        Workload::Upload { size_mib, rate } => {
            let src = c.log_dir().join(format!("up{i}.bin"));
            clients::write_random_file(&src, size_mib << 20)?;
            Running::Upload {
                child: clients::start_upload(c, &src, rate)?,
                size: size_mib << 20,
                sha256: clients::sha256(&src)?,
                started: Instant::now(),
            }
        }
        Workload::Nc { size_mib, family } => {
            let vip = client_address(c, *family)?;
            let sent = c.log_dir().join(format!("nc{i}.bin"));
            let got = c.log_dir().join(format!("nc{i}.back"));
            clients::write_random_file(&sent, size_mib << 20)?;
            // -N: shut the socket down at the end of the file; nc exits
            // when the echo app closes after echoing everything.
            let script = format!("nc -N {vip} 7 < '{}' > '{}'", sent.display(), got.display());
            let mut cmd = c.client("sh");
            cmd.args(["-c", &script])
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            Running::Nc {
                child: cmd.spawn().context("starting nc")?,
                sent,
                got,
                size: size_mib << 20,
            }
        }
        Workload::Wrk {
            connections,
            seconds,
            size_kib,
        } => {
            let name = format!("w{i}.bin");
            clients::write_random_file(&c.www.join(&name), size_kib << 10)?;
            Running::Wrk(clients::start_wrk(c, &name, *connections, *seconds)?)
        }
        Workload::Echo {
            connections,
            size,
            chunk,
            pace_ms,
            family,
        } => Running::Echo(clients::start_echo_to(
            c,
            client_address(c, *family)?,
            7,
            *connections,
            *size,
            *chunk,
            Duration::from_secs_f64(pace_ms / 1000.0),
        )?),
        Workload::CpuHog { threads, seconds } => {
            let until = Instant::now() + Duration::from_secs(*seconds);
            let spin = move || {
                let mut x = 0u64;
                while Instant::now() < until {
                    for _ in 0..10_000 {
                        x = std::hint::black_box(
                            x.wrapping_mul(6364136223846793005).wrapping_add(1),
                        );
                    }
                }
            };
            Running::Hog((0..*threads).map(|_| std::thread::spawn(spin)).collect())
        }
        Workload::Short {
            count,
            size,
            gap_ms,
        } => {
            let script = format!(
                "for i in $(seq 1 {count}); do python3 {} {vip} 7 --size {size} --seed $i >/dev/null || {{ echo \"connection $i failed\" >&2; exit 1; }}; sleep {}; done",
                clients::echo_script().display(),
                *gap_ms as f64 / 1000.0,
                vip = c.vip(),
            );
            let mut cmd = c.client("sh");
            cmd.args(["-c", &script])
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            Running::Short(cmd.spawn().context("starting short connections")?)
        }
    })
}

/// Wait for a transfer's client and note its rate; `None` (the failure
/// noted) if it failed.
fn wait_transfer(
    child: Child,
    what: &str,
    size: usize,
    started: Instant,
    out: &mut Outcome,
) -> anyhow::Result<Option<std::process::Output>> {
    let o = child.wait_with_output()?;
    let rate = size as f64 / (1 << 20) as f64 / started.elapsed().as_secs_f64().max(1e-6);
    out.mib_s = Some(out.mib_s.map_or(rate, |r| r.min(rate)));
    if !o.status.success() {
        out.failures.push(format!(
            "{what} failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ));
        return Ok(None);
    }
    Ok(Some(o))
}

fn judge(r: Running, s: &Scenario, out: &mut Outcome) -> anyhow::Result<()> {
    match r {
        Running::Download {
            child,
            original,
            fetched,
            size,
            started,
        } => {
            if wait_transfer(child, "curl", size, started, out)?.is_none() {
                return Ok(());
            }
            let got = std::fs::metadata(&fetched).map(|m| m.len()).unwrap_or(0);
            if s.checks.byte_exact
                && (got != size as u64 || clients::sha256(&fetched)? != clients::sha256(&original)?)
            {
                out.failures
                    .push(format!("download differs ({got} of {size} bytes)"));
            }
        }
        Running::Upload {
            child,
            size,
            sha256,
            started,
        } => {
            let Some(o) = wait_transfer(child, "curl upload", size, started, out)? else {
                return Ok(());
            };
            let answer = String::from_utf8_lossy(&o.stdout);
            let expected = format!("{sha256} {size}");
            if s.checks.byte_exact && answer.trim() != expected {
                out.failures.push(format!(
                    "upload differs: the app read `{}`, curl sent `{expected}`",
                    answer.trim()
                ));
            }
        }
        Running::Wrk(child) => {
            let o = child.wait_with_output()?;
            let text = String::from_utf8_lossy(&o.stdout);
            let Some(r) = clients::parse_wrk(&text).filter(|_| o.status.success()) else {
                out.failures.push(format!(
                    "wrk failed: {} {}",
                    text.trim(),
                    String::from_utf8_lossy(&o.stderr).trim()
                ));
                return Ok(());
            };
            out.requests_per_s = Some(r.requests_per_s);
            out.resets += r.socket_errors;
            if let Some(p99) = r.p99_ms {
                out.events
                    .push(format!("wrk: {} requests, p99 {p99:.1} ms", r.requests));
            }
            if r.requests == 0 {
                out.failures.push("wrk completed no request".into());
            }
            if s.checks.no_reset && (r.socket_errors > 0 || r.non_2xx > 0) {
                out.failures.push(format!(
                    "wrk: {} socket errors, {} non-2xx responses",
                    r.socket_errors, r.non_2xx
                ));
            }
        }
        Running::Echo(child) => {
            let v = clients::finish_echo(child)?;
            let resets = v["resets"].as_u64().unwrap_or(0);
            out.resets += resets;
            if let Some(gap) = v["max_gap_ms"].as_f64() {
                out.stall_ms = Some(out.stall_ms.map_or(gap, |s| s.max(gap)));
            }
            if s.checks.no_reset && (resets > 0 || v["ok"].as_bool() != Some(true)) {
                out.failures.push(format!(
                    "echo stream broken: resets {resets}, errors {}",
                    v["errors"]
                ));
            }
            if s.checks.byte_exact && v["mismatches"].as_u64() != Some(0) {
                out.failures.push(format!("echo bytes differ: {v}"));
            }
        }
        Running::Nc {
            child,
            sent,
            got,
            size,
        } => {
            let o = child.wait_with_output()?;
            if !o.status.success() {
                out.failures.push(format!(
                    "nc failed: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ));
                return Ok(());
            }
            let back = std::fs::metadata(&got).map(|m| m.len()).unwrap_or(0);
            if s.checks.byte_exact
                && (back != size as u64 || clients::sha256(&got)? != clients::sha256(&sent)?)
            {
                out.failures
                    .push(format!("nc stream differs ({back} of {size} bytes back)"));
            }
        }
        Running::Short(child) => {
            let o = child.wait_with_output()?;
            if !o.status.success() {
                out.failures.push(format!(
                    "short connections: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ));
            }
        }
        Running::Hog(threads) => {
            for t in threads {
                if t.join().is_err() {
                    out.failures.push("a CPU hog thread panicked".into());
                }
            }
        }
    }
    Ok(())
}

fn resolve(c: &Cluster, target: &str, last: Option<u8>) -> anyhow::Result<u8> {
    match target {
        "primary" => c.view()?.1.context("no primary in the view"),
        "old" => last.context("\"old\" needs an earlier fault"),
        "backup" => {
            let status = c.status()?;
            status["groups"][0]["members"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|m| m["alive"].as_bool() == Some(true))
                .filter_map(|m| m["id"].as_u64())
                .skip(1)
                .last()
                .map(|id| id as u8)
                .context("no live backup")
        }
        other => Ok(other.trim_start_matches("member:").parse()?),
    }
}

/// Poll `member`'s out-of-order gauge until it holds some (the kill
/// follows at once), for at most 2 s; returns what it held last.
fn wait_out_of_order(c: &Cluster, member: u8) -> anyhow::Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let held = c.replica_metric(usize::from(member) - 1, "hydra_out_of_order_bytes")?;
        if held > 0 || Instant::now() >= deadline {
            return Ok(held);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Wait until the view counts `member` live (`live`) or no longer does.
fn wait_in_view(c: &Cluster, member: u8, live: bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // The redirector may be restarting: an unanswered status is retried.
        let alive = c.status().ok().map(|s| {
            s["groups"][0]["members"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|m| {
                    m["id"].as_u64() == Some(u64::from(member))
                        && m["alive"].as_bool() == Some(true)
                })
        });
        if alive == Some(live) {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "member {member} {} the view after 10 s",
            if live { "not back in" } else { "still in" }
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The terminal table.
pub fn table(outcomes: &[Outcome]) -> String {
    let mut t = format!(
        "{:<40} {:<7} {:>10} {:>9} {:>9} {:>11} {:>7} {:>7}\n",
        "scenario", "verdict", "stall ms", "MiB/s", "req/s", "takeover ms", "resets", "secs"
    );
    for o in outcomes {
        let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
        t += &format!(
            "{:<40} {:<7} {:>10} {:>9} {:>9} {:>11} {:>7} {:>7.1}\n",
            o.name,
            if o.passed { "pass" } else { "FAIL" },
            opt(o.stall_ms),
            opt(o.mib_s),
            o.requests_per_s
                .map_or("-".to_string(), |v| format!("{v:.0}")),
            opt(o.takeover_ms),
            o.resets,
            o.seconds
        );
        for f in &o.failures {
            t += &format!("    {f}\n");
        }
    }
    t
}

/// The VIP a workload of `family` connects to (the cluster's own family
/// when it names none).
fn client_address(c: &Cluster, family: Option<Family>) -> anyhow::Result<IpAddr> {
    match family {
        None => Ok(c.vip()),
        Some(Family::Ipv4) => Ok(VIP.into()),
        Some(Family::Ipv6) if c.vip().is_ipv6() => Ok(VIP6.into()),
        Some(Family::Ipv6) => bail!("family = \"ipv6\" needs `ipv6 = true` in [topology]"),
    }
}
