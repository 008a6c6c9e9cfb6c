//! The invariants the simulator checks after every step and on every
//! packet the group sends to the client.

use std::collections::HashSet;

use smoltcp::wire::{TcpOption, TcpPacket};
use stack::ConnKey;

use super::apps::SharedState;
use super::run::Sim;

impl Sim {
    /// In the order the group sends them (whichever replica sends):
    /// timestamps never go backwards, the right edge never shrinks, and no
    /// reset is ever sent to the client.
    pub(super) fn check_server_packet(&mut self, member: u8, p: &[u8]) -> Result<(), String> {
        let Some(tcp) = crate::simnet::tcp_segment(p) else {
            return Ok(());
        };
        let port = tcp.dst_port();
        self.check_sack_blocks(port, &tcp)?;
        let Some(c) = self
            .conns
            .iter_mut()
            .find(|c| c.key.is_some_and(|k| k.local.port() == port))
        else {
            return Ok(());
        };
        if tcp.rst() && !c.eof {
            return Err(format!(
                "a reset was sent to the client on port {port} (seq {} ack {}; client connection: received {} eof {})",
                tcp.seq_number().0 as u32,
                tcp.ack_number().0 as u32,
                c.received,
                c.eof
            ));
        }
        let (tsval, wscale) = tcp_options(&tcp);
        if tcp.syn() {
            c.wscale = wscale.unwrap_or(0);
        }
        if let Some(v) = tsval {
            if let Some(max) = c.max_tsval {
                if (v.wrapping_sub(max) as i32) < 0 {
                    return Err(format!("port {port}: TSval went back from {max} to {v}"));
                }
            }
            c.max_tsval = Some(v);
        }
        if tcp.ack() && !tcp.syn() {
            let edge =
                (tcp.ack_number().0 as u32).wrapping_add(u32::from(tcp.window_len()) << c.wscale);
            if let Some(max) = c.max_edge {
                // Rounding to the window scale may retract the edge by less
                // than one unit (RFC 7323 2.4); anything more is a shrink.
                let unit = 1i32 << c.wscale;
                if (edge.wrapping_sub(max) as i32) <= -unit {
                    let key = ConnKey {
                        local: self.cfg.service(),
                        remote: self.cfg.client(port),
                    };
                    let reported: Vec<String> = self
                        .nodes
                        .iter()
                        .map(|n| format!("{:?}", n.edges.get(&key).map(|e| e.0)))
                        .collect();
                    return Err(format!(
                        "highest edges reported by replicas: {reported:?}; port {port}: right edge shrank from {max} to {edge} (replica {member}: ack {} window {} scale {}; the edge came from replica {} ack {} window {})",
                        tcp.ack_number().0 as u32,
                        tcp.window_len(),
                        c.wscale,
                        c.max_edge_from.0,
                        c.max_edge_from.1,
                        c.max_edge_from.2
                    ));
                }
            }
            if c.max_edge.is_none_or(|m| (edge.wrapping_sub(m) as i32) > 0) {
                c.max_edge = Some(edge);
                c.max_edge_from = (member, tcp.ack_number().0 as u32, tcp.window_len());
            }
        }
        Ok(())
    }

    /// Every byte a SACK block names is held by every live replica: a
    /// client that saw a block for bytes a new primary lacks would
    /// retransmit them only at its timeout.
    fn check_sack_blocks(&self, port: u16, tcp: &TcpPacket<&[u8]>) -> Result<(), String> {
        let mut blocks = Vec::new();
        let mut rest = tcp.options();
        while !rest.is_empty() {
            match TcpOption::parse(rest) {
                Ok((r, TcpOption::SackRange(ranges))) => {
                    blocks.extend(ranges.iter().flatten().copied());
                    rest = r;
                }
                Ok((_, TcpOption::EndOfList)) | Err(_) => break,
                Ok((r, _)) => rest = r,
            }
        }
        if blocks.is_empty() {
            return Ok(());
        }
        let key = ConnKey {
            local: self.cfg.service(),
            remote: self.cfg.client(port),
        };
        let live: HashSet<u8> = self.view().live().map(|m| m.id).collect();
        for (i, n) in self.nodes.iter().enumerate() {
            let id = i as u8 + 1;
            if n.crashed || n.restarted || !live.contains(&id) {
                continue;
            }
            for (start, end) in &blocks {
                let (start, end) = (stack::Seq(*start), stack::Seq(*end));
                let in_order = n.held.get(&key).is_some_and(|h| *h >= end);
                if !in_order && !n.stack.holds_received(key, start, end) {
                    return Err(format!(
                        "port {port}: a SACK block names {}..{} but live replica {id} does not hold it (in order up to {:?})",
                        start.0,
                        end.0,
                        n.held.get(&key).map(|h| h.0)
                    ));
                }
            }
        }
        Ok(())
    }

    /// Ordered mode: every replica that has run since the start (crashed
    /// ones too, as far as they got) built the same shared state, or a
    /// prefix of it; replicas that took the same bytes have equal digests.
    /// A restarted replica's application starts empty: not compared.
    pub(super) fn check_shared_state(&self) -> Result<(), String> {
        if !self.cfg.ordered {
            return Ok(());
        }
        let original: Vec<(usize, &SharedState)> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| !n.restarted)
            .map(|(i, n)| (i + 1, &n.shared))
            .collect();
        for (a, sa) in &original {
            for (b, sb) in &original {
                if a >= b {
                    continue;
                }
                if !SharedState::consistent(sa, sb) {
                    let first = sa
                        .runs
                        .iter()
                        .zip(&sb.runs)
                        .position(|(x, y)| x != y)
                        .unwrap_or(0);
                    let around =
                        |r: &[(u16, u64)]| r[first.min(r.len())..(first + 3).min(r.len())].to_vec();
                    return Err(format!(
                        "shared state diverged: replica {a} took {} bytes in {} runs, replica {b} {} in {}; from run {first} (client port, bytes): {:?} vs {:?}",
                        sa.total(),
                        sa.runs.len(),
                        sb.total(),
                        sb.runs.len(),
                        around(&sa.runs),
                        around(&sb.runs),
                    ));
                }
                if sa.total() == sb.total() && sa.digest() != sb.digest() {
                    return Err(format!(
                        "replicas {a} and {b} took the same bytes with different digests"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Every byte the client saw acknowledged is held by every live replica
    /// (a restarted one once a view has admitted it).
    pub(super) fn check_invariants(&self) -> Result<(), String> {
        let live: HashSet<u8> = self.view().live().map(|m| m.id).collect();
        for c in &self.conns {
            let Some(key) = c.key else { continue };
            let Some(progress) = self.client.progress(key) else {
                continue;
            };
            // The server has sent its FIN and seen ours: nothing is left
            // to carry, so a replica that rejoined since need not hold it.
            let finished = progress.finished;
            // Bytes of ours the server acknowledged (SYN and FIN excluded).
            let acked = progress.acked;
            let server_key = ConnKey {
                local: key.remote,
                remote: key.local,
            };
            for (i, n) in self.nodes.iter().enumerate() {
                let id = i as u8 + 1;
                // A restarted process is not the member the view counts
                // until a view has admitted it (the old one crashed).
                let admitted = n
                    .logic
                    .agent()
                    .view()
                    .is_some_and(|v| v.epoch > n.restart_epoch && v.is_alive(id));
                let exempt = n.restarted && (!admitted || finished);
                if n.crashed || !live.contains(&id) || exempt {
                    continue;
                }
                let held = n.held.get(&server_key).copied();
                match held {
                    Some(h) if h >= acked => {}
                    // Nothing beyond the SYN acknowledged yet: nothing to hold.
                    None if progress.opening => {}
                    _ if acked.since(progress.iss) <= 1 => {}
                    other => {
                        return Err(format!(
                            "client port {}: server acknowledged up to {acked} but live replica {id} holds {other:?}",
                            key.local.port(),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// A segment's TSval and window scale options.
pub(super) fn tcp_options(tcp: &TcpPacket<&[u8]>) -> (Option<u32>, Option<u8>) {
    let (mut tsval, mut wscale) = (None, None);
    let mut rest = tcp.options();
    while !rest.is_empty() {
        match TcpOption::parse(rest) {
            Ok((r, TcpOption::TimeStamp { tsval: v, .. })) => {
                tsval = Some(v);
                rest = r;
            }
            Ok((r, TcpOption::WindowScale(s))) => {
                wscale = Some(s);
                rest = r;
            }
            Ok((_, TcpOption::EndOfList)) | Err(_) => break,
            Ok((r, _)) => rest = r,
        }
    }
    (tsval, wscale)
}
