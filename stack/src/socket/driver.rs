//! The driver thread: moves packets between the device and the core.
//!
//! Device reads and writes happen with the core unlocked, in batches, so
//! application threads contend for the lock only while the core itself runs.

use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;

use super::{lock, now, Hooks, Shared};
use crate::iface::MAX_PACKET;
use crate::phy::Device;
use hydra_base::time::Instant;

/// Packets read or written per loop turn at most (bounds latency and memory).
/// 256 moved bulk data a little faster but made turns long enough, in a
/// takeover of 1,000 connections, for backups to miss their heartbeats
/// (catalogue 15 failed 2 runs in 4; 6 of 6 pass with 64).
const BATCH: usize = 64;
/// Bytes of input buffered per turn at most (a device with receive offload
/// reads packets of up to 64 KiB).
const BATCH_BYTES: usize = 4 << 20;
/// Room for the IPv4 and TCP headers, options included, in a packet.
const MAX_HEADERS: usize = 20 + 60;

/// An eventfd that application threads write to wake the driver.
pub(super) struct Waker {
    fd: RawFd,
}

impl Waker {
    pub(super) fn new() -> io::Result<Waker> {
        // SAFETY: plain eventfd(2); the fd is owned by the Waker and closed on drop.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Waker { fd })
    }

    pub(super) fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64 to our eventfd. A full
        // counter (EAGAIN) means a wake-up is already pending, which is fine.
        unsafe { libc::write(self.fd, (&one as *const u64).cast(), 8) };
    }

    fn drain(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a valid u64 from our nonblocking eventfd.
        unsafe { libc::read(self.fd, (&mut v as *mut u64).cast(), 8) };
    }
}

impl Drop for Waker {
    fn drop(&mut self) {
        // SAFETY: we own fd.
        unsafe { libc::close(self.fd) };
    }
}

/// Packets in one flat buffer, to avoid an allocation per packet.
struct Batch {
    data: Vec<u8>,
    lens: Vec<usize>,
    /// Output only: per packet, the data bytes per wire segment the device
    /// must cut it into (segmentation offload), if it is that large.
    cuts: Vec<Option<usize>>,
    slot: usize,
    capacity: usize,
}

impl Batch {
    fn new(slot: usize) -> Batch {
        let capacity = (BATCH_BYTES / slot).clamp(1, BATCH);
        Batch {
            data: vec![0; slot * capacity],
            lens: Vec::with_capacity(capacity),
            cuts: Vec::with_capacity(capacity),
            slot,
            capacity,
        }
    }
    fn is_full(&self) -> bool {
        self.lens.len() == self.capacity
    }
    fn next_slot(&mut self) -> &mut [u8] {
        let i = self.lens.len();
        &mut self.data[i * self.slot..(i + 1) * self.slot]
    }
    fn packets(&self) -> impl Iterator<Item = &[u8]> {
        self.lens
            .iter()
            .enumerate()
            .map(|(i, &n)| &self.data[i * self.slot..i * self.slot + n])
    }
}

pub(super) fn run<D: Device, H: Hooks>(shared: Arc<Shared>, mut device: D, mut hooks: H) {
    let mtu_slot = device.mtu().clamp(576, MAX_PACKET);
    let in_slot = device.max_packet_in().clamp(mtu_slot, MAX_PACKET);
    // With segmentation offload the stack writes segments of up to 64 KiB
    // and the kernel cuts them: one write per 45 wire packets.
    let out_slot = if device.segmentation_offload() {
        lock(&shared)
            .stack
            .set_segmentation_offload(Some(MAX_PACKET - MAX_HEADERS));
        MAX_PACKET
    } else {
        mtu_slot
    };
    let mut input = Batch::new(in_slot);
    let mut output = Batch::new(out_slot);
    let mut more_output = false;
    let mut write_failures = 0usize;
    loop {
        let deadline = {
            let inner = lock(&shared);
            if inner.stopped {
                return;
            }
            earliest(inner.stack.poll_timeout(), hooks.next_deadline())
        };
        let timeout = if more_output || device.has_buffered_input() {
            Some(Instant::ZERO)
        } else {
            deadline
        };
        wait(&shared, &device, &hooks, timeout);

        input.lens.clear();
        while !input.is_full() {
            match device.recv(input.next_slot()) {
                Ok(n) => input.lens.push(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!("device read failed: {e}");
                    break;
                }
            }
        }

        let mut inner = lock(&shared);
        let now = now(&shared);
        for packet in input.packets() {
            inner.stack.handle_packet(now, packet);
        }
        inner.stack.handle_timeout(now);
        hooks.run(now, &mut inner.stack);
        let mut to_wake: Vec<Arc<std::sync::Condvar>> = Vec::new();
        let mut tasks: Vec<std::task::Waker> = Vec::new();
        // Hooks acting on events can cause new ones (a commit makes bytes
        // readable): a few rounds, so none waits for the next wake-up.
        for _ in 0..4 {
            while let Some(event) = inner.stack.poll_event() {
                hooks.on_event(now, &mut inner.stack, event);
                if inner.pollers > 0 && !inner.poll_events.contains(&event) {
                    inner.poll_events.push_back(event);
                }
                inner.waiters_for(&event, &mut to_wake, &mut tasks);
            }
            hooks.after_events(now, &mut inner.stack);
            if !inner.stack.has_event() {
                break;
            }
        }
        output.lens.clear();
        output.cuts.clear();
        while !output.is_full() {
            match inner.stack.poll_transmit_segmented(now, output.next_slot()) {
                Some((n, cut)) => {
                    output.lens.push(n);
                    output.cuts.push(cut);
                }
                None => break,
            }
        }
        more_output = output.is_full();
        let may_transmit = hooks.may_transmit(now);
        let unleased = if may_transmit { 0 } else { output.lens.len() };
        inner
            .stack
            .count_dropped_output(unleased, std::mem::take(&mut write_failures));
        drop(inner);
        for cv in to_wake.drain(..) {
            cv.notify_all();
        }
        for w in tasks.drain(..) {
            w.wake();
        }
        if may_transmit {
            for (packet, cut) in output.packets().zip(&output.cuts) {
                let sent = match cut {
                    Some(payload) => device.send_segmented(packet, *payload),
                    None => device.send(packet),
                };
                if let Err(e) = sent {
                    // Dropped packets are recovered by TCP retransmission;
                    // counted at the next round.
                    write_failures += 1;
                    tracing::debug!("device write failed: {e}");
                }
            }
        }
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Block until a device, the waker or a hook fd is readable, or `deadline`.
fn wait<D: Device, H: Hooks>(shared: &Shared, device: &D, hooks: &H, deadline: Option<Instant>) {
    let mut fds: Vec<RawFd> = Vec::with_capacity(4);
    fds.push(shared.wake.fd);
    fds.extend(device.raw_fd());
    fds.extend(hooks.fds());
    let timeout = deadline.map(|d| {
        let left = std::time::Duration::from(d.saturating_since(now(shared)));
        left.min(std::time::Duration::from_secs(60))
    });
    // An error here (EBADF, ENOMEM) shows again at the next round's reads;
    // the loop goes on either way.
    let _ = hydra_base::poll::wait_readable(&fds, timeout);
    shared.wake.drain();
}
