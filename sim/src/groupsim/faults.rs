//! The faults of a run: planned from the seed when the run starts, injected
//! when their time comes (crashes, pauses, ack-channel partitions,
//! handovers, restarts of crashed hosts).

use super::node::new_node;
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

impl Sim {
    pub(super) fn faults(&mut self) {
        while self.plan.first().is_some_and(|(t, _)| *t <= self.now) {
            let (_, f) = self.plan.remove(0);
            // Members still serving: not crashed and live in the view. The
            // plan never takes the last of them (a group needs one replica).
            let view = self.authority.view().clone();
            let live: Vec<usize> = (0..self.nodes.len())
                .filter(|i| !self.nodes[*i].crashed && view.is_alive(*i as u8 + 1))
                .collect();
            match f {
                Fault::CrashPrimary | Fault::CrashAny if live.len() > 1 => {
                    let primary = self.authority.view().primary().map(|p| usize::from(p) - 1);
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
                    self.nodes[i].restart_epoch = self.authority.view().epoch;
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
                _ => {}
            }
        }
    }
}
