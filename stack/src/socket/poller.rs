//! Non-blocking readiness for event loops: set streams non-blocking, then
//! wait on a [`Poller`] for the core's events and retry what they name.

use std::time::Duration;

use super::{lock, wait_change, NetStack, WaitKey};
use crate::iface::Event;

/// Receives the stack's events (`Readable`, `Writable`, `Acceptable`,
/// `Closed`...). Events are coalesced per connection, so the queue is bounded.
pub struct Poller {
    net: NetStack,
}

impl Poller {
    /// A poller on `net`'s stack: from now on the driver keeps the core's
    /// events for [`wait`](Self::wait) (until the last poller is dropped).
    pub fn new(net: &NetStack) -> Poller {
        lock(&net.shared).pollers += 1;
        Poller { net: net.clone() }
    }

    /// Move pending events into `events`, waiting up to `timeout` (None =
    /// forever) if there are none. Returns how many were added.
    pub fn wait(&self, events: &mut Vec<Event>, timeout: Option<Duration>) -> usize {
        let shared = &self.net.shared;
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        let mut g = lock(shared);
        loop {
            if !g.poll_events.is_empty() || g.stopped {
                let n = g.poll_events.len();
                events.extend(g.poll_events.drain(..));
                return n;
            }
            let (g2, in_time) = wait_change(shared, g, WaitKey::Any, deadline);
            g = g2;
            if !in_time {
                return 0;
            }
        }
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        let mut g = lock(&self.net.shared);
        g.pollers = g.pollers.saturating_sub(1);
        if g.pollers == 0 {
            g.poll_events.clear();
        }
    }
}
