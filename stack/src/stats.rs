//! Counters: every drop and every notable event is counted here.

/// Monotonic counters of one [`crate::Stack`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Packets handed to [`Stack::handle_packet`](crate::Stack::handle_packet),
    /// counted on arrival, before any check.
    pub packets_in: u64,
    /// Packets returned by [`Stack::poll_transmit`](crate::Stack::poll_transmit)
    /// (a segment cut by segmentation offload counts once).
    pub packets_out: u64,
    /// Bytes of the packets counted in `packets_in` (IP headers included).
    pub bytes_in: u64,
    /// Bytes of the packets counted in `packets_out` (IP headers included).
    pub bytes_out: u64,
    /// Not IPv4, bad IPv4 header or checksum, truncated.
    pub drop_bad_ip: u64,
    /// Bad TCP header, checksum, options or flag combination.
    pub drop_bad_tcp: u64,
    /// IP protocols we do not handle.
    pub drop_unknown_protocol: u64,
    /// Segments for no connection and no listener (answered with RST unless backup).
    pub drop_no_socket: u64,
    /// Segments outside the receive window (answered with an ACK).
    pub drop_out_of_window: u64,
    /// RFC 7323 PAWS rejections.
    pub drop_paws: u64,
    /// Out-of-order data dropped because the reassembly limit was reached.
    pub drop_ooo_limit: u64,
    /// Of those, dropped because the stack-wide out-of-order budget was
    /// spent (`Config::ooo_budget`), not the connection's own limit.
    pub drop_ooo_budget: u64,
    /// SYNs dropped: backlog and cookies both unavailable, or connection limit.
    pub drop_syn_overflow: u64,
    /// RFC 5961 challenge ACKs sent.
    pub challenge_acks: u64,
    /// SYN-ACKs carrying a SYN cookie, sent when a listener's SYN backlog
    /// (or the stack's half-open limit) is full; standalone stacks only.
    pub syn_cookies_sent: u64,
    /// ACKs that validated as SYN cookies and opened a connection.
    pub syn_cookies_accepted: u64,
    /// ACKs for a listener that looked like answers to SYN cookies but did not
    /// validate (dropped).
    pub syn_cookies_rejected: u64,
    /// RSTs generated: by `abort`, in reply to an unacceptable ACK, or to a
    /// segment for no connection and no listener.
    pub resets_sent: u64,
    /// Acceptable RSTs received (RFC 9293 3.10.7.4, RFC 5961): each reset a
    /// connection.
    pub resets_received: u64,
    /// Segments retransmitted, whatever the cause: timeout, fast retransmit and
    /// recovery (RFC 5681, RFC 6675), or go-back-N after a timeout.
    pub retransmits: u64,
    /// Fast retransmits entered: three duplicate ACKs, or SACK showing three
    /// segments' worth of loss (RFC 5681 3.2, RFC 6675).
    pub fast_retransmits: u64,
    /// Retransmission timeouts that fired and retransmitted (RFC 6298); the one
    /// that gives the connection up is not counted.
    pub rto_expirations: u64,
    /// ICMP echo replies sent in answer to echo requests.
    pub icmp_echo_replies: u64,
    /// ICMP destination unreachable messages received.
    pub icmp_unreachable_received: u64,
    /// ICMPv6 Packet Too Big messages received.
    pub icmp_packet_too_big: u64,
    /// Packet Too Big messages that lowered a connection's send MSS (the
    /// others quoted nothing in flight, or no smaller size).
    pub path_mtu_lowered: u64,
    /// ICMPv6 messages a host on a point-to-point link does not act on
    /// (neighbour discovery, multicast listener reports, echo replies).
    pub icmp_ignored: u64,
    /// Connections created in this stack: by a listener (SYN received or SYN
    /// cookie validated), by `connect`, by `import`, or from a logged
    /// "opened" record (`import_open`, a backup that missed the SYN).
    pub connections_opened: u64,
    /// Connections that reached CLOSED (closed, reset, refused or timed
    /// out); those removed by `abort` or `export` are not counted.
    pub connections_closed: u64,
    /// Output dropped because this stack is a backup (suppressed, by design).
    pub suppressed_segments: u64,
    /// Joining replica: segments of connections not yet transferred, held
    /// until their snapshot arrives, and those dropped over the limit.
    pub parked_segments: u64,
    /// Parked segments dropped because the parking limit was reached.
    pub drop_parking_full: u64,
    /// Output the driver discarded: the replica had no lease to send (a
    /// primary whose keepalives went unanswered), or the device refused it.
    pub drop_output_no_lease: u64,
    /// Packets from `poll_transmit` the device refused to write (reported by
    /// the driver through `count_dropped_output`).
    pub drop_output_device: u64,
    /// IPv4 fragments refused (`FragmentPolicy::Drop`, the default) or
    /// given up by reassembly (overlapping, malformed, over its budget or
    /// timed out).
    pub drop_fragment: u64,
    /// Datagrams reassembled from fragments (`FragmentPolicy::Reassemble`).
    pub fragments_reassembled: u64,
    /// Segments from a source no host can have (0.0.0.0, broadcast,
    /// multicast, 127/8, 240/4) or to a broadcast or multicast address
    /// (RFC 1122 3.2.1.3, RFC 9293 3.10.7.2): dropped unanswered.
    pub drop_bad_address: u64,
    /// Half-open connections (SYN-RECEIVED) that reached the end of their
    /// lifetime without the handshake's final ACK, in any role.
    pub half_open_expired: u64,
    /// Half-open copies whose handshake a replica completed from the
    /// primary's "opened" record (it had lost the client's ACK).
    pub half_open_completed: u64,
    /// Backup: half-open connections made from the primary's record (this
    /// replica lost the client's SYN).
    pub half_open_repaired: u64,
}

impl Stats {
    /// Every counter with its name, for metrics endpoints.
    pub fn counters(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("packets_in", self.packets_in),
            ("packets_out", self.packets_out),
            ("bytes_in", self.bytes_in),
            ("bytes_out", self.bytes_out),
            ("drop_bad_ip", self.drop_bad_ip),
            ("drop_bad_tcp", self.drop_bad_tcp),
            ("drop_unknown_protocol", self.drop_unknown_protocol),
            ("drop_no_socket", self.drop_no_socket),
            ("drop_out_of_window", self.drop_out_of_window),
            ("drop_paws", self.drop_paws),
            ("drop_ooo_limit", self.drop_ooo_limit),
            ("drop_ooo_budget", self.drop_ooo_budget),
            ("drop_syn_overflow", self.drop_syn_overflow),
            ("challenge_acks", self.challenge_acks),
            ("syn_cookies_sent", self.syn_cookies_sent),
            ("syn_cookies_accepted", self.syn_cookies_accepted),
            ("syn_cookies_rejected", self.syn_cookies_rejected),
            ("resets_sent", self.resets_sent),
            ("resets_received", self.resets_received),
            ("retransmits", self.retransmits),
            ("fast_retransmits", self.fast_retransmits),
            ("rto_expirations", self.rto_expirations),
            ("icmp_echo_replies", self.icmp_echo_replies),
            ("icmp_unreachable_received", self.icmp_unreachable_received),
            ("icmp_packet_too_big", self.icmp_packet_too_big),
            ("path_mtu_lowered", self.path_mtu_lowered),
            ("icmp_ignored", self.icmp_ignored),
            ("connections_opened", self.connections_opened),
            ("connections_closed", self.connections_closed),
            ("suppressed_segments", self.suppressed_segments),
            ("parked_segments", self.parked_segments),
            ("drop_parking_full", self.drop_parking_full),
            ("drop_output_no_lease", self.drop_output_no_lease),
            ("drop_output_device", self.drop_output_device),
            ("drop_fragment", self.drop_fragment),
            ("fragments_reassembled", self.fragments_reassembled),
            ("drop_bad_address", self.drop_bad_address),
            ("half_open_expired", self.half_open_expired),
            ("half_open_completed", self.half_open_completed),
            ("half_open_repaired", self.half_open_repaired),
        ]
    }
}
