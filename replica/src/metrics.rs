//! Prometheus text for a stack's counters.

use ackchannel::admin::metric;
use stack::Stats;

/// Render every stack counter plus the live connection count.
pub fn render_stack(out: &mut String, stats: &Stats, connections: usize) {
    metric(
        out,
        "hydra_connections",
        "gauge",
        "Connections held by the stack.",
        "",
        connections,
    );
    for (name, value) in stats.counters() {
        let full = format!("hydra_stack_{name}_total");
        metric(
            out,
            &full,
            "counter",
            "Stack counter (see stack::Stats).",
            "",
            value,
        );
    }
}
