//! What operators see: `/status` (JSON views) and `/metrics` (Prometheus).

use std::net::SocketAddr;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use ackchannel::control::ViewAuthority;
use hydra_ops::admin::{self, metric};
use serde::Serialize;
use stack::Instant;

use crate::pool::{Pool, PoolStatus};

#[derive(Debug, Clone, Default, Serialize)]
pub struct Counters {
    pub packets_in: u64,
    pub copies_sent: u64,
    pub copy_errors: u64,
    /// Sends that carried several copies as one coalesced datagram.
    pub coalesced_sends: u64,
    pub dropped_no_service: u64,
    pub dropped_no_member: u64,
    pub dropped_malformed: u64,
    /// Packets too long for one datagram that could not be cut in two (a
    /// coalesced segment always can).
    pub dropped_oversized: u64,
    /// Packets a pool could not place (reasons in the pool's status).
    pub dropped_by_pool: u64,
    pub control_unauthenticated: u64,
    /// Failed writes of the state file (the views survive no restart).
    pub state_save_errors: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct MemberStatus {
    pub id: u8,
    pub alive: bool,
    pub data_addr: String,
    pub ack_addr: String,
    pub silent_ms: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct GroupStatus {
    pub name: String,
    pub epoch: u64,
    /// It has a live member heard from recently.
    pub serving: bool,
    /// The operator stopped new connections to it (pools only).
    pub draining: bool,
    pub primary: Option<u8>,
    /// Primary first, live backups, dead members last.
    pub members: Vec<MemberStatus>,
    pub view_changes: u64,
    pub failure_reports: u64,
    pub refused_unauthenticated: u64,
    pub refused_replayed: u64,
    pub refused_unknown_member: u64,
    pub refused_dead_member: u64,
    pub refused_malformed: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Snapshot {
    pub groups: Vec<GroupStatus>,
    pub pools: Vec<PoolStatus>,
    pub counters: Counters,
    /// Pooled connections the flow table did not know, found by asking
    /// the groups.
    pub unknown_flows: UnknownFlows,
    /// With `[coordination]`: this redirector's part in the election.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coordination: Option<crate::coordination::AgentStatus>,
}

/// Pooled connections the flow table does not know (opened before a
/// restart, or through another redirector).
#[derive(Debug, Clone, Default, Serialize)]
pub struct UnknownFlows {
    /// Connections whose groups are being asked about now.
    pub pending: usize,
    #[serde(flatten)]
    pub counters: crate::adoption::AdoptionCounters,
}

impl Snapshot {
    pub fn take(
        now: Instant,
        groups: &[ViewAuthority],
        draining: &[bool],
        pools: &[Pool],
        counters: &Counters,
    ) -> Snapshot {
        let groups = groups
            .iter()
            .zip(draining)
            .map(|(g, &draining)| {
                let silence = g.silence(now);
                let s = g.stats();
                GroupStatus {
                    name: g.name().to_string(),
                    epoch: g.view().epoch,
                    serving: g.serving(now),
                    draining,
                    primary: g.view().primary(),
                    members: g
                        .view()
                        .members
                        .iter()
                        .map(|m| MemberStatus {
                            id: m.id,
                            alive: m.alive,
                            data_addr: m.data_addr.to_string(),
                            ack_addr: m.ack_addr.to_string(),
                            silent_ms: silence
                                .iter()
                                .find(|(id, _)| *id == m.id)
                                .map(|(_, ms)| *ms),
                        })
                        .collect(),
                    view_changes: s.view_changes,
                    failure_reports: s.failure_reports,
                    refused_unauthenticated: s.refused_unauthenticated,
                    refused_replayed: s.refused_replayed,
                    refused_unknown_member: s.refused_unknown_member,
                    refused_dead_member: s.refused_dead_member,
                    refused_malformed: s.refused_malformed,
                }
            })
            .collect();
        Snapshot {
            groups,
            pools: pools.iter().map(Pool::status).collect(),
            counters: counters.clone(),
            unknown_flows: UnknownFlows::default(),
            coordination: None,
        }
    }

    pub fn metrics(&self) -> String {
        let mut out = String::new();
        let c = &self.counters;
        metric(
            &mut out,
            "hydra_redirector_packets_total",
            "counter",
            "Client packets read for a served VIP.",
            "",
            c.packets_in,
        );
        metric(
            &mut out,
            "hydra_redirector_copies_total",
            "counter",
            "Packet copies sent to replicas.",
            "",
            c.copies_sent,
        );
        metric(
            &mut out,
            "hydra_redirector_copy_errors_total",
            "counter",
            "Copies the kernel refused to send.",
            "",
            c.copy_errors,
        );
        metric(
            &mut out,
            "hydra_redirector_coalesced_sends_total",
            "counter",
            "Sends carrying several copies to one replica as one datagram (UDP segmentation offload).",
            "",
            c.coalesced_sends,
        );
        metric(
            &mut out,
            "hydra_redirector_dropped_no_service_total",
            "counter",
            "Packets to no configured service.",
            "",
            c.dropped_no_service,
        );
        metric(
            &mut out,
            "hydra_redirector_dropped_no_member_total",
            "counter",
            "Packets for a group with no live member.",
            "",
            c.dropped_no_member,
        );
        metric(
            &mut out,
            "hydra_redirector_dropped_malformed_total",
            "counter",
            "Packets that are not well-formed IPv4.",
            "",
            c.dropped_malformed,
        );
        metric(
            &mut out,
            "hydra_redirector_dropped_oversized_total",
            "counter",
            "Packets too long for one datagram to a replica that could not be cut in two.",
            "",
            c.dropped_oversized,
        );
        metric(
            &mut out,
            "hydra_control_unauthenticated_total",
            "counter",
            "Control datagrams no group key authenticates.",
            "",
            c.control_unauthenticated,
        );
        let u = &self.unknown_flows.counters;
        metric(
            &mut out,
            "hydra_unknown_flow_packets_parked_total",
            "counter",
            "Packets of pooled connections the flow table did not know, kept while the groups were asked.",
            "",
            u.parked,
        );
        metric(
            &mut out,
            "hydra_unknown_flow_packets_dropped_total",
            "counter",
            "Packets of unknown pooled connections dropped: no group claimed them in time, or too much was parked.",
            "",
            u.dropped_unclaimed + u.dropped_parking_full,
        );
        for p in &self.pools {
            for m in &p.members {
                let l = format!("pool=\"{}\",group=\"{}\"", p.name, m.group);
                metric(
                    &mut out,
                    "hydra_pool_assigned_total",
                    "counter",
                    "Connections the pool assigned to the group.",
                    &l,
                    m.assigned,
                );
                metric(
                    &mut out,
                    "hydra_pool_open_connections",
                    "gauge",
                    "Assigned connections not yet closing.",
                    &l,
                    m.open,
                );
            }
            metric(
                &mut out,
                "hydra_pool_adopted_total",
                "counter",
                "Connections the table did not know that one of the pool's groups claimed.",
                &format!("pool=\"{}\"", p.name),
                p.adopted,
            );
            metric(
                &mut out,
                "hydra_pool_dropped_total",
                "counter",
                "Packets the pool dropped (no group, table full).",
                &format!("pool=\"{}\"", p.name),
                p.dropped_no_group + p.dropped_table_full,
            );
        }
        for g in &self.groups {
            let l = format!("group=\"{}\"", g.name);
            metric(
                &mut out,
                "hydra_group_epoch",
                "gauge",
                "Epoch of the group's view.",
                &l,
                g.epoch,
            );
            let live = g.members.iter().filter(|m| m.alive).count();
            metric(
                &mut out,
                "hydra_group_live_members",
                "gauge",
                "Live members in the view.",
                &l,
                live,
            );
            metric(
                &mut out,
                "hydra_group_view_changes_total",
                "counter",
                "Views published.",
                &l,
                g.view_changes,
            );
            metric(
                &mut out,
                "hydra_group_refused_total",
                "counter",
                "Refused control messages (forged, replayed, unknown, dead).",
                &l,
                g.refused_unauthenticated
                    + g.refused_replayed
                    + g.refused_unknown_member
                    + g.refused_dead_member
                    + g.refused_malformed,
            );
        }
        if let Some(c) = &self.coordination {
            let l = format!("name=\"{}\"", c.name);
            let gauges = [
                (
                    "hydra_coordination_acting",
                    "1 while this redirector is the view authority.",
                    u64::from(c.acting),
                ),
                (
                    "hydra_coordination_etcd_ok",
                    "1 when the last etcd request succeeded.",
                    u64::from(c.etcd_error.is_none()),
                ),
            ];
            for (name, help, value) in gauges {
                metric(&mut out, name, "gauge", help, &l, value);
            }
            metric(
                &mut out,
                "hydra_coordination_save_errors_total",
                "counter",
                "View writes to etcd that failed.",
                &l,
                c.save_errors,
            );
        }
        out
    }
}

/// An operator's request to stop (true) or resume new connections to a group.
pub type DrainRequest = (String, bool);

pub fn serve(
    addr: SocketAddr,
    snapshot: Arc<Mutex<Snapshot>>,
    drain: Mutex<Sender<DrainRequest>>,
) -> anyhow::Result<()> {
    let bound = admin::serve(
        addr,
        Arc::new(move |method: &str, path: &str| {
            let s = snapshot.lock().map(|s| s.clone()).unwrap_or_default();
            if method == "POST" {
                // POST /groups/<name>/drain or /groups/<name>/undrain
                let rest = path.strip_prefix("/groups/")?;
                let (name, action) = rest.rsplit_once('/')?;
                let on = match action {
                    "drain" => true,
                    "undrain" => false,
                    _ => return None,
                };
                s.groups.iter().find(|g| g.name == name)?;
                if s.coordination.as_ref().is_some_and(|c| !c.acting) {
                    let acting = s.coordination.as_ref().and_then(|c| c.authority.clone());
                    return Some((
                        "text/plain",
                        format!(
                            "group {name}: {action} refused: this redirector does not act (the acting one is {}); send it there\n",
                            acting.as_deref().unwrap_or("unknown")
                        ),
                    ));
                }
                let sent = drain
                    .lock()
                    .is_ok_and(|d| d.send((name.to_string(), on)).is_ok());
                let body = if sent {
                    format!("group {name}: {action} requested\n")
                } else {
                    "the redirector is shutting down\n".to_string()
                };
                return Some(("text/plain", body));
            }
            match (method, path) {
                ("GET", "/status") => Some((
                    "application/json",
                    serde_json::to_string(&s).unwrap_or_default(),
                )),
                ("GET", "/metrics") => Some(("text/plain; version=0.0.4", s.metrics())),
                _ => None,
            }
        }),
    )
    .map_err(|e| anyhow::anyhow!("admin endpoint on {addr}: {e}"))?;
    tracing::info!(%bound, "admin endpoint up");
    Ok(())
}
