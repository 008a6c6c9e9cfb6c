//! PNG plots: throughput by message size, latency CDF, failover gaps.

use std::path::{Path, PathBuf};

use anyhow::Context;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::report::Report;

const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

pub fn register_font() -> anyhow::Result<()> {
    let bytes = std::fs::read(FONT)
        .with_context(|| format!("no font at {FONT} (apt install fonts-dejavu-core)"))?;
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| anyhow::anyhow!("font {FONT} not usable"))?;
    Ok(())
}

pub fn draw(r: &Report, dir: &Path, stem: &str) -> anyhow::Result<Vec<PathBuf>> {
    register_font()?;
    let mut files = Vec::new();
    let p = dir.join(format!("{stem}-throughput.png"));
    throughput(r, &p)?;
    files.push(p);
    let p = dir.join(format!("{stem}-latency-cdf.png"));
    latency(r, &p)?;
    files.push(p);
    if !r.failover.gaps_ms.is_empty() {
        let p = dir.join(format!("{stem}-failover-gaps.png"));
        failover(r, &p)?;
        files.push(p);
    }
    Ok(files)
}

/// "2026-12-04, 2 cores AMD EPYC": when and where the figures were taken.
fn provenance(r: &Report) -> String {
    let cores = r.machine["cores"]
        .as_u64()
        .map_or(String::new(), |c| format!(", {c} cores"));
    let cpu = r.machine["cpu"]
        .as_str()
        .map_or(String::new(), |c| format!(" {c}"));
    let commit = if r.commit.is_empty() {
        String::new()
    } else {
        format!(", commit {}", r.commit)
    };
    format!("{}{cores}{cpu}{commit}", r.date)
}

/// A message size given as log2 of its bytes, in the unit people read.
fn size_label(log2: &f64) -> String {
    let bytes = 2f64.powf(*log2).round() as u64;
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}

/// Reads a saved report and draws its plots next to it.
pub fn redraw(json: &Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(json).with_context(|| format!("reading {}", json.display()))?;
    let report: Report = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a full report", json.display()))?;
    let dir = json.parent().unwrap_or(Path::new("."));
    let stem = json
        .file_stem()
        .and_then(|s| s.to_str())
        .context("a report file name")?;
    for f in draw(&report, dir, stem)? {
        println!("plot:   {}", f.display());
    }
    Ok(())
}

fn configs(r: &Report) -> Vec<String> {
    let mut c: Vec<String> = Vec::new();
    for t in &r.throughput {
        if !c.contains(&t.config) {
            c.push(t.config.clone());
        }
    }
    c
}

/// `points` as a line of `color`, named `label` in the legend.
fn labelled_line<CT: CoordTranslate<From = (f64, f64)>>(
    chart: &mut ChartContext<'_, BitMapBackend<'_>, CT>,
    points: Vec<(f64, f64)>,
    color: RGBAColor,
    label: &str,
) -> anyhow::Result<()> {
    chart
        .draw_series(LineSeries::new(points, color.stroke_width(2)))?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    Ok(())
}

/// Draw the legend of the labelled lines, then write the file.
fn legend_and_present<'a, 'b: 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, BitMapBackend<'b>, CT>,
    root: &DrawingArea<BitMapBackend<'b>, Shift>,
) -> anyhow::Result<()> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn throughput(r: &Report, path: &Path) -> anyhow::Result<()> {
    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let max = r.throughput.iter().map(|t| t.gbit_s).fold(1.0, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Upload throughput by message size ({})", provenance(r)),
            ("sans-serif", 18),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d((14f64..21f64).step(1.0), 0f64..max)?;
    chart
        .configure_mesh()
        .x_desc("message size")
        .x_label_formatter(&size_label)
        .y_desc("Gbit/s")
        .draw()?;
    for (i, config) in configs(r).iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let points: Vec<(f64, f64)> = r
            .throughput
            .iter()
            .filter(|t| &t.config == config && t.direction == "upload" && t.error.is_none())
            .map(|t| ((t.msg as f64).log2(), t.gbit_s))
            .collect();
        labelled_line(&mut chart, points.clone(), color, config)?;
        chart.draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled())))?;
    }
    legend_and_present(&mut chart, &root)
}

fn latency(r: &Report, path: &Path) -> anyhow::Result<()> {
    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let max_us = r
        .latency
        .iter()
        .flat_map(|l| l.cdf.iter().map(|(us, _)| *us))
        .max()
        .unwrap_or(1000)
        .max(10) as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Round-trip latency CDF, 64-byte requests ({})",
                provenance(r)
            ),
            ("sans-serif", 18),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d((1f64..max_us * 1.2).log_scale(), 0f64..1f64)?;
    chart
        .configure_mesh()
        .x_desc("round trip (us)")
        .y_desc("fraction")
        .draw()?;
    for (i, l) in r
        .latency
        .iter()
        .filter(|l| l.msg == 64 && l.error.is_none())
        .enumerate()
    {
        let color = Palette99::pick(i).to_rgba();
        let points: Vec<(f64, f64)> = l
            .cdf
            .iter()
            .map(|(us, q)| ((*us).max(1) as f64, *q))
            .collect();
        labelled_line(&mut chart, points, color, &l.config)?;
    }
    legend_and_present(&mut chart, &root)
}

fn failover(r: &Report, path: &Path) -> anyhow::Result<()> {
    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let gaps = &r.failover.gaps_ms;
    let max = gaps.iter().copied().fold(10.0, f64::max) * 1.2;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Client-observed stall at each primary crash, 3 replicas ({})",
                provenance(r)
            ),
            ("sans-serif", 18),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(0f64..(gaps.len() as f64 + 1.0), 0f64..max)?;
    chart
        .configure_mesh()
        .x_desc("crash")
        .x_labels(gaps.len().min(30) + 2)
        .x_label_formatter(&|x| format!("{}", x.round() as u64))
        .y_desc("stall (ms)")
        .draw()?;
    chart.draw_series(gaps.iter().enumerate().map(|(i, g)| {
        Rectangle::new([(i as f64 + 0.6, 0.0), (i as f64 + 1.4, *g)], BLUE.filled())
    }))?;
    root.present()?;
    Ok(())
}
