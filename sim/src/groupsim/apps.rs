//! The applications the replicas run (the echo, the passive echo, the
//! state shared across connections in ordered mode) and the client's
//! streams they check every byte against.

use std::collections::HashMap;
use std::net::SocketAddr;

use stack::iface::RecvError;
use stack::State;
use stack::{ConnKey, Stack};

use super::node::Node;
use crate::simnet::Rng;

/// Byte `i` of connection `port`'s client stream.
pub(super) fn stream_byte(seed: u64, port: u16, i: u64) -> u8 {
    let mut r = Rng::new(seed ^ u64::from(port) << 40 ^ (i >> 3));
    (r.next_u64() >> ((i & 7) * 8)) as u8
}

/// What an application with state shared across connections builds from
/// the ordered deliveries: the interleaving of the connections' streams, as
/// runs of (client port, bytes), consecutive runs of one connection merged.
/// The bytes of each run follow from the port and the offset (the client's
/// streams are known), so the runs are the whole state.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SharedState {
    pub(super) runs: Vec<(u16, u64)>,
    /// Bytes taken so far per connection.
    pub(super) taken: HashMap<ConnKey, u64>,
}

impl SharedState {
    pub(super) fn take(&mut self, key: ConnKey, len: u64) {
        if len == 0 {
            return;
        }
        *self.taken.entry(key).or_default() += len;
        let port = key.remote.port();
        match self.runs.last_mut() {
            Some((p, l)) if *p == port => *l += len,
            _ => self.runs.push((port, len)),
        }
    }

    /// Bytes taken over all connections.
    pub(super) fn total(&self) -> u64 {
        self.runs.iter().map(|r| r.1).sum()
    }

    /// One state is where the other was or will be: the shorter, byte for
    /// byte, a prefix of the longer (replicas may lag one another).
    pub(super) fn consistent(a: &SharedState, b: &SharedState) -> bool {
        let (short, long) = if a.total() <= b.total() {
            (a, b)
        } else {
            (b, a)
        };
        let n = short.runs.len();
        if n == 0 {
            return true;
        }
        if long.runs.len() < n || short.runs[..n - 1] != long.runs[..n - 1] {
            return false;
        }
        let (p, l) = short.runs[n - 1];
        let (lp, ll) = long.runs[n - 1];
        p == lp && l <= ll
    }

    /// A digest of the state, equal on replicas that took the same bytes.
    pub fn digest(&self) -> u64 {
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for (p, l) in &self.runs {
            for b in p.to_be_bytes().iter().chain(&l.to_be_bytes()) {
                h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
            }
        }
        h
    }
}

/// Ordered mode: apply this replica's deliveries, in order, to its shared
/// state, taking exactly the bytes each names (or, with the planted bug,
/// everything received so far).
pub(super) fn shared_state_app(node: &mut Node, overread: bool) {
    while let Some(d) = node.stack.poll_delivery() {
        let stack::iface::Delivery::Data { key, len, .. } = d else {
            continue;
        };
        let mut len = len as u64;
        if overread {
            // The bug: also take what arrived but the log has not released.
            if let Some(i) = node.stack.conn_info(key) {
                len += u64::from(i.rcv_nxt.since(i.read_from));
            }
        }
        node.shared.take(key, len);
    }
}

#[derive(Default)]
pub(super) struct EchoApp {
    /// Bytes echoed (consumed) so far.
    pub(super) delivered: u64,
    pub(super) closed: bool,
    /// Passive mode: the handle generation it accepted.
    pub(super) generation: Option<u64>,
}

/// Every replica's application: echo the committed bytes (peek, send,
/// consume what was sent: it keeps no bytes of its own, so a connection
/// restored by state transfer resumes), checking them against the client's
/// stream; close after the client's close.
pub(super) fn echo_apps(node: &mut Node, service: SocketAddr, seed: u64) -> Result<(), String> {
    let mut fresh = Vec::new();
    while let Some(key) = node.stack.accept(service) {
        fresh.push(key);
    }
    for key in node.stack.connections() {
        if !node.apps.contains_key(&key)
            && node
                .stack
                .conn_info(key)
                .is_some_and(|i| i.state != State::SynReceived)
        {
            fresh.push(key); // imported from the log or a snapshot
        }
    }
    for key in fresh {
        // Bytes the application consumed before (on the replica a snapshot
        // came from); zero for a new connection.
        // Where its reads resume: a primary demoted and promoted again
        // with no full checkpoint in between keeps its read-ahead.
        let consumed = match (node.stack.snapshot(key), node.stack.conn_info(key)) {
            (Some(s), Some(i)) => u64::from(i.read_from.since(s.irs + 1u32)),
            _ => 0,
        };
        node.apps.entry(key).or_insert(EchoApp {
            delivered: consumed,
            ..EchoApp::default()
        });
    }
    let member = node.logic.member();
    let keys: Vec<ConnKey> = node.apps.keys().copied().collect();
    for key in keys {
        let app = node.apps.get_mut(&key).expect("present");
        if app.closed {
            continue;
        }
        let mut buf = [0u8; 16384];
        // A full send buffer (or a closed sending side) takes less: stop.
        while let Some((n, sent)) = echo_step(&mut node.stack, app, key, &mut buf, seed, member)? {
            if sent < n {
                break;
            }
        }
    }
    Ok(())
}

/// The passive application, on the primary only: echo in chunks whose
/// size differs from replica to replica (a nondeterministic application),
/// keeping the position in state block `pos`. A connection it accepts
/// after a takeover must have a block equal to the bytes consumed: a
/// checkpoint that split the read from the state, or lost either, shows.
pub(super) fn passive_echo_apps(
    node: &mut Node,
    service: SocketAddr,
    seed: u64,
) -> Result<(), String> {
    let member = node.logic.member();
    while let Some(key) = node.stack.accept(service) {
        let pos = match node.stack.store_lookup(key, "pos") {
            Ok(Some(b)) => u64::from_be_bytes(b.try_into().map_err(|_| "bad pos block")?),
            Ok(None) => 0,
            Err(e) => return Err(format!("replica {member}: state store: {e}")),
        };
        // Where its reads resume: a primary demoted and promoted again
        // with no full checkpoint in between keeps its read-ahead.
        let consumed = match (node.stack.snapshot(key), node.stack.conn_info(key)) {
            (Some(s), Some(i)) => u64::from(i.read_from.since(s.irs + 1u32)),
            _ => 0,
        };
        if pos != consumed {
            return Err(format!(
                "replica {member}: port {} resumes with state block at {pos} but the stream consumed to {consumed}",
                key.remote.port()
            ));
        }
        let generation = node.stack.app_generation(key);
        node.apps.insert(
            key,
            EchoApp {
                delivered: pos,
                closed: false,
                generation,
            },
        );
    }
    // Handles of an earlier term as primary are stale.
    node.apps
        .retain(|key, app| node.stack.app_generation(*key) == app.generation);
    let keys: Vec<ConnKey> = node.apps.keys().copied().collect();
    for key in keys {
        let app = node.apps.get_mut(&key).expect("present");
        if app.closed {
            continue;
        }
        let chunk = 1 + ((app.delivered ^ (u64::from(member) * 0x9e37)) % 3000) as usize;
        let mut buf = vec![0u8; chunk];
        if echo_step(&mut node.stack, app, key, &mut buf, seed, member)?.is_none() {
            continue;
        }
        node.stack
            .store_put(key, "pos", &app.delivered.to_be_bytes())
            .map_err(|e| format!("replica {member}: state store: {e}"))?;
    }
    Ok(())
}

/// One echo step on `key`: peek committed bytes, check them against the
/// client's stream, send and consume what the send buffer takes. `None`
/// when nothing was readable (at end of stream the application closes).
pub(super) fn echo_step(
    stack: &mut Stack,
    app: &mut EchoApp,
    key: ConnKey,
    buf: &mut [u8],
    seed: u64,
    member: u8,
) -> Result<Option<(usize, usize)>, String> {
    let n = match stack.peek(key, buf) {
        Ok(0) => {
            stack.close(key);
            app.closed = true;
            return Ok(None);
        }
        Ok(n) => n,
        Err(RecvError::WouldBlock) => return Ok(None),
        Err(_) => {
            app.closed = true;
            return Ok(None);
        }
    };
    for (j, b) in buf[..n].iter().enumerate() {
        let at = app.delivered + j as u64;
        if *b != stream_byte(seed, key.remote.port(), at) {
            return Err(format!(
                "replica {member}: application got a wrong byte {at} on port {}",
                key.remote.port()
            ));
        }
    }
    let sent = stack.send(key, &buf[..n]).unwrap_or_default();
    stack.consume(key, sent);
    app.delivered += sent as u64;
    Ok(Some((n, sent)))
}
