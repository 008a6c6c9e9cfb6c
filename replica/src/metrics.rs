//! Prometheus text for a stack's counters.

use hydra_ops::admin::metric;
use stack::Stats;

/// Render every stack counter plus the live connection count.
pub fn render_stack(out: &mut String, stats: &Stats, connections: usize, out_of_order: usize) {
    metric(
        out,
        "hydra_connections",
        "gauge",
        "Connections held by the stack.",
        "",
        connections,
    );
    metric(
        out,
        "hydra_out_of_order_bytes",
        "gauge",
        "Received bytes held out of order, waiting for a hole to fill.",
        "",
        out_of_order,
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

/// One line per connection: its state, buffers and windows (`GET
/// /connections` on the admin endpoint).
pub fn render_connections(stack: &stack::Stack) -> String {
    let mut out = String::from(
        "remote state recv_ready send_queued send_space rcv_nxt snd_una snd_nxt cwnd srtt_us\n",
    );
    for key in stack.connections() {
        if let Some(c) = stack.conn_info(key) {
            out += &format!(
                "{} {:?} {} {} {} {} {} {} {} {}\n",
                key.remote,
                c.state,
                c.recv_ready,
                c.send_queued,
                c.send_space,
                c.rcv_nxt.0,
                c.snd_una.0,
                c.snd_nxt.0,
                c.cwnd,
                c.srtt_us.map_or("-".into(), |v| v.to_string())
            );
        }
    }
    out
}
