//! The acting redirector's heartbeat in the simulated store, as the real
//! agent keeps it (`redirector::coordination::heartbeat`): the authority
//! writes the heartbeat key every interval, fenced by its authority key,
//! and acts only until [`ACTING_BEATS`] intervals after *sending* the last
//! heartbeat the store took; a standby reads the key with the authority
//! key and revokes the authority's lease once the key's revision has not
//! changed for [`SILENT_BEATS`] intervals, counted from its own first read
//! of that revision.

/// The acting redirector stops acting this many intervals after sending
/// its last heartbeat that the store took.
pub(super) const ACTING_BEATS: u64 = 3;
/// A standby revokes the authority after this many intervals without a
/// new heartbeat.
pub(super) const SILENT_BEATS: u64 = 4;

/// What a read of the heartbeat key found (written under the authority
/// key's lease).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Beat {
    /// The key's `mod_revision`: changes with every heartbeat.
    pub(super) revision: i64,
    /// The writer's interval (microseconds), as its value says.
    pub(super) interval: u64,
}

/// A standby's watch over the authority's heartbeat.
#[derive(Debug, Default)]
pub(super) struct Watch {
    /// The revision last read and when it was first read (microseconds).
    seen: Option<(i64, u64)>,
}

impl Watch {
    /// Note what a read of the heartbeat key found at `now` (None: no
    /// heartbeat under the holder's lease). True when the authority has
    /// been silent long enough to be revoked.
    pub(super) fn silent(&mut self, now: u64, beat: Option<Beat>) -> bool {
        let Some(beat) = beat else {
            // No heartbeat: the lease alone decides.
            self.seen = None;
            return false;
        };
        match self.seen {
            Some((revision, since)) if revision == beat.revision => {
                now.saturating_sub(since) >= beat.interval * SILENT_BEATS
            }
            _ => {
                self.seen = Some((beat.revision, now));
                false
            }
        }
    }

    /// Start over (after a revocation, or on becoming the authority).
    pub(super) fn reset(&mut self) {
        self.seen = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::groupsim::us;

    #[test]
    fn silence_counts_from_the_first_read_of_a_revision() {
        let beat = |revision| {
            Some(Beat {
                revision,
                interval: us(20),
            })
        };
        let mut w = Watch::default();
        assert!(!w.silent(us(0), beat(5)));
        assert!(!w.silent(us(60), beat(5)));
        assert!(!w.silent(us(70), beat(6)), "a new heartbeat");
        assert!(!w.silent(us(140), beat(6)));
        assert!(w.silent(us(150), beat(6)), "four intervals silent");
        assert!(!w.silent(us(160), None), "no heartbeat: the lease decides");
        assert!(!w.silent(us(400), beat(6)), "counted again from here");
        w.reset();
        assert!(!w.silent(us(500), beat(6)));
        assert!(w.silent(us(580), beat(6)));
    }
}
