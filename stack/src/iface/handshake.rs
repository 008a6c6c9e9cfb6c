//! Passive opens: a listener's SYN handling, the SYN backlog and its budgets,
//! option negotiation, and SYN cookies when the backlog is full (RFC 4987).

use std::net::SocketAddr;

use crate::wire::{TcpControl, TcpRepr};

use super::*;
use crate::tcp::conn::{Options, Tcb};
use crate::tcp::snapshot::OpenRecord;
use crate::tcp::{isn, syncookie, State};
use crate::wire::{self};
use hydra_base::time::Instant;
use hydra_base::Seq;

/// What a half-open connection starts from: the client's SYN, or the
/// primary's record of it.
struct HalfOpen {
    iss: Seq,
    peer_isn: u32,
    opts: Options,
    snd_wnd: u32,
    ts_recent: Option<u32>,
    opened_epoch: u64,
}

impl Stack {
    //= RFC 9293 section 3.10.7.2
    //# If the state is LISTEN, then first check for a RST ... second, check for an ACK ...
    //# third, check for a SYN
    pub(super) fn listen_input(
        &mut self,
        now: Instant,
        listener: SocketAddr,
        key: ConnKey,
        seg: &TcpRepr<'_>,
    ) {
        match (seg.control, seg.ack_number) {
            (TcpControl::Rst, _) => {}
            (TcpControl::Syn, None) => self.syn_input(now, listener, key, seg),
            (_, Some(_)) => {
                if !self.cookie_input(now, listener, key, seg) {
                    self.stats.drop_no_socket += 1;
                    self.reset_for(key, seg);
                }
            }
            _ => self.stats.drop_no_socket += 1,
        }
    }

    /// Our receive window shift: the smallest that lets the buffer be advertised.
    pub(super) fn wscale_for_buffer(&self) -> u8 {
        let mut shift = 0u8;
        while shift < 14 && (self.cfg.recv_buffer >> shift) > u16::MAX as usize {
            shift += 1;
        }
        shift
    }

    /// Options for a passive open, from the peer's SYN and our configuration.
    pub(super) fn negotiate_syn(&self, key: ConnKey, seg: &TcpRepr<'_>) -> Options {
        let ws_ok = self.cfg.window_scaling && seg.window_scale.is_some();
        Options {
            //= RFC 9293 section 3.7.1
            //# If an MSS Option is not received at connection setup, TCP implementations MUST
            //# assume a default send MSS of 536 (576 - 40) for IPv4 or 1220 (1280 - 60) for IPv6
            send_mss: seg
                .max_seg_size
                .unwrap_or(crate::config::default_mss(key.local.ip()))
                .clamp(64, self.cfg.mss_for(key.local.ip())),
            snd_wscale: if ws_ok {
                seg.window_scale.unwrap_or(0)
            } else {
                0
            },
            rcv_wscale: if ws_ok { self.wscale_for_buffer() } else { 0 },
            sack: self.cfg.sack && seg.sack_permitted,
            timestamps: self.cfg.timestamps && seg.timestamp.is_some(),
            ts_offset: isn::ts_offset(&self.cfg.isn_key, key.local, key.remote),
            window_scale_ok: ws_ok,
        }
    }

    pub(super) fn syn_input(
        &mut self,
        now: Instant,
        listener: SocketAddr,
        key: ConnKey,
        seg: &TcpRepr<'_>,
    ) {
        let peer_isn = seg.seq_number.0 as u32;
        let Some(l) = self.listeners.get(&listener) else {
            return;
        };
        let (half_open, mut queued) = (l.half_open, l.accept_queue.len());
        if self.accept_blocked(listener) {
            queued = 0; // no application takes them here: they wait for a takeover
        }
        if self.conns.len() >= self.cfg.max_connections || queued >= self.cfg.accept_backlog {
            self.stats.drop_syn_overflow += 1;
            return;
        }
        let opts = self.negotiate_syn(key, seg);
        // Half-open connections over every listener: a flood spread over
        // many ports or addresses meets the same bound as one on one.
        let half_open_total: usize = self.listeners.values().map(|l| l.half_open).sum();
        if half_open >= self.cfg.syn_backlog || half_open_total >= self.cfg.max_half_open {
            //= RFC 4987 section 3.6
            //# SYN cookies ... the server does not need to allocate state for the half-open
            //# connection; the state is encoded in the initial sequence number.
            // Replicas must agree on every connection's state, so only a standalone stack uses cookies.
            if self.role != Role::Standalone {
                self.stats.drop_syn_overflow += 1;
                return;
            }
            self.send_cookie_synack(now, key, seg, opts);
            return;
        }
        let iss = Seq(isn::server_isn(
            &self.cfg.isn_key,
            key.local,
            key.remote,
            peer_isn,
        ));
        let half_open = HalfOpen {
            iss,
            peer_isn,
            opts,
            snd_wnd: seg.window_len as u32,
            ts_recent: seg.timestamp.map(|ts| ts.tsval),
            opened_epoch: self.epoch,
        };
        self.keep_half_open(now, listener, key, half_open);
    }

    /// Backup: make the half-open copy of a connection whose SYN this
    /// replica lost, from the primary's record, as the SYN would have.
    pub fn import_half_open(
        &mut self,
        now: Instant,
        record: &OpenRecord,
    ) -> Result<ConnKey, ConnectError> {
        self.may_import(record)?;
        let key = record.key;
        let Some(listener) = self.listener_for(key.local) else {
            return Err(ConnectError::NoListener);
        };
        let half_open_total: usize = self.listeners.values().map(|l| l.half_open).sum();
        if half_open_total >= self.cfg.max_half_open {
            self.stats.drop_syn_overflow += 1;
            return Err(ConnectError::TooMany);
        }
        let half_open = HalfOpen {
            iss: record.iss,
            peer_isn: record.irs.0,
            opts: record.opts,
            snd_wnd: record.snd_wnd,
            ts_recent: Some(record.ts_recent),
            opened_epoch: record.opened_epoch,
        };
        self.keep_half_open(now, listener, key, half_open);
        self.stats.half_open_repaired += 1;
        Ok(key)
    }

    /// Keep a half-open connection (SYN-RECEIVED) for `listener`.
    fn keep_half_open(&mut self, now: Instant, listener: SocketAddr, key: ConnKey, h: HalfOpen) {
        let mut tcb = self.syn_received(now, key, h.iss, h.peer_isn, h.opts);
        tcb.listener = Some(listener);
        tcb.snd_wnd = h.snd_wnd;
        if let Some(ts) = h.ts_recent {
            tcb.ts_recent = ts;
        }
        tcb.opened_epoch = h.opened_epoch;
        self.conns.insert(key, tcb);
        if let Some(l) = self.listeners.get_mut(&listener) {
            l.half_open += 1;
        }
        self.stats.connections_opened += 1;
        if self.role != Role::Standalone {
            // Replicas confirm they hold the SYN: the primary answers it only then.
            self.push_event(Event::Progress(key));
        }
        self.schedule(key);
        self.update_timer(key);
    }

    pub(super) fn cookie_counter(now: Instant) -> u32 {
        (now.total_micros() / 64_000_000) as u32
    }

    pub(super) fn send_cookie_synack(
        &mut self,
        now: Instant,
        key: ConnKey,
        seg: &TcpRepr<'_>,
        opts: Options,
    ) {
        let peer_isn = seg.seq_number.0 as u32;
        let want = syncookie::CookieOptions {
            mss: opts.send_mss,
            window_scale: opts.window_scale_ok.then_some(opts.snd_wscale),
            sack: opts.sack,
        };
        let (cookie, _) = syncookie::make_cookie(
            &self.cfg.isn_key,
            key.local,
            key.remote,
            peer_isn,
            Self::cookie_counter(now),
            want,
        );
        // Reply from a throwaway control block: nothing is kept.
        let mut opts = opts;
        opts.timestamps = false; // the cookie cannot carry TS.Recent
        let mut tcb = self.syn_received(now, key, Seq(cookie), peer_isn, opts);
        if let Some(out) = tcb.poll_output(now, &self.cfg, 0, &mut self.stats) {
            let mut buf = vec![0u8; 128];
            if let Some(n) = wire::emit_tcp(
                &mut buf,
                key.local,
                key.remote,
                self.cfg.ttl,
                &out.header,
                (&[], &[]),
            ) {
                buf.truncate(n);
                self.stats.syn_cookies_sent += 1;
                self.push_control(buf);
            }
        }
    }

    /// An ACK for a listener: maybe the completion of a SYN-cookie handshake.
    pub(super) fn cookie_input(
        &mut self,
        now: Instant,
        listener: SocketAddr,
        key: ConnKey,
        seg: &TcpRepr<'_>,
    ) -> bool {
        if self.role != Role::Standalone || seg.control == TcpControl::Syn {
            return false;
        }
        let Some(ack) = seg.ack_number else {
            return false;
        };
        let cookie = (ack.0 as u32).wrapping_sub(1);
        let peer_isn = (seg.seq_number.0 as u32).wrapping_sub(1);
        let counter = Self::cookie_counter(now);
        let Some(c) = syncookie::check_cookie(
            &self.cfg.isn_key,
            key.local,
            key.remote,
            peer_isn,
            cookie,
            counter,
        ) else {
            self.stats.syn_cookies_rejected += 1;
            return false;
        };
        if self.conns.len() >= self.cfg.max_connections {
            self.stats.drop_syn_overflow += 1;
            return true;
        }
        let ws_ok = c.window_scale.is_some() && self.cfg.window_scaling;
        let opts = Options {
            send_mss: c.mss.min(self.cfg.mss_for(key.local.ip())),
            snd_wscale: c.window_scale.unwrap_or(0),
            rcv_wscale: if ws_ok { self.wscale_for_buffer() } else { 0 },
            sack: c.sack,
            timestamps: false,
            ts_offset: isn::ts_offset(&self.cfg.isn_key, key.local, key.remote),
            window_scale_ok: ws_ok,
        };
        let mut tcb = self.syn_received(now, key, Seq(cookie), peer_isn, opts);
        tcb.snd_nxt = tcb.iss + 1u32;
        tcb.snd_max = tcb.snd_nxt;
        tcb.listener = Some(listener);
        self.stats.syn_cookies_accepted += 1;
        self.stats.connections_opened += 1;
        if let Some(l) = self.listeners.get_mut(&listener) {
            l.half_open += 1;
        }
        let sig = tcb.input(now, &self.cfg, seg, &mut self.stats);
        tcb.opened_epoch = self.epoch;
        self.conns.insert(key, tcb);
        self.after_change(key, sig);
        true
    }

    /// A control block in SYN-RECEIVED for `key`, in this stack's role:
    /// the same for a SYN kept in the backlog, a cookie's throwaway reply
    /// and a connection rebuilt from a returning cookie.
    fn syn_received(
        &self,
        now: Instant,
        key: ConnKey,
        iss: Seq,
        peer_isn: u32,
        opts: Options,
    ) -> Tcb {
        Tcb::new(
            now,
            &self.cfg,
            key,
            self.role,
            State::SynReceived,
            iss,
            Seq(peer_isn),
            opts,
        )
    }
}
