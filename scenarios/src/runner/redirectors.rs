//! The faults that strike the redirectors and etcd, and the checks of
//! what a topology of redundant redirectors promises: after the acting
//! one is killed or cut off another acts and holds the floating address;
//! the one cut off stops acting and gives the address up; a restarted or
//! healed one stands by; an etcd member's death (the quorum kept) moves
//! nothing.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::Outcome;
use crate::cluster::{coordination_tools_missing, Cluster};
use crate::spec::{Action, Fault};

/// A takeover slower than this fails the run: the authority's lease
/// (1 s) runs out well within it.
const TAKEOVER_LIMIT: Duration = Duration::from_secs(10);
/// The redirector that acts puts the floating address on within this.
const FLOATING_LIMIT: Duration = Duration::from_secs(2);
/// At the end, the redirectors settle (one acting, holding the address,
/// the others standing by without it) within this.
const SETTLE_LIMIT: Duration = Duration::from_secs(5);

/// Fails with the missing package named when a cluster with etcd cannot
/// be built here.
pub(super) fn tools_present() -> anyhow::Result<()> {
    match coordination_tools_missing() {
        None => Ok(()),
        Some(why) => bail!("topology.redirectors > 1: {why}"),
    }
}

/// What the redirector faults of one run did, for the checks at its end.
pub(super) struct Faults {
    redirectors: usize,
    /// Redirectors whose process is gone (killed, not restarted).
    dead: Vec<usize>,
    /// The redirector that acted when an etcd member died: it must still
    /// act at the end, unless a later redirector fault moved the authority.
    steady: Option<usize>,
}

impl Faults {
    /// Nothing struck yet in cluster `c`.
    pub(super) fn start(c: &Cluster) -> Faults {
        Faults {
            redirectors: c.redirector_nss.len(),
            dead: Vec::new(),
            steady: None,
        }
    }

    /// Apply fault `f` (not a member's) and check what follows it.
    pub(super) fn apply(
        &mut self,
        c: &mut Cluster,
        f: &Fault,
        t0: Instant,
        out: &mut Outcome,
    ) -> anyhow::Result<()> {
        let at = t0.elapsed().as_millis();
        let note = match f.action {
            Action::RestartRedirector => {
                c.restart_redirector()?;
                "redirector restarted".to_string()
            }
            Action::KillActingRedirector => self.kill_acting(c, f, out)?,
            Action::PartitionActingRedirector => self.partition_acting(c, f, out)?,
            Action::KillEtcdMember => self.kill_etcd(c, f)?,
            member => bail!("{member:?} strikes a member, not a redirector"),
        };
        out.events.push(format!("{at} ms: {note}"));
        Ok(())
    }

    fn kill_acting(
        &mut self,
        c: &mut Cluster,
        f: &Fault,
        out: &mut Outcome,
    ) -> anyhow::Result<String> {
        let acting = c.wait_acting(Duration::from_secs(5))?;
        c.kill_redirector(acting)?;
        let killed = Instant::now();
        self.dead.push(acting);
        self.steady = None;
        let mut note = format!("SIGKILL the acting redirector {acting}");
        if f.release {
            // As its systemd unit would: what the process left behind dies
            // with it, then ExecStopPost releases.
            let leftovers = c.kill_redirector_leftovers(acting)?;
            if leftovers > 0 {
                note += &format!(", {leftovers} process(es) it left killed");
            }
            let said = c.release_redirector(acting)?;
            if !said.contains("view authority released") {
                out.failures.push(format!(
                    "the release of redirector {acting} did not release the view authority: {said}"
                ));
            }
            note += ", released";
        }
        let next = c.wait_acting_other_than(acting, TAKEOVER_LIMIT)?;
        let took = killed.elapsed().as_secs_f64() * 1000.0;
        note += &format!("; redirector {next} acts {took:.0} ms after the kill");
        note_takeover(out, took);
        wait_floating(c, next, out)?;
        note += &format!(
            " and holds the floating address {:.0} ms after it",
            killed.elapsed().as_secs_f64() * 1000.0
        );
        if f.restart {
            c.restart_redirector_at(acting)?;
            self.dead.retain(|&k| k != acting);
            note += &format!("; redirector {acting} started again");
        }
        Ok(note)
    }

    fn partition_acting(
        &mut self,
        c: &mut Cluster,
        f: &Fault,
        out: &mut Outcome,
    ) -> anyhow::Result<String> {
        let acting = c.wait_acting(Duration::from_secs(5))?;
        c.set_redirector_links(acting, false)?;
        let cut = Instant::now();
        self.steady = None;
        let next = c.wait_acting_other_than(acting, TAKEOVER_LIMIT)?;
        let took = cut.elapsed().as_secs_f64() * 1000.0;
        note_takeover(out, took);
        // One acting at a time: the one cut off stopped before another acted.
        let status = c.redirector_status(acting)?;
        if status["coordination"]["acting"].as_bool() != Some(false) {
            out.failures.push(format!(
                "redirector {acting}, cut off, still acts once redirector {next} does: {}",
                status["coordination"]
            ));
        }
        if c.holds_floating(acting)? {
            out.failures.push(format!(
                "redirector {acting}, cut off, kept the floating address"
            ));
        }
        wait_floating(c, next, out)?;
        let mut note = format!(
            "cut the acting redirector {acting}'s links; redirector {next} acts {took:.0} ms after the cut and holds the floating address {:.0} ms after it",
            cut.elapsed().as_secs_f64() * 1000.0
        );
        if let Some(heal) = f.heal_ms {
            std::thread::sleep(Duration::from_millis(heal).saturating_sub(cut.elapsed()));
            c.set_redirector_links(acting, true)?;
            note += &format!(
                "; links healed {:.0} ms after the cut",
                cut.elapsed().as_secs_f64() * 1000.0
            );
        }
        Ok(note)
    }

    fn kill_etcd(&mut self, c: &mut Cluster, f: &Fault) -> anyhow::Result<String> {
        let j: usize = f
            .target
            .as_deref()
            .and_then(|t| t.strip_prefix("etcd:")?.parse().ok())
            .context("kill-etcd-member needs target = \"etcd:N\"")?;
        let acting = c.wait_acting(Duration::from_secs(5))?;
        c.kill_etcd(j)?;
        self.steady = Some(acting);
        Ok(format!(
            "SIGKILL etcd member {j} while redirector {acting} acts"
        ))
    }

    /// The checks at the end of the run: the redirectors settled (one acts
    /// and holds the floating address, every other running one stands by
    /// without it), and an etcd member's death moved no authority.
    pub(super) fn finish(&self, c: &Cluster, out: &mut Outcome) -> anyhow::Result<()> {
        if self.redirectors < 2 {
            return Ok(());
        }
        let deadline = Instant::now() + SETTLE_LIMIT;
        let (acting, holding) = loop {
            let picture = self.picture(c);
            let settled = matches!(&picture, Ok((a, h)) if a.len() == 1 && *h == *a);
            if settled || Instant::now() >= deadline {
                break picture?;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if acting.len() != 1 || holding != acting {
            out.failures.push(format!(
                "the redirectors did not settle within {SETTLE_LIMIT:?}: acting {acting:?}, holding the floating address {holding:?} (dead: {:?})",
                self.dead
            ));
        } else if let Some(k) = self.steady.filter(|k| *k != acting[0]) {
            out.failures.push(format!(
                "redirector {} acts at the end, not {k}, which acted when the etcd member died (the quorum held)",
                acting[0]
            ));
        }
        Ok(())
    }

    /// The running redirectors that act, and those that hold the floating
    /// address.
    fn picture(&self, c: &Cluster) -> anyhow::Result<(Vec<usize>, Vec<usize>)> {
        let (mut acting, mut holding) = (Vec::new(), Vec::new());
        for k in (0..self.redirectors).filter(|k| !self.dead.contains(k)) {
            let status = c.redirector_status(k)?;
            if status["coordination"]["acting"].as_bool() == Some(true) {
                acting.push(k);
            }
            if c.holds_floating(k)? {
                holding.push(k);
            }
        }
        Ok((acting, holding))
    }
}

fn note_takeover(out: &mut Outcome, ms: f64) {
    out.takeover_ms = Some(out.takeover_ms.map_or(ms, |t| t.max(ms)));
}

/// Wait until redirector `k`, which acts, holds the floating address.
fn wait_floating(c: &Cluster, k: usize, out: &mut Outcome) -> anyhow::Result<()> {
    let deadline = Instant::now() + FLOATING_LIMIT;
    while !c.holds_floating(k)? {
        if Instant::now() >= deadline {
            out.failures.push(format!(
                "redirector {k} acts but holds no floating address after {FLOATING_LIMIT:?}"
            ));
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}
