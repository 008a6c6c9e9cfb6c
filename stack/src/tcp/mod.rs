//! One TCP connection's machinery, split by concern.

pub mod ack;
pub mod buffer;
pub mod checkpoint;
pub mod congestion;
pub mod conn;
pub mod input;
pub mod output;
pub mod pmtu;
pub mod sack;
pub mod timer;

pub mod isn;
pub mod rtt;

pub mod snapshot;
pub mod syncookie;

/// Connection states of RFC 9293 section 3.3.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// No connection: it ended (closed, reset or timed out).
    Closed,
    /// Waiting for a connection request from any remote TCP.
    Listen,
    /// Sent a SYN (active open), waiting for the matching SYN-ACK.
    SynSent,
    /// Received a SYN and sent a SYN-ACK, waiting for its acknowledgment.
    SynReceived,
    /// Open: data flows both ways.
    Established,
    /// We sent a FIN, not yet acknowledged.
    FinWait1,
    /// Our FIN was acknowledged; waiting for the peer's FIN.
    FinWait2,
    /// The peer sent a FIN; waiting for our application to close.
    CloseWait,
    /// Both sides sent a FIN at once; waiting for the acknowledgment of ours.
    Closing,
    /// The peer closed first and we sent our FIN; waiting for its acknowledgment.
    LastAck,
    /// Both FINs exchanged and acknowledged; waiting 2 MSL so old duplicates die
    /// out before the connection's 4-tuple is reused.
    TimeWait,
}

impl State {
    /// Every state, in declaration order: a state's index here is its code
    /// in snapshots ([`State::code`]).
    pub const ALL: [State; 11] = [
        State::Closed,
        State::Listen,
        State::SynSent,
        State::SynReceived,
        State::Established,
        State::FinWait1,
        State::FinWait2,
        State::CloseWait,
        State::Closing,
        State::LastAck,
        State::TimeWait,
    ];

    /// The state's one-byte code (its place in [`State::ALL`]).
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The state a code stands for, if any.
    pub fn from_code(code: u8) -> Option<State> {
        State::ALL.get(usize::from(code)).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::State;

    #[test]
    fn every_state_has_the_code_of_its_place_in_all() {
        for (i, s) in State::ALL.iter().enumerate() {
            assert_eq!(usize::from(s.code()), i);
            assert_eq!(State::from_code(s.code()), Some(*s));
        }
        assert_eq!(State::from_code(11), None);
    }
}
