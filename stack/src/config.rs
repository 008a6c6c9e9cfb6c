//! Stack configuration.

use std::net::IpAddr;

use hydra_base::time::Duration;

/// Which congestion controller new connections use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CongestionKind {
    /// RFC 5681 with RFC 6582 NewReno fast recovery.
    NewReno,
    /// RFC 9438 CUBIC.
    #[default]
    Cubic,
}

/// What the stack does with IPv4 fragments (packets with More Fragments
/// set or a non-zero fragment offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FragmentPolicy {
    /// Drop every fragment and count it in `Stats::drop_fragment`. TCP
    /// never needs fragments here: peers learn our MSS from the SYN and
    /// clients set Don't Fragment (path MTU discovery), so only an attacker
    /// or a broken middlebox sends them, and keeping none means fragments
    /// cannot tie up memory or overlap each other.
    #[default]
    Drop,
    /// Reassemble (RFC 1122 section 3.3.2) within bounds: incomplete
    /// datagrams hold at most `max_bytes` together (the oldest is given up
    /// to make room) and are given up `timeout` after their first fragment
    /// (Linux: 4 MiB, 30 s). A fragment that overlaps another or
    /// contradicts the datagram's end drops the whole datagram. Every
    /// fragment given up counts in `Stats::drop_fragment`.
    Reassemble {
        /// Bytes all incomplete datagrams may hold together.
        max_bytes: usize,
        /// Age at which an incomplete datagram is given up.
        timeout: Duration,
    },
}

impl FragmentPolicy {
    /// Reassembly with Linux's default bounds (4 MiB, 30 s).
    pub const LINUX_REASSEMBLY: FragmentPolicy = FragmentPolicy::Reassemble {
        max_bytes: 4 << 20,
        timeout: Duration::from_secs(30),
    };
}

/// Tunables of one [`crate::Stack`]. `Default` gives Linux-like values and
/// a fresh secret key drawn from the OS random source.
#[derive(Debug, Clone)]
pub struct Config {
    /// Secret key for RFC 6528 initial sequence numbers, timestamp offsets
    /// and SYN cookies. `Default` draws a new one from the operating
    /// system's random source for each configuration, so nobody can predict
    /// a stack's ISNs from the source code; the members of one group set the
    /// same key (derived from the group key) so every member derives the
    /// same server ISN.
    pub isn_key: [u8; 16],
    /// MSS we advertise and the cap on what we send (bytes of payload), for
    /// IPv4; IPv6 connections use 20 bytes less, its header being 20 bytes
    /// longer (see [`Config::mss_for`]).
    pub mss: u16,
    /// Receive buffer per connection, bytes (advertised window upper bound).
    pub recv_buffer: usize,
    /// Send buffer per connection, bytes.
    pub send_buffer: usize,
    /// Bytes of out-of-order data kept per connection, beyond which segments are dropped.
    pub ooo_limit: usize,
    /// Bytes of out-of-order data kept over all connections: once they
    /// hold this much, further out-of-order segments are dropped (counted
    /// in `drop_ooo_budget`; the senders retransmit them in order later).
    /// In-order data is never refused for it.
    pub ooo_budget: usize,
    /// Maximum half-open connections per listener before SYN cookies are used.
    pub syn_backlog: usize,
    /// Maximum half-open connections over all listeners, the same way
    /// (standalone: SYN cookies; in a group: the SYN is dropped).
    pub max_half_open: usize,
    /// What to do with IPv4 fragments: drop and count them (the default),
    /// or reassemble them within a byte budget and a timeout.
    pub fragments: FragmentPolicy,
    /// Maximum established connections waiting in a listener's accept queue.
    pub accept_backlog: usize,
    /// Congestion control algorithm of new connections.
    pub congestion: CongestionKind,
    /// Offer and accept the window scale option (RFC 7323).
    pub window_scaling: bool,
    /// Offer and accept the timestamps option (RFC 7323: RTT measurement, PAWS).
    pub timestamps: bool,
    /// Offer and accept SACK-permitted (RFC 2018), and use the peer's SACK blocks.
    pub sack: bool,
    /// Send SACK blocks in our ACKs. Replicated primaries turn this off so a
    /// client never skips retransmitting bytes a backup may lack.
    pub sack_blocks: bool,
    /// RFC 1122 delayed ACK timeout; `None` acknowledges every segment at once.
    pub delayed_ack: Option<Duration>,
    /// Disable Nagle on new connections.
    pub nodelay: bool,
    /// Lower bound of the retransmission timeout (RFC 6298 (2.4)).
    pub rto_min: Duration,
    /// Upper bound of the retransmission timeout, backoff included.
    pub rto_max: Duration,
    /// Retransmission timeout before the first RTT sample (RFC 6298 (2.1)).
    pub rto_initial: Duration,
    /// Data retransmissions before the connection is aborted.
    pub max_retransmissions: u32,
    /// SYN-ACK retransmissions before a half-open connection is dropped
    /// (Linux's `tcp_synack_retries`, 5: about 63 s with a 1 s initial
    /// timeout), so a spoofed SYN buys little traffic and memory.
    pub synack_retries: u32,
    /// Idle time before keepalive probes, `None` disables keepalive.
    pub keepalive: Option<Duration>,
    /// Time between keepalive probes while the peer does not answer.
    pub keepalive_interval: Duration,
    /// Unanswered keepalive probes after which the connection times out.
    pub keepalive_probes: u32,
    /// TIME-WAIT duration (2 * MSL).
    pub time_wait: Duration,
    /// IPv4 TTL of emitted packets.
    pub ttl: u8,
    /// Upper bound on connections the stack holds; SYNs beyond it are dropped and counted.
    pub max_connections: usize,
    /// Answer ICMP echo requests.
    pub icmp_echo: bool,
    /// Largest TCP payload `poll_transmit` may put in one packet (GSO super-segments
    /// may exceed the MSS when the device splits them). `None` means one MSS.
    pub max_segment_payload: Option<usize>,
}

/// 16 bytes from the kernel's random source (`getrandom(2)`, which blocks
/// only until the pool is first initialised at boot).
fn random_key() -> [u8; 16] {
    let mut key = [0u8; 16];
    let mut filled = 0;
    while filled < key.len() {
        // SAFETY: writes at most the remaining length into our buffer.
        let n =
            unsafe { libc::getrandom(key[filled..].as_mut_ptr().cast(), key.len() - filled, 0) };
        if n > 0 {
            filled += n as usize;
        } else if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            // No random source at all: a key nobody can read from the
            // source is still better than a constant. Mix what differs.
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let seed = t ^ (u128::from(std::process::id()) << 64) ^ (&key as *const _ as u128);
            key = seed.to_le_bytes();
            break;
        }
    }
    key
}

impl Config {
    /// The MSS a connection over `ip`'s family advertises and sends at most:
    /// [`mss`](Self::mss) for IPv4, 20 bytes less for IPv6 (RFC 8200's
    /// 40-byte header), never below IPv6's minimum of 1,220 (RFC 8200 section
    /// 5: every link carries 1,280-byte packets).
    pub fn mss_for(&self, ip: IpAddr) -> u16 {
        match ip {
            IpAddr::V4(_) => self.mss,
            IpAddr::V6(_) => self.mss.saturating_sub(20).max(DEFAULT_MSS_V6),
        }
    }
}

/// The MSS assumed of a peer that sends no MSS option (RFC 9293 section
/// 3.7.1): 536 bytes over IPv4, 1,220 over IPv6.
pub fn default_mss(ip: IpAddr) -> u16 {
    match ip {
        IpAddr::V4(_) => 536,
        IpAddr::V6(_) => DEFAULT_MSS_V6,
    }
}

const DEFAULT_MSS_V6: u16 = 1220;

impl Default for Config {
    fn default() -> Self {
        Config {
            isn_key: random_key(),
            mss: 1460,
            recv_buffer: 4 << 20,
            send_buffer: 4 << 20,
            ooo_limit: 4 << 20,
            ooo_budget: 256 << 20,
            syn_backlog: 1024,
            max_half_open: 4096,
            fragments: FragmentPolicy::Drop,
            accept_backlog: 4096,
            congestion: CongestionKind::Cubic,
            window_scaling: true,
            timestamps: true,
            sack: true,
            sack_blocks: true,
            delayed_ack: Some(Duration::from_millis(40)),
            nodelay: false,
            rto_min: Duration::from_millis(200),
            rto_max: Duration::from_secs(60),
            rto_initial: Duration::from_secs(1),
            synack_retries: 5,
            max_retransmissions: 15,
            keepalive: None,
            keepalive_interval: Duration::from_secs(75),
            keepalive_probes: 9,
            time_wait: Duration::from_secs(60),
            ttl: 64,
            max_connections: 65536,
            icmp_echo: true,
            max_segment_payload: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_configuration_has_its_own_secret_key() {
        let keys: Vec<[u8; 16]> = (0..4).map(|_| Config::default().isn_key).collect();
        for (i, a) in keys.iter().enumerate() {
            assert_ne!(*a, [0x5a; 16], "the former constant key");
            for b in &keys[i + 1..] {
                assert_ne!(a, b, "two default configurations share a key");
            }
        }
    }
}
