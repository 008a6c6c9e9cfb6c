//! The views the redirector keeps across its own restart (`state_file`):
//! each group's epoch and members, and which groups an operator drained. Without it a restarted redirector would
//! start at epoch 0, which the replicas ignore as stale, and every
//! primary's lease would run out: the groups would stop serving.

use std::path::Path;

use ackchannel::control::{SavedMember, ViewAuthority};
use anyhow::Context;
use serde::{Deserialize, Serialize};
use stack::Instant;

#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    groups: Vec<GroupState>,
    /// The drained groups' names.
    #[serde(default)]
    drained: Vec<String>,
}

/// One group's persisted view: what the state file and the coordination
/// store keep of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupState {
    /// The group's name.
    pub name: String,
    /// The view's epoch.
    pub epoch: u64,
    /// Its members, in the view's order.
    pub members: Vec<SavedMember>,
}

impl GroupState {
    /// The view `g` holds now.
    pub fn of(g: &ViewAuthority) -> GroupState {
        let (epoch, members) = g.saved();
        GroupState {
            name: g.name().to_string(),
            epoch,
            members,
        }
    }
}

/// The names of the groups `draining` marks.
pub fn drained_names(groups: &[ViewAuthority], draining: &[bool]) -> Vec<String> {
    groups
        .iter()
        .zip(draining)
        .filter(|(_, &d)| d)
        .map(|(g, _)| g.name().to_string())
        .collect()
}

/// Write every group's view and the drained groups (to a temporary file,
/// then renamed: a crash mid-write leaves the previous state).
pub fn save(path: &Path, groups: &[ViewAuthority], draining: &[bool]) -> anyhow::Result<()> {
    let file = StateFile {
        groups: groups.iter().map(GroupState::of).collect(),
        drained: drained_names(groups, draining),
    };
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&file)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// Restore the groups named in the file (if it exists) and mark the
/// drained ones in `draining`; returns how many groups were restored.
pub fn load(
    path: &Path,
    now: Instant,
    groups: &mut [ViewAuthority],
    draining: &mut [bool],
) -> anyhow::Result<usize> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let file: StateFile = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a redirector state file", path.display()))?;
    for (g, d) in groups.iter().zip(draining.iter_mut()) {
        *d = file.drained.iter().any(|n| n == g.name());
    }
    let mut restored = 0;
    for saved in file.groups {
        let Some(g) = groups.iter_mut().find(|g| g.name() == saved.name) else {
            tracing::warn!(group = %saved.name, "state file names a group no longer configured");
            continue;
        };
        g.restore(now, saved.epoch, &saved.members);
        restored += 1;
    }
    Ok(restored)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ackchannel::auth::GroupKey;
    use ackchannel::control::GroupPolicy;
    use stack::Duration;

    fn authority(name: &str) -> ViewAuthority {
        ViewAuthority::new(GroupPolicy {
            name: name.into(),
            key: GroupKey([1; 32]),
            members: vec![1, 2],
            min_members: 1,
            keepalive_timeout: Duration::from_millis(100),
            lease: Duration::from_millis(60),
            heartbeat: Duration::from_millis(10),
            preferred_primary: None,
        })
    }

    #[test]
    fn views_round_trip_through_the_file_and_bad_files_are_explained() {
        let dir = std::env::temp_dir().join(format!("hydra-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("redirector.state");
        let mut fresh = vec![authority("a")];
        assert_eq!(
            load(&path, Instant::ZERO, &mut fresh, &mut [false]).unwrap(),
            0,
            "no file yet"
        );
        let member = SavedMember {
            id: 2,
            alive: true,
            joining: false,
            data_addr: "198.18.1.12:7100".parse().unwrap(),
            ack_addr: "198.18.1.12:7200".parse().unwrap(),
            incarnation: 77,
        };
        let mut before = vec![authority("a"), authority("b")];
        before[0].restore(Instant::ZERO, 5, std::slice::from_ref(&member));
        save(&path, &before, &[false, true]).unwrap();
        let mut after = vec![authority("a"), authority("b")];
        let mut draining = [true, false];
        assert_eq!(
            load(&path, Instant::ZERO, &mut after, &mut draining).unwrap(),
            2
        );
        assert_eq!(after[0].saved(), (5, vec![member]));
        assert_eq!(draining, [false, true], "b stays drained across a restart");
        // A file written before drained groups were kept reads as none.
        std::fs::write(&path, br#"{"groups": []}"#).unwrap();
        load(&path, Instant::ZERO, &mut after, &mut draining).unwrap();
        assert_eq!(draining, [false, false]);
        std::fs::write(&path, b"not json").unwrap();
        let e = load(&path, Instant::ZERO, &mut after, &mut draining).unwrap_err();
        assert!(
            format!("{e:#}").contains("not a redirector state file"),
            "{e:#}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
