//! One TCP connection's machinery, split by concern.

pub mod ack;
pub mod buffer;
pub mod checkpoint;
pub mod congestion;
pub mod conn;
pub mod input;
pub mod output;
pub mod sack;
pub mod timer;

pub mod isn;
pub mod rtt;

pub mod snapshot;
pub mod syncookie;

/// Connection states of RFC 9293 section 3.3.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Closed,
    Listen,
    SynSent,
    SynReceived,
    Established,
    FinWait1,
    FinWait2,
    CloseWait,
    Closing,
    LastAck,
    TimeWait,
}
