//! The member's admin endpoint: `/metrics` (Prometheus text), `/status`
//! (JSON), `/connections`, `POST /handover` and `POST /leave`, and the
//! pages the application added.

use std::io;
use std::net::SocketAddr;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use stack::socket::NetStack;

use super::device::DeviceDrops;
use super::hooks::{request_resign, Routes};
use super::hooks::{Command, ReplicaStatus};

pub(crate) fn serve(
    addr: std::net::SocketAddr,
    net: NetStack,
    copy_drops: Arc<DeviceDrops>,
    status: Arc<Mutex<ReplicaStatus>>,
    commands: Mutex<Sender<Command>>,
    leaving: Arc<std::sync::atomic::AtomicBool>,
    routes: Arc<Mutex<Routes>>,
) -> io::Result<SocketAddr> {
    use hydra_ops::admin::metric;
    let bound = hydra_ops::admin::serve(
        addr,
        Arc::new(move |method: &str, path: &str| {
            let snapshot = status.lock().map(|s| s.clone()).unwrap_or_default();
            match (method, path) {
                ("POST", "/handover" | "/leave") => {
                    let stay = path == "/handover";
                    if !stay {
                        leaving.store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                    let started = commands
                        .lock()
                        .map(|c| request_resign(&c, stay))
                        .unwrap_or(false);
                    if !started {
                        leaving.store(false, std::sync::atomic::Ordering::SeqCst);
                    }
                    let body = if started {
                        format!("{path}: started\n")
                    } else {
                        format!("{path}: refused, no other live member to take over\n")
                    };
                    Some(("text/plain", body))
                }
                ("GET", "/metrics") => {
                    let (stats, conns, ooo) = net.with_stack(|s| {
                        (
                            s.stats().clone(),
                            s.connection_count(),
                            s.out_of_order_bytes(),
                        )
                    });
                    let mut out = String::new();
                    crate::metrics::render_stack(&mut out, &stats, conns, ooo);
                    for (reason, counter) in [
                        ("foreign_source", &copy_drops.foreign_source),
                        ("oversized", &copy_drops.oversized),
                    ] {
                        metric(
                            &mut out,
                            "hydra_copies_dropped_total",
                            "counter",
                            "Copies from the redirector refused: not from its address, or too long.",
                            &format!("reason=\"{reason}\""),
                            counter.load(std::sync::atomic::Ordering::Relaxed),
                        );
                    }
                    metric(
                        &mut out,
                        "hydra_view_epoch",
                        "gauge",
                        "Epoch of the installed view.",
                        "",
                        snapshot.epoch,
                    );
                    let primary =
                        u8::from(snapshot.primary == Some(snapshot.member) && !snapshot.removed);
                    metric(
                        &mut out,
                        "hydra_is_primary",
                        "gauge",
                        "1 when this replica is the primary.",
                        "",
                        primary,
                    );
                    metric(
                        &mut out,
                        "hydra_failovers_total",
                        "counter",
                        "Takeovers by this replica.",
                        "",
                        snapshot.failovers,
                    );
                    metric(
                        &mut out,
                        "hydra_handbacks_total",
                        "counter",
                        "Primary roles this replica handed back to the group's preferred primary.",
                        "",
                        snapshot.handbacks,
                    );
                    Some(("text/plain; version=0.0.4", out))
                }
                ("GET", "/connections") => Some((
                    "text/plain",
                    net.with_stack(|s| crate::metrics::render_connections(s)),
                )),
                ("GET", "/status") => Some((
                    "application/json",
                    serde_json::to_string(&snapshot).unwrap_or_default(),
                )),
                ("GET", other) => {
                    let page = routes.lock().ok()?.get(other).cloned()?;
                    Some(page())
                }
                _ => None,
            }
        }),
    )?;
    tracing::info!(%bound, "admin endpoint up");
    Ok(bound)
}
