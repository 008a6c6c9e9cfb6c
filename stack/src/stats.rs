//! Counters: every drop and every notable event is counted here.

/// Monotonic counters of one [`crate::Stack`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub packets_in: u64,
    pub packets_out: u64,
    pub bytes_in: u64,
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
    /// SYNs dropped: backlog and cookies both unavailable, or connection limit.
    pub drop_syn_overflow: u64,
    /// RFC 5961 challenge ACKs sent.
    pub challenge_acks: u64,
    pub syn_cookies_sent: u64,
    pub syn_cookies_accepted: u64,
    pub syn_cookies_rejected: u64,
    pub resets_sent: u64,
    pub resets_received: u64,
    pub retransmits: u64,
    pub fast_retransmits: u64,
    pub rto_expirations: u64,
    pub icmp_echo_replies: u64,
    pub icmp_unreachable_received: u64,
    pub connections_opened: u64,
    pub connections_closed: u64,
    /// Output dropped because this stack is a backup (suppressed, by design).
    pub suppressed_segments: u64,
}
