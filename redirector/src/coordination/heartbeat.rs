//! The acting redirector's heartbeat in etcd, so a standby takes over
//! within a few heartbeats of a lost host instead of when the authority's
//! lease runs out (etcd counts leases in whole seconds and revokes an
//! expired one up to half a second late).
//!
//! The acting redirector writes `<prefix>/authority/heartbeat` every
//! heartbeat, fenced by its authority key; the value names it and its
//! heartbeat interval. It acts only while its last heartbeat that etcd
//! took was *sent* less than [`ACTING_BEATS`] intervals ago. A standby
//! reads the key every interval and revokes the authority's lease once the
//! key has not changed for [`SILENT_BEATS`] intervals of its own clock,
//! counted from when it first read that revision. etcd took that revision
//! after it was sent, so by the time the standby revokes, the acting
//! redirector has stopped acting unless a newer heartbeat got through
//! (then it is alive and etcd-connected; the revocation deposes it at its
//! next heartbeat, and the views it may still try to write are fenced).

use std::time::{Duration, Instant};

/// The acting redirector stops acting this many intervals after sending
/// its last heartbeat that etcd took.
pub const ACTING_BEATS: u32 = 3;
/// A standby revokes the authority after this many intervals without a
/// new heartbeat: one interval more than [`ACTING_BEATS`], so the acting
/// one has stopped first.
pub const SILENT_BEATS: u32 = 4;

/// What a heartbeat key says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Beat {
    /// Its `mod_revision`: changes with every heartbeat.
    pub revision: i64,
    /// The writer's heartbeat interval.
    pub interval: Duration,
}

/// The heartbeat value: the writer's name and interval in milliseconds.
pub fn encode(name: &str, interval: Duration) -> Vec<u8> {
    format!("{name} {}", interval.as_millis()).into_bytes()
}

/// The interval a heartbeat value announces (None: not a heartbeat this
/// version writes).
pub fn interval_of(value: &[u8]) -> Option<Duration> {
    let text = std::str::from_utf8(value).ok()?;
    let ms: u64 = text.rsplit_once(' ')?.1.parse().ok()?;
    (1..=60_000)
        .contains(&ms)
        .then(|| Duration::from_millis(ms))
}

/// A standby's watch over the acting redirector's heartbeat.
#[derive(Debug, Default)]
pub struct Watch {
    /// The revision last read and when it was first read.
    seen: Option<(i64, Instant)>,
}

impl Watch {
    /// Note what a read of the heartbeat key found at `now` (None: no
    /// heartbeat key). True when the authority has been silent long enough
    /// to be revoked.
    pub fn silent(&mut self, now: Instant, beat: Option<Beat>) -> bool {
        let Some(beat) = beat else {
            // No heartbeat (an authority that does not write one, or none
            // elected): the lease alone decides.
            self.seen = None;
            return false;
        };
        match self.seen {
            Some((revision, since)) if revision == beat.revision => {
                now.saturating_duration_since(since) >= beat.interval * SILENT_BEATS
            }
            _ => {
                self.seen = Some((beat.revision, now));
                false
            }
        }
    }

    /// Start over (after a revocation, or on becoming the authority).
    pub fn reset(&mut self) {
        self.seen = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_value_names_the_writer_and_its_interval() {
        let v = encode("redirector-a", Duration::from_millis(100));
        assert_eq!(v, b"redirector-a 100");
        assert_eq!(interval_of(&v), Some(Duration::from_millis(100)));
        for bad in [&b"a"[..], b"a 0", b"a x", b"a 999999", b"\xff 10"] {
            assert_eq!(interval_of(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn silence_counts_from_the_first_read_of_a_revision() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let beat = |revision| {
            Some(Beat {
                revision,
                interval: Duration::from_millis(100),
            })
        };
        let mut w = Watch::default();
        assert!(!w.silent(ms(0), beat(5)));
        assert!(!w.silent(ms(300), beat(5)));
        assert!(!w.silent(ms(350), beat(6)), "a new heartbeat");
        assert!(!w.silent(ms(700), beat(6)));
        assert!(w.silent(ms(750), beat(6)), "four intervals silent");
        assert!(!w.silent(ms(800), None), "no heartbeat: the lease decides");
        assert!(!w.silent(ms(2000), beat(6)), "counted again from here");
        w.reset();
        assert!(!w.silent(ms(2500), beat(6)));
        assert!(w.silent(ms(2900), beat(6)));
    }
}
