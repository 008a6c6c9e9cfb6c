//! Path MTU discovery for TCP (RFC 8201 for IPv6): an ICMPv6 Packet Too Big
//! lowers the connection's send MSS, and what was sent at the old size is
//! sent again at the new one.

use crate::tcp::conn::Tcb;
use crate::wire::IPV6_HEADER_LEN;
use hydra_base::Seq;

/// The smallest MTU an IPv6 link has (RFC 8200 section 5): a Packet Too Big
/// naming less is taken as this.
pub const IPV6_MIN_MTU: u32 = 1280;

/// A TCP header without options.
const TCP_HEADER_LEN: u32 = 20;

impl Tcb {
    /// A Packet Too Big reported `mtu` for a segment of ours starting at
    /// `quoted_seq`. Returns whether the send MSS went down.
    ///
    /// Only a report quoting a sequence number we sent and the peer has not
    /// acknowledged is believed (RFC 5927 section 4.1): an off-path attacker
    /// who cannot see our traffic cannot shrink a connection's segments.
    pub fn on_packet_too_big(&mut self, mtu: u32, quoted_seq: Seq) -> bool {
        let in_flight = quoted_seq >= self.snd_una && quoted_seq < self.snd_max;
        if !self.is_synchronized() || !in_flight {
            return false;
        }
        let mss = mtu.max(IPV6_MIN_MTU) - IPV6_HEADER_LEN as u32 - TCP_HEADER_LEN;
        if mss >= self.mss() {
            return false;
        }
        self.opts.send_mss = mss as u16;
        self.cc.set_mss(mss);
        //= RFC 8201 section 4
        //# a node MUST reduce the size of the packets it is sending along
        //# the path
        // The segments sent at the old size were dropped on the way: send
        // them again now rather than after a retransmission timeout. The
        // congestion window stays, as nothing says the path is congested.
        self.go_back_to_unacknowledged();
        true
    }
}
