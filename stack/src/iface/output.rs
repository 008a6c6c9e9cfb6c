//! Time and output: timers firing, segments out (with segmentation offload),
//! and what the driver polls for.

use super::*;
use crate::wire::{self};
use hydra_base::time::Instant;

impl Stack {
    /// Run every timer due at `now`: retransmission (RFC 6298), delayed ACK,
    /// persist (zero-window probes), keepalive, TIME-WAIT and half-open
    /// expiry. Call it once [`poll_timeout`](Self::poll_timeout)'s deadline
    /// has passed (calling it early is harmless), then drain
    /// [`poll_event`](Self::poll_event) and [`poll_transmit`](Self::poll_transmit).
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&Reverse((at, key))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(tcb) = self.conns.get_mut(&key) else {
                continue;
            };
            if tcb.scheduled_deadline != Some(at) {
                continue; // stale entry
            }
            tcb.scheduled_deadline = None;
            if tcb.timers.next().is_some_and(|d| d <= now) {
                let sig = tcb.on_timeout(now, &self.cfg, &mut self.stats);
                self.after_change(key, sig);
            } else {
                self.update_timer(key);
            }
        }
    }

    /// Write the next packet to send into `buf` (an IPv4 packet, ready for
    /// the device); returns its length, or `None` when nothing is waiting.
    /// Control packets (RSTs, ICMP, SYN-cookie SYN-ACKs) come first, then
    /// connections' segments in round robin. Call it until it returns `None`
    /// after every [`handle_packet`](Self::handle_packet),
    /// [`handle_timeout`](Self::handle_timeout) and application call. A
    /// primary acknowledges no more than its gate allows (see
    /// [`set_gate`](Self::set_gate)); a backup returns none of its
    /// connections' segments (what its application writes counts as sent).
    /// `buf` should hold [`MAX_PACKET`] bytes: a control packet larger than
    /// `buf` is kept and `None` returned.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        self.poll_transmit_segmented(now, buf).map(|(n, _)| n)
    }

    /// Let data segments carry up to `max_payload` bytes (whole multiples
    /// of the connection's segment size) for a device that cuts them
    /// (segmentation offload); `None`: one segment's worth, as on the wire.
    pub fn set_segmentation_offload(&mut self, max_payload: Option<usize>) {
        self.cfg.max_segment_payload = max_payload;
    }

    /// Like [`Stack::poll_transmit`]; also returns, for a segment carrying
    /// more data than one wire segment may, the data bytes per wire segment
    /// the device must cut it into.
    pub fn poll_transmit_segmented(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> Option<(usize, Option<usize>)> {
        if let Some(pkt) = self.control.pop_front() {
            if buf.len() < pkt.len() {
                return None;
            }
            buf[..pkt.len()].copy_from_slice(&pkt);
            self.count_out(pkt.len());
            return Some((pkt.len(), None));
        }
        while let Some(key) = self.ready.pop_front() {
            let Some(tcb) = self.conns.get_mut(&key) else {
                self.in_ready.remove(&key);
                continue;
            };
            let room = buf
                .len()
                .saturating_sub(wire::ip_header_len(key.local.ip()) + 60);
            let max_payload = self.cfg.max_segment_payload.unwrap_or(0).min(room);
            let segment_payload = tcb.effective_mss(&self.cfg);
            match tcb.poll_output(now, &self.cfg, max_payload, &mut self.stats) {
                Some(out) => {
                    let cut = (out.payload_len > segment_payload).then_some(segment_payload);
                    let payload = tcb.send.slices(out.payload_seq, out.payload_len);
                    let written = wire::emit_tcp(
                        buf,
                        tcb.key.local,
                        tcb.key.remote,
                        self.cfg.ttl,
                        &out.header,
                        payload,
                    );
                    // More may follow: keep it scheduled, behind the others (round robin).
                    self.ready.push_back(key);
                    self.update_timer(key);
                    if let Some(n) = written {
                        self.count_out(n);
                        return Some((n, cut));
                    }
                }
                None => {
                    self.in_ready.remove(&key);
                    self.update_timer(key);
                }
            }
        }
        None
    }

    pub(super) fn count_out(&mut self, n: usize) {
        self.stats.packets_out += 1;
        self.stats.bytes_out += n as u64;
    }

    /// The earliest deadline of any connection's timers: call
    /// [`handle_timeout`](Self::handle_timeout) once it has passed. `None`
    /// when no timer is running (nothing happens until a packet or a call).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    /// Something is waiting in `poll_transmit`.
    pub fn has_output(&self) -> bool {
        !self.control.is_empty() || !self.ready.is_empty()
    }

    /// An event is waiting for [`Stack::poll_event`].
    pub fn has_event(&self) -> bool {
        !self.events.is_empty()
    }

    /// The oldest pending [`Event`] for the application or the replication
    /// layer, or `None`. Drain it after every
    /// [`handle_packet`](Self::handle_packet),
    /// [`handle_timeout`](Self::handle_timeout) and application call; an
    /// event already pending is not queued twice.
    pub fn poll_event(&mut self) -> Option<Event> {
        let ev = self.events.pop_front()?;
        self.queued_events.remove(&ev);
        Some(ev)
    }
}
