//! `hydra-bench sweep`: for each failure-detection setting (heartbeat,
//! lease, keepalive timeout), the stall a client sees at primary crashes
//! and the spurious failovers a saturated group suffers with nothing
//! crashing, so an operator can pick the shortest stall the hosts afford.
//! Writes a JSON report and a plot of one against the other.

use std::path::{Path, PathBuf};

use anyhow::Context;
use indicatif::ProgressBar;
use plotters::prelude::*;
use scenarios::cluster::Binaries;
use serde::{Deserialize, Serialize};

use crate::failover::{failover, Disruption, Timing};
use crate::soak::{soak, Settings};

#[derive(Debug, Clone, clap::Args)]
pub struct SweepArgs {
    /// Settings to measure, each `heartbeat/lease/timeout` in ms.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "10/60/100,5/25/60,4/20/50,3/15/40"
    )]
    pub settings: Vec<String>,
    /// Primary crashes measured per setting.
    #[arg(long, default_value_t = 10)]
    pub crashes: usize,
    /// Seconds of saturated load per setting, counting spurious failovers.
    #[arg(long, default_value_t = 120)]
    pub soak_seconds: u64,
    /// Busy threads during the soak (default: one per core).
    #[arg(long)]
    pub hogs: Option<usize>,
    /// Scheduling priority of the group's processes in the crashes and
    /// the soak (the load stays at 0), as a unit's `Nice=` sets it.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    pub nice: i32,
    /// Directory for the JSON report and the plot.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// One setting's figures.
#[derive(Debug, Serialize, Deserialize)]
pub struct SweepPoint {
    pub settings: Settings,
    pub crashes: usize,
    pub stall_p50_ms: f64,
    pub stall_p99_ms: f64,
    pub stall_max_ms: f64,
    pub soak_seconds: f64,
    pub spurious_failovers: u64,
    /// Spurious failovers per hour of saturated load.
    pub spurious_per_hour: f64,
    pub errors: Vec<String>,
}

/// The whole sweep, as written to `<date>-<commit>-sweep.json`.
#[derive(Debug, Serialize, Deserialize)]
pub struct SweepReport {
    pub date: String,
    pub commit: String,
    pub machine: serde_json::Value,
    pub hogs: Option<usize>,
    /// The group's processes' scheduling priority.
    #[serde(default)]
    pub nice: i32,
    pub points: Vec<SweepPoint>,
}

fn parse_settings(text: &str) -> anyhow::Result<Settings> {
    let parts: Vec<u64> = text
        .split('/')
        .map(|p| p.trim().parse::<u64>())
        .collect::<Result<_, _>>()
        .with_context(|| format!("setting {text:?}: want heartbeat/lease/timeout in ms"))?;
    let [heartbeat_ms, lease_ms, timeout_ms] = parts[..] else {
        anyhow::bail!("setting {text:?}: want three numbers, heartbeat/lease/timeout");
    };
    let s = Settings {
        lease_ms,
        heartbeat_ms,
        timeout_ms,
    };
    s.check()?;
    Ok(s)
}

pub fn run(args: &SweepArgs) -> anyhow::Result<()> {
    let settings: Vec<Settings> = args
        .settings
        .iter()
        .map(|s| parse_settings(s))
        .collect::<anyhow::Result<_>>()?;
    let bins = Binaries::beside_current_exe()?;
    let mut report = SweepReport {
        date: crate::report::today(),
        commit: crate::report::commit(),
        machine: crate::report::machine(),
        hogs: args.hogs,
        nice: args.nice,
        points: Vec::new(),
    };
    for s in settings {
        eprintln!(
            "sweep: heartbeat {} ms, lease {} ms, timeout {} ms: {} crashes, {} s soak",
            s.heartbeat_ms, s.lease_ms, s.timeout_ms, args.crashes, args.soak_seconds
        );
        let timing = Timing {
            lease_ms: s.lease_ms,
            heartbeat_ms: s.heartbeat_ms,
            timeout_ms: s.timeout_ms,
            nice: args.nice,
        };
        let f = failover(
            &bins,
            args.crashes,
            Disruption::Crash,
            &timing,
            &ProgressBar::hidden(),
        );
        let mut errors = f.errors.clone();
        let (soak_seconds, spurious) =
            match soak(&bins, &s, args.soak_seconds, args.hogs, args.nice) {
                Ok(r) => {
                    errors.extend(r.client_errors.iter().cloned());
                    (r.seconds, r.view_changes)
                }
                Err(e) => {
                    errors.push(format!("soak: {e:#}"));
                    (0.0, 0)
                }
            };
        let point = SweepPoint {
            settings: s,
            crashes: f.crashes,
            stall_p50_ms: f.p50_ms,
            stall_p99_ms: f.p99_ms,
            stall_max_ms: f.max_ms,
            soak_seconds,
            spurious_failovers: spurious,
            spurious_per_hour: if soak_seconds > 0.0 {
                spurious as f64 * 3600.0 / soak_seconds
            } else {
                0.0
            },
            errors,
        };
        print_point(&point);
        report.points.push(point);
    }
    let out = args.out.clone().unwrap_or_else(crate::default_out);
    let stem = format!("{}-{}-sweep", report.date, report.commit);
    let json = crate::report::write_json(&out, &stem, &report)?;
    let png = out.join(format!("{stem}.png"));
    plot(&report, &png)?;
    println!("report: {}\nplot: {}", json.display(), png.display());
    Ok(())
}

/// `hydra-bench plot` of a saved sweep: the PNG next to its JSON.
pub fn redraw(json: &Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(json).with_context(|| format!("reading {}", json.display()))?;
    let report: SweepReport = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a sweep report", json.display()))?;
    let png = json.with_extension("png");
    plot(&report, &png)?;
    println!("plot:   {}", png.display());
    Ok(())
}

fn print_point(p: &SweepPoint) {
    let s = &p.settings;
    println!(
        "heartbeat {:>3} ms  lease {:>3} ms  timeout {:>3} ms | stall over {} crashes: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms | {:.0} s saturated: {} spurious failovers ({:.1}/h){}",
        s.heartbeat_ms,
        s.lease_ms,
        s.timeout_ms,
        p.crashes,
        p.stall_p50_ms,
        p.stall_p99_ms,
        p.stall_max_ms,
        p.soak_seconds,
        p.spurious_failovers,
        p.spurious_per_hour,
        if p.errors.is_empty() {
            String::new()
        } else {
            format!(" | errors: {}", p.errors.join("; "))
        }
    );
}

/// Stall p99 (x) against spurious failovers per hour (y), one labelled
/// point per setting.
fn plot(r: &SweepReport, path: &Path) -> anyhow::Result<()> {
    crate::plots::register_font()?;
    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let max_x = r.points.iter().map(|p| p.stall_p99_ms).fold(10.0, f64::max) * 1.6; // room for the labels right of the points
    let max_y = r
        .points
        .iter()
        .map(|p| p.spurious_per_hour)
        .fold(1.0, f64::max)
        * 1.25;
    let cores = r.machine["cores"].as_u64().unwrap_or(0);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Crash stall against spurious failovers, group of 3 ({}, {} cores, {})",
                r.date, cores, r.commit
            ),
            ("sans-serif", 18),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..max_x, 0f64..max_y)?;
    chart
        .configure_mesh()
        .x_desc("client-observed stall at a primary crash, p99 (ms)")
        .y_desc("spurious failovers per hour, cores saturated")
        .draw()?;
    // Labels climb one line per point, so points at one height stay legible.
    chart.draw_series(r.points.iter().enumerate().map(|(i, p)| {
        let s = &p.settings;
        let label = format!(
            "hb {} / lease {} / timeout {}: p50 {:.1} ms",
            s.heartbeat_ms, s.lease_ms, s.timeout_ms, p.stall_p50_ms
        );
        let rise = -14 - 18 * i as i32;
        EmptyElement::at((p.stall_p99_ms, p.spurious_per_hour))
            + Circle::new((0, 0), 5, BLUE.filled())
            + PathElement::new(vec![(0, 0), (6, rise + 8)], BLACK)
            + Text::new(label, (8, rise), ("sans-serif", 14).into_font())
    }))?;
    root.present()?;
    Ok(())
}
