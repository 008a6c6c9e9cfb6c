//! Sending the copies of client packets to a group's replicas, a batch at a
//! time: runs of equal-sized packets to one replica go as one coalesced
//! datagram (UDP segmentation offload), which the replica cuts back into
//! the same packets.

use std::io;
use std::net::{SocketAddr, UdpSocket};

use hydra_ops::udp_offload::{disable_checksums, send_segments, MAX_COALESCED, MAX_SEGMENTS};
use stack::wire::split_tcp;

use crate::status::Counters;

/// Client packets read in one loop turn, each tagged with its group.
pub struct Inbox {
    data: Vec<u8>,
    slot: usize,
    capacity: usize,
    packets: Vec<(usize, usize)>,
    /// Longer packets (coalesced segments) are sent alone: a coalesced
    /// send's segments must each fit the path's MTU.
    max_run_packet: usize,
}

impl Inbox {
    /// Room for `capacity` packets of up to `slot` bytes; packets of up to
    /// `max_run_packet` bytes travel in runs.
    pub fn new(slot: usize, capacity: usize, max_run_packet: usize) -> Inbox {
        Inbox {
            data: vec![0; slot * capacity],
            slot,
            capacity,
            packets: Vec::with_capacity(capacity),
            max_run_packet,
        }
    }

    pub fn clear(&mut self) {
        self.packets.clear();
    }

    /// Slots left for packets this turn.
    pub fn room(&self) -> usize {
        self.capacity - self.packets.len()
    }

    /// Where the next packet is read to.
    pub fn next_slot(&mut self) -> &mut [u8] {
        let i = self.packets.len();
        &mut self.data[i * self.slot..(i + 1) * self.slot]
    }

    /// Keep the packet just read into [`Inbox::next_slot`] for `group`.
    /// One too long for a datagram (a segment the kernel coalesced) is cut
    /// into two segments in two slots; false (not kept) when it cannot be.
    pub fn push(&mut self, len: usize, group: usize) -> bool {
        debug_assert!(len <= self.slot && self.room() > 0);
        if len <= MAX_COALESCED {
            self.packets.push((len, group));
            return true;
        }
        if self.room() < 2 {
            return false;
        }
        let at = self.packets.len() * self.slot;
        let (this, next) = self.data[at..].split_at_mut(self.slot);
        match split_tcp(&mut this[..len], len / 2, &mut next[..self.slot]) {
            Some((first, second)) => {
                self.packets.push((first, group));
                self.packets.push((second, group));
                true
            }
            None => false,
        }
    }

    fn packet(&self, i: usize) -> &[u8] {
        &self.data[i * self.slot..i * self.slot + self.packets[i].0]
    }

    /// Groups with packets this turn, each once.
    fn groups(&self) -> Vec<usize> {
        let mut groups: Vec<usize> = self.packets.iter().map(|&(_, g)| g).collect();
        groups.sort_unstable();
        groups.dedup();
        groups
    }

    /// The packets of `group` in arrival order, cut into runs that one
    /// coalesced send can carry: all of a run's packets have its first
    /// packet's size except a shorter last one.
    fn runs(&self, group: usize) -> Vec<Vec<&[u8]>> {
        let mut runs: Vec<Vec<&[u8]>> = Vec::new();
        let mut run: Vec<&[u8]> = Vec::new();
        let mut bytes = 0;
        for (i, &(len, g)) in self.packets.iter().enumerate() {
            if g != group {
                continue;
            }
            let joins = match (run.first(), run.last()) {
                (Some(first), Some(last)) => {
                    len <= first.len()
                        && first.len() <= self.max_run_packet
                        && last.len() == first.len()
                        && run.len() < MAX_SEGMENTS
                        && bytes + len <= MAX_COALESCED
                }
                _ => true,
            };
            if !joins {
                runs.push(std::mem::take(&mut run));
                bytes = 0;
            }
            run.push(self.packet(i));
            bytes += len;
        }
        if !run.is_empty() {
            runs.push(run);
        }
        runs
    }
}

/// The data sockets to the replicas: runs go coalesced (segmentation
/// offload, while the kernel accepts it), single packets without a UDP
/// checksum.
pub struct CopySender {
    socket: UdpSocket,
    singles: UdpSocket,
    offload: bool,
}

impl CopySender {
    /// `socket` sends runs; `singles` (bound to the same address) sends
    /// packets one at a time, with UDP checksums off when the kernel allows.
    pub fn new(socket: UdpSocket, singles: UdpSocket) -> CopySender {
        if let Err(e) = disable_checksums(&singles) {
            tracing::warn!("cannot turn UDP checksums off for copies ({e}); keeping them");
        }
        CopySender {
            socket,
            singles,
            offload: true,
        }
    }

    /// Send every packet in `inbox` to each of its group's `destinations`.
    pub fn send(
        &mut self,
        inbox: &Inbox,
        destinations: &[(u64, Vec<SocketAddr>)],
        counters: &mut Counters,
    ) {
        for group in inbox.groups() {
            let targets = &destinations[group].1;
            for run in inbox.runs(group) {
                if targets.is_empty() {
                    counters.dropped_no_member += run.len() as u64;
                }
                for &to in targets {
                    self.send_run(to, &run, counters);
                }
            }
        }
    }

    fn send_run(&mut self, to: SocketAddr, run: &[&[u8]], counters: &mut Counters) {
        if self.offload && run.len() > 1 {
            match send_segments(&self.socket, to, run, run[0].len()) {
                Ok(()) => {
                    counters.copies_sent += run.len() as u64;
                    counters.coalesced_sends += 1;
                    return;
                }
                Err(e) if offload_unsupported(&e) => {
                    tracing::warn!(
                        "UDP segmentation offload refused ({e}); sending copies one by one"
                    );
                    self.offload = false;
                }
                Err(_) => {
                    // A lost copy is recovered by the client's retransmission.
                    counters.copy_errors += run.len() as u64;
                    return;
                }
            }
        }
        for packet in run {
            match self.singles.send_to(packet, to) {
                Ok(_) => counters.copies_sent += 1,
                Err(_) => counters.copy_errors += 1,
            }
        }
    }
}

/// Errors that say the kernel or the route cannot segment, not that this
/// one send failed.
fn offload_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EIO | libc::EINVAL | libc::ENOPROTOOPT | libc::EOPNOTSUPP)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inbox(packets: &[(usize, usize)]) -> Inbox {
        let mut inbox = Inbox::new(1500, 64, 1500);
        for &(len, group) in packets {
            inbox.next_slot()[..len].fill(len as u8);
            assert!(inbox.push(len, group));
        }
        inbox
    }

    fn run_sizes(inbox: &Inbox, group: usize) -> Vec<Vec<usize>> {
        inbox
            .runs(group)
            .iter()
            .map(|r| r.iter().map(|p| p.len()).collect())
            .collect()
    }

    #[test]
    fn runs_keep_order_and_end_at_a_shorter_or_longer_packet() {
        let i = inbox(&[
            (1400, 0),
            (1400, 0),
            (52, 0),
            (1400, 0),
            (100, 1),
            (1400, 0),
            (1500, 0),
        ]);
        assert_eq!(
            run_sizes(&i, 0),
            vec![vec![1400, 1400, 52], vec![1400, 1400], vec![1500]]
        );
        assert_eq!(run_sizes(&i, 1), vec![vec![100]]);
        assert_eq!(i.groups(), vec![0, 1]);
    }

    #[test]
    fn a_run_stops_at_the_datagram_limit() {
        let i = inbox(&[(1500, 0); 64]);
        let runs = run_sizes(&i, 0);
        assert!(runs
            .iter()
            .all(|r| r.iter().sum::<usize>() <= MAX_COALESCED));
        assert_eq!(runs.iter().map(Vec::len).sum::<usize>(), 64);
        assert_eq!(runs[0].len(), MAX_COALESCED / 1500);
    }

    #[test]
    fn every_copy_reaches_every_replica_in_order() {
        let rx: Vec<UdpSocket> = (0..2)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let addrs: Vec<SocketAddr> = rx.iter().map(|s| s.local_addr().unwrap()).collect();
        let sizes = [1400, 1400, 1400, 60, 1400, 900, 1400, 1400];
        let i = inbox(&sizes.map(|n| (n, 0)));
        let mut sender = CopySender::new(
            UdpSocket::bind("127.0.0.1:0").unwrap(),
            UdpSocket::bind("127.0.0.1:0").unwrap(),
        );
        let mut counters = Counters::default();
        sender.send(&i, &[(1, addrs)], &mut counters);
        assert_eq!(counters.copies_sent, 2 * sizes.len() as u64);
        for s in &rx {
            s.set_read_timeout(Some(std::time::Duration::from_secs(2)))
                .unwrap();
            let mut buf = [0u8; 2048];
            for &n in &sizes {
                let got = s.recv(&mut buf).unwrap();
                assert_eq!(got, n);
                assert!(buf[..got].iter().all(|&b| b == n as u8));
            }
        }
    }
}
