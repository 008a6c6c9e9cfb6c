//! `session`: the passive-mode demo. Each line a client sends rolls a die;
//! the reply numbers it within the session and carries the running total
//! and the server's clock:
//!
//! ```text
//! > roll
//! < seq=1 roll=4 total=4 at=1795430000123
//! ```
//!
//! Rolls and clock differ on every replica, so active replication (every
//! replica computing its own reply) could not keep a session consistent
//! across a takeover. Here only the primary runs it: each request is one
//! atomic step (read the line, update the `session` state block, write the
//! reply) that reaches the backups before the client sees the reply; a new
//! primary finds the block and carries on, so `seq` never skips or repeats
//! and `total` is always the sum of the rolls the client saw.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Read, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use stack::socket::TcpStream;

/// Name of the state block holding (replies sent, running total).
pub const BLOCK: &str = "session";
/// A request line longer than this ends the session.
const MAX_LINE: usize = 1024;

/// The session's state, as kept in its block.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Session {
    pub replies: u64,
    pub total: u64,
}

impl Session {
    pub fn encode(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.replies.to_be_bytes());
        b[8..].copy_from_slice(&self.total.to_be_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Option<Session> {
        let b: &[u8; 16] = b.try_into().ok()?;
        Some(Session {
            replies: u64::from_be_bytes(b[..8].try_into().ok()?),
            total: u64::from_be_bytes(b[8..].try_into().ok()?),
        })
    }
}

/// Serve one connection, resuming it if a previous primary started it.
pub fn serve(s: TcpStream) -> io::Result<()> {
    let mut session = match s.state_lookup(BLOCK)? {
        Some(bytes) => Session::decode(&bytes)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "corrupt session block"))?,
        None => Session::default(),
    };
    let dice = RandomState::new();
    let mut buf = vec![0u8; MAX_LINE];
    let mut have = 0;
    loop {
        have = s.peek_beyond(&mut buf, have)?;
        let Some(end) = buf[..have].iter().position(|b| *b == b'\n') else {
            if have == 0 || have == buf.len() {
                // End of input (or a line too long): close our side.
                return s.shutdown(std::net::Shutdown::Write);
            }
            continue;
        };
        let mut h = dice.build_hasher();
        h.write_u64(session.replies);
        h.write_u128(now_nanos());
        let roll = 1 + h.finish() % 6;
        let next = Session {
            replies: session.replies + 1,
            total: session.total + roll,
        };
        let reply = format!(
            "seq={} roll={roll} total={} at={}\n",
            next.replies,
            next.total,
            now_nanos() / 1_000_000
        );
        {
            // Read, new state and reply reach the backups together.
            let _step = s.atomic()?;
            let mut line = vec![0u8; end + 1];
            (&s).read_exact(&mut line)?;
            s.state_put(BLOCK, &next.encode())?;
            (&s).write_all(reply.as_bytes())?;
        }
        session = next;
        have = 0;
    }
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_blocks_round_trip_and_bad_ones_are_refused() {
        let s = Session {
            replies: 7,
            total: 25,
        };
        assert_eq!(Session::decode(&s.encode()), Some(s));
        assert_eq!(Session::decode(&[1, 2, 3]), None);
    }
}
