//! The faults of a run: planned from the seed when the run starts, injected
//! when their time comes (crashes, pauses, ack-channel partitions,
//! handovers, restarts of crashed hosts; with two or more redirectors,
//! kills and partitions of the acting one and store latency spikes).

use super::agent::Agent;
use super::node::new_node;
use super::redirectors::{new_authority, Redirector};
use super::run::Sim;
use super::us;
use crate::simnet::Rng;

/// One planned fault.
#[derive(Debug, Clone, Copy)]
pub(super) enum Fault {
    /// Crash the primary (any live replica if the view has none).
    CrashPrimary,
    /// Crash a live replica chosen from the seed.
    CrashAny,
    /// Stop a live replica for this many microseconds.
    Pause(u64),
    /// Cut the ack channel between two live replicas for this many
    /// microseconds.
    Partition(u64),
    /// The primary resigns on purpose (`true`: it stays as a backup).
    Handover(bool),
    /// A crashed replica's host comes back with a fresh process: it
    /// rejoins by state transfer.
    Restart,
    /// Kill the acting redirector (it releases nothing).
    KillActing,
    /// A killed redirector starts again, as a standby.
    RestartRedirector,
    /// Cut the acting redirector off the store for this many microseconds
    /// (`true`: off the replicas and clients too, a lost host).
    CutActing(u64, bool),
    /// For this many microseconds, store requests and replies take up to
    /// the second number of microseconds more (`true`: only the acting
    /// redirector's, a slow path, often slower than its requests' timeout).
    StoreSpike(u64, u64, bool),
    /// The acting redirector's next view write is held up in the network
    /// this many microseconds, and it is cut off the store right after
    /// sending it for the second number: the write may arrive after
    /// another redirector took over (what fencing is for). With a third
    /// number, the primary is paused that long at the same time, so the
    /// held-up write is likely the view that deposes it, while the next
    /// authority, carrying on from the stored view, keeps it primary.
    HeldWrite(u64, u64, Option<u64>),
}

/// The faults of one run, at seeded times: up to n-1 crashes (one replica
/// must survive), maybe a pause, an ack-channel partition, a handover, and
/// the restart of the first crashed host.
pub(super) fn plan(rng: &mut Rng, n: usize) -> Vec<(u64, Fault)> {
    let mut plan = Vec::new();
    for _ in 0..rng.below(n as u64) {
        let at = us(300 + rng.below(1500));
        let f = if rng.chance(0.6) {
            Fault::CrashPrimary
        } else {
            Fault::CrashAny
        };
        plan.push((at, f));
    }
    if rng.chance(0.5) {
        plan.push((
            us(300 + rng.below(1500)),
            Fault::Pause(us(20 + rng.below(250))),
        ));
    }
    if rng.chance(0.3) {
        plan.push((
            us(300 + rng.below(1500)),
            Fault::Partition(us(20 + rng.below(200))),
        ));
    }
    if rng.chance(0.4) {
        let stay = rng.chance(0.5);
        plan.push((us(300 + rng.below(1500)), Fault::Handover(stay)));
    }
    // Bring a crashed host back soon after its crash, while
    // connections still run: it must rejoin by state transfer.
    let first_crash = plan
        .iter()
        .filter(|(_, f)| matches!(f, Fault::CrashPrimary | Fault::CrashAny))
        .map(|(t, _)| *t)
        .min();
    if let Some(t) = first_crash {
        if rng.chance(0.6) {
            plan.push((t + us(120 + rng.below(300)), Fault::Restart));
        }
    }
    plan.sort_by_key(|(t, _)| *t);
    plan
}

/// With two or more redirectors, add to `plan`: maybe a kill of the acting
/// redirector (and maybe its restart), a partition of the acting one from
/// the store (maybe from everything), a store latency spike.
pub(super) fn plan_redirectors(rng: &mut Rng, plan: &mut Vec<(u64, Fault)>) {
    if rng.chance(0.5) {
        let at = us(300 + rng.below(1500));
        plan.push((at, Fault::KillActing));
        if rng.chance(0.5) {
            plan.push((at + us(100 + rng.below(500)), Fault::RestartRedirector));
        }
    }
    if rng.chance(0.5) {
        let lost_host = rng.chance(0.5);
        plan.push((
            us(300 + rng.below(1500)),
            Fault::CutActing(us(50 + rng.below(400)), lost_host),
        ));
    }
    if rng.chance(0.4) {
        plan.push((
            us(300 + rng.below(1500)),
            Fault::StoreSpike(us(50 + rng.below(300)), us(2 + rng.below(40)), false),
        ));
    }
    if rng.chance(0.4) {
        plan.push((
            us(300 + rng.below(1500)),
            Fault::StoreSpike(us(20 + rng.below(200)), us(20 + rng.below(250)), true),
        ));
    }
    if rng.chance(0.5) {
        plan.push((
            us(300 + rng.below(1500)),
            Fault::HeldWrite(
                us(200 + rng.below(300)),
                us(100 + rng.below(300)),
                rng.chance(0.5).then(|| us(150 + rng.below(100))),
            ),
        ));
    }
    plan.sort_by_key(|(t, _)| *t);
}

impl Sim {
    pub(super) fn faults(&mut self) {
        while self.plan.first().is_some_and(|(t, _)| *t <= self.now) {
            let (_, f) = self.plan.remove(0);
            // Members still serving: not crashed and live in the view. The
            // plan never takes the last of them (a group needs one replica).
            let view = self.view().clone();
            let live: Vec<usize> = (0..self.nodes.len())
                .filter(|i| !self.nodes[*i].crashed && view.is_alive(*i as u8 + 1))
                .collect();
            match f {
                Fault::CrashPrimary | Fault::CrashAny if live.len() > 1 => {
                    let primary = view.primary().map(|p| usize::from(p) - 1);
                    let victim = match (f, primary) {
                        (Fault::CrashPrimary, Some(p)) if live.contains(&p) => p,
                        _ => live[self.rng.below(live.len() as u64) as usize],
                    };
                    self.nodes[victim].crashed = true;
                    self.crashes += 1;
                    self.trace(|| format!("CRASH replica {}", victim + 1));
                }
                Fault::Pause(d) if live.len() > 1 => {
                    let victim = live[self.rng.below(live.len() as u64) as usize];
                    self.nodes[victim].paused_until = self.now + d;
                    self.trace(|| format!("PAUSE replica {} for {} ms", victim + 1, d / 1000));
                }
                Fault::Handover(stay) if live.len() > 1 => {
                    let Some(p) = view.primary().map(|p| usize::from(p) - 1) else {
                        continue;
                    };
                    let now = self.instant();
                    if live.contains(&p) && self.nodes[p].logic.resign(now, stay) {
                        self.handovers += 1;
                        self.trace(|| format!("HANDOVER by replica {} (stay: {stay})", p + 1));
                    }
                }
                Fault::Restart => {
                    let Some(i) = (0..self.nodes.len()).find(|i| self.nodes[*i].crashed) else {
                        continue;
                    };
                    // Counters above anything the old process used.
                    self.nodes[i] = new_node(i, &self.key, (1 << 40) + self.now, &self.cfg);
                    self.nodes[i].restarted = true;
                    self.nodes[i].restart_epoch = self.newest_epoch();
                    self.restarts += 1;
                    self.trace(|| format!("RESTART replica {}", i + 1));
                }
                Fault::Partition(d) if live.len() > 1 => {
                    let a = live[0];
                    let b = live[1 + self.rng.below(live.len() as u64 - 1) as usize];
                    self.cut.insert((a, b), self.now + d);
                    self.cut.insert((b, a), self.now + d);
                    self.trace(|| {
                        format!(
                            "PARTITION ack channel {} <-> {} for {} ms",
                            a + 1,
                            b + 1,
                            d / 1000
                        )
                    });
                }
                Fault::KillActing | Fault::RestartRedirector | Fault::CutActing(..) => {
                    self.redirector_fault(f);
                }
                Fault::StoreSpike(d, extra, one) => {
                    let only = if one {
                        let Some(r) = self.acting_redirector() else {
                            continue;
                        };
                        Some(r)
                    } else {
                        None
                    };
                    if let Some(c) = self.coordination.as_mut() {
                        c.store.spike(self.now + d, extra, only);
                    }
                    self.trace(|| {
                        let whose = only.map_or("all".into(), |r| format!("redirector {}", r + 1));
                        format!(
                            "STORE latency ({whose}) up to +{} ms for {} ms",
                            extra / 1000,
                            d / 1000
                        )
                    });
                }
                Fault::HeldWrite(extra, cut, pause) => {
                    let Some(r) = self.acting_redirector() else {
                        continue;
                    };
                    if let Some(c) = self.coordination.as_mut() {
                        c.store.hold_next_write(r, extra, cut);
                    }
                    let primary = view.primary().map(|p| usize::from(p) - 1);
                    if let (Some(d), Some(p)) = (pause, primary) {
                        if live.len() > 1 && live.contains(&p) {
                            self.nodes[p].paused_until = self.now + d;
                            self.trace(|| format!("PAUSE replica {} for {} ms", p + 1, d / 1000));
                        }
                    }
                    self.trace(|| {
                        format!(
                            "STORE: redirector {}'s next write held up {} ms, then cut off for {} ms",
                            r + 1,
                            extra / 1000,
                            cut / 1000
                        )
                    });
                }
                _ => {}
            }
        }
    }

    /// The redirector acting now, if any (else the one holding the next hop).
    fn acting_redirector(&self) -> Option<usize> {
        (0..self.redirectors.len())
            .find(|r| self.redirectors[*r].acting(self.now))
            .or_else(|| self.coordination.as_ref().and_then(|c| c.floating))
            .filter(|r| !self.redirectors[*r].killed)
    }

    fn redirector_fault(&mut self, f: Fault) {
        let now = self.now;
        match f {
            Fault::KillActing => {
                let running = self.redirectors.iter().filter(|r| !r.killed).count();
                let Some(r) = self.acting_redirector().filter(|_| running > 1) else {
                    return;
                };
                self.redirectors[r].killed = true;
                self.trace(|| format!("KILL redirector {}", r + 1));
            }
            Fault::RestartRedirector => {
                let Some(r) = (0..self.redirectors.len()).find(|r| self.redirectors[*r].killed)
                else {
                    return;
                };
                let n = self.nodes.len();
                let old = std::mem::replace(
                    &mut self.redirectors[r],
                    Redirector::new(
                        new_authority(&self.cfg, &self.key, 1),
                        Some(Agent::for_run(r, &self.cfg)),
                        Vec::new(),
                        Vec::new(),
                    ),
                );
                // The same host and links; a new process that first gives
                // up the next hop a previous run may have died holding.
                self.redirectors[r].control_up = old.control_up;
                self.redirectors[r].control_down = old.control_down;
                debug_assert_eq!(self.redirectors[r].control_up.len(), n);
                if let Some(c) = self.coordination.as_mut() {
                    if c.floating == Some(r) {
                        c.floating = None;
                    }
                }
                self.trace(|| format!("RESTART redirector {}", r + 1));
            }
            Fault::CutActing(d, lost_host) => {
                let Some(r) = self.acting_redirector() else {
                    return;
                };
                if let Some(c) = self.coordination.as_mut() {
                    c.store.cut(r, now + d);
                }
                if lost_host {
                    self.redirectors[r].lost_until = now + d;
                }
                self.trace(|| {
                    let what = if lost_host { "everything" } else { "the store" };
                    format!(
                        "PARTITION redirector {} from {what} for {} ms",
                        r + 1,
                        d / 1000
                    )
                });
            }
            _ => {}
        }
    }
}
