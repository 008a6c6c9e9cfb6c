//! Export and import of a connection's full state (the CGL takeover
//! primitive: stop / get / set / restart, `shared/seeds/001`), and the
//! smaller "opened" record the replication log carries.
//!
//! Both have a compact binary encoding (`encode` / `decode`) so they can
//! cross a process boundary: state transfer to a rejoining replica, the log.

use super::conn::Options;
use super::State;
use crate::config::CongestionKind;
use hydra_base::codec::{Put, Reader};
use hydra_base::ConnKey;
use hydra_base::Seq;

/// Everything needed to continue a connection in another stack: made by
/// [`Stack::take_connection`](crate::Stack::take_connection) (which removes the connection) or
/// [`Stack::snapshot`](crate::Stack::snapshot) (which copies it), taken by
/// [`Stack::import`](crate::Stack::import). Field names follow RFC 9293's
/// sequence variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnSnapshot {
    /// The connection's addresses (local and remote endpoints).
    pub key: ConnKey,
    /// RFC 9293 connection state.
    pub state: State,
    /// Options negotiated in the handshake (MSS, window scale, SACK, timestamps).
    pub opts: Options,
    /// ISS: our initial send sequence number (the SYN occupies it).
    pub iss: Seq,
    /// IRS: the initial receive sequence number (the peer's ISN).
    pub irs: Seq,
    /// SND.UNA: oldest unacknowledged sequence number.
    pub snd_una: Seq,
    /// SND.NXT: next sequence number to send (behind `snd_max` while retransmitting).
    pub snd_nxt: Seq,
    /// Highest sequence number sent plus one.
    pub snd_max: Seq,
    /// SND.WND: the peer's receive window in bytes (already scaled).
    pub snd_wnd: u32,
    /// Largest window the peer has offered (sender silly window avoidance).
    pub max_snd_wnd: u32,
    /// SND.WL1: segment sequence number of the last window update.
    pub snd_wl1: Seq,
    /// SND.WL2: segment acknowledgment number of the last window update.
    pub snd_wl2: Seq,
    /// Highest ACK number the peer sent; on a backup it may be ahead of what its
    /// application has written.
    pub peer_acked: Seq,
    /// Sequence number of the first byte of `send_data`.
    pub send_start: Seq,
    /// Unacknowledged and unsent application bytes.
    pub send_data: Vec<u8>,
    /// The application closed its side: a FIN follows the last byte of `send_data`.
    pub fin_queued: bool,
    /// RCV.NXT: next sequence number expected from the peer.
    pub rcv_nxt: Seq,
    /// Sequence number of the first byte of `recv_data`.
    pub recv_start: Seq,
    /// Received bytes the application has not read.
    pub recv_data: Vec<u8>,
    /// Out-of-order segments held.
    pub recv_ooo: Vec<(Seq, Vec<u8>)>,
    /// Sequence number of the peer's FIN once seen (possibly out of order).
    pub peer_fin: Option<Seq>,
    /// Right edge of the last window advertised (RCV.NXT + RCV.WND when sent).
    pub rcv_adv: Seq,
    /// ACK number of the last segment we sent (RFC 7323 Last.ACK.sent).
    pub last_ack_sent: Seq,
    /// TS.Recent: the peer's timestamp to echo (RFC 7323).
    pub ts_recent: u32,
    /// Largest TSecr the peer echoed; a new primary never sends a lower TSval.
    pub max_tsecr: u32,
    /// Congestion control algorithm in use.
    pub congestion: CongestionKind,
    /// Congestion window (cwnd) in bytes.
    pub cwnd: u32,
    /// Slow start threshold (ssthresh) in bytes.
    pub ssthresh: u32,
    /// Smoothed round-trip time (SRTT) in microseconds, once measured.
    pub srtt_us: Option<u64>,
    /// Round-trip time variation (RTTVAR) in microseconds.
    pub rttvar_us: u64,
    /// Nagle's algorithm is disabled (TCP_NODELAY).
    pub nodelay: bool,
    /// Logical timer state: a retransmission was pending, TIME-WAIT remaining (µs).
    pub rto_armed: bool,
    /// Time left in TIME-WAIT (µs), if the 2MSL timer was running.
    pub time_wait_left_us: Option<u64>,
    /// Replicated roles: the application may read only before this.
    pub delivery_limit: Option<Seq>,
    /// The application's state and output count (see `Tcb::app_state`).
    pub app_state: Vec<u8>,
    /// `app_written` when `app_state` was set: the state describes the application
    /// as of that output position.
    pub app_state_at: u64,
    /// Bytes the application has written since the connection opened.
    pub app_written: u64,
    /// The group's view epoch when this copy of the connection opened.
    pub opened_epoch: u64,
}

/// Negotiated parameters of a new connection, identical on every replica:
/// the replication log's "opened" entry ([`Stack::open_record`](crate::Stack::open_record)),
/// from which a backup that missed the SYN creates the connection
/// ([`Stack::import_open`](crate::Stack::import_open)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenRecord {
    /// The connection's addresses (local and remote endpoints).
    pub key: ConnKey,
    /// ISS: our initial send sequence number.
    pub iss: Seq,
    /// IRS: the initial receive sequence number (the peer's ISN).
    pub irs: Seq,
    /// Options negotiated in the handshake (MSS, window scale, SACK, timestamps).
    pub opts: Options,
    /// TS.Recent from the handshake (RFC 7323).
    pub ts_recent: u32,
    /// Peer's window (scaled) from the segment that completed the handshake.
    pub snd_wnd: u32,
    /// The group's view epoch when it opened (see `Tcb::opened_epoch`).
    pub opened_epoch: u64,
}

/// Why bytes did not decode (the codec's error).
pub use hydra_base::codec::DecodeError;

const SNAPSHOT_VERSION: u8 = 3;
const OPEN_VERSION: u8 = 2;

/// Options in a snapshot or an open record.
fn put_opts(w: &mut Vec<u8>, o: &Options) {
    w.put_u16(o.send_mss);
    w.put_u8(o.snd_wscale);
    w.put_u8(o.rcv_wscale);
    w.put_bool(o.sack);
    w.put_bool(o.timestamps);
    w.put_u32(o.ts_offset);
    w.put_bool(o.window_scale_ok);
}

fn get_opts(r: &mut Reader) -> Result<Options, DecodeError> {
    let o = Options {
        send_mss: r.u16()?,
        snd_wscale: r.u8()?,
        rcv_wscale: r.u8()?,
        sack: r.bool()?,
        timestamps: r.bool()?,
        ts_offset: r.u32()?,
        window_scale_ok: r.bool()?,
    };
    if o.snd_wscale > 14 || o.rcv_wscale > 14 || o.send_mss < 64 {
        return Err(DecodeError::Invalid);
    }
    Ok(o)
}

impl OpenRecord {
    /// Encode the record in its versioned binary form.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Vec::with_capacity(48);
        w.put_u8(OPEN_VERSION);
        w.put_key(&self.key);
        w.put_seq(self.iss);
        w.put_seq(self.irs);
        put_opts(&mut w, &self.opts);
        w.put_u32(self.ts_recent);
        w.put_u32(self.snd_wnd);
        w.put_u64(self.opened_epoch);
        w
    }

    /// Decode a record written by [`encode`](Self::encode).
    ///
    /// Errors: [`DecodeError`] if the bytes are truncated, of another format
    /// version, or hold an invalid option.
    pub fn decode(bytes: &[u8]) -> Result<OpenRecord, DecodeError> {
        let mut r = Reader::new(bytes);
        let v = r.u8()?;
        if v != OPEN_VERSION {
            return Err(DecodeError::Version(v));
        }
        Ok(OpenRecord {
            key: r.key()?,
            iss: r.seq()?,
            irs: r.seq()?,
            opts: get_opts(&mut r)?,
            ts_recent: r.u32()?,
            snd_wnd: r.u32()?,
            opened_epoch: r.u64()?,
        })
    }
}

impl ConnSnapshot {
    /// Encode the snapshot in its versioned binary form (to cross a process
    /// boundary, e.g. to a joining replica).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Vec::with_capacity(128 + self.send_data.len() + self.recv_data.len());
        w.put_u8(SNAPSHOT_VERSION);
        w.put_key(&self.key);
        w.put_u8(self.state.code());
        put_opts(&mut w, &self.opts);
        for s in [self.iss, self.irs, self.snd_una, self.snd_nxt, self.snd_max] {
            w.put_seq(s);
        }
        w.put_u32(self.snd_wnd);
        w.put_u32(self.max_snd_wnd);
        for s in [self.snd_wl1, self.snd_wl2, self.peer_acked, self.send_start] {
            w.put_seq(s);
        }
        w.put_bytes(&self.send_data);
        w.put_bool(self.fin_queued);
        w.put_seq(self.rcv_nxt);
        w.put_seq(self.recv_start);
        w.put_bytes(&self.recv_data);
        w.put_u32(self.recv_ooo.len() as u32);
        for (s, d) in &self.recv_ooo {
            w.put_seq(*s);
            w.put_bytes(d);
        }
        w.put_opt_u64(self.peer_fin.map(|s| s.0 as u64));
        w.put_seq(self.rcv_adv);
        w.put_seq(self.last_ack_sent);
        w.put_u32(self.ts_recent);
        w.put_u32(self.max_tsecr);
        w.put_u8(match self.congestion {
            CongestionKind::NewReno => 0,
            CongestionKind::Cubic => 1,
        });
        w.put_u32(self.cwnd);
        w.put_u32(self.ssthresh);
        w.put_opt_u64(self.srtt_us);
        w.put_u64(self.rttvar_us);
        w.put_bool(self.nodelay);
        w.put_bool(self.rto_armed);
        w.put_opt_u64(self.time_wait_left_us);
        w.put_opt_u64(self.delivery_limit.map(|s| u64::from(s.0)));
        w.put_bytes(&self.app_state);
        w.put_u64(self.app_state_at);
        w.put_u64(self.app_written);
        w.put_u64(self.opened_epoch);
        w
    }

    /// Decode a snapshot written by [`encode`](Self::encode).
    ///
    /// Errors: [`DecodeError`] if the bytes are truncated, of another format
    /// version, hold an invalid field (state, options, congestion kind), or have
    /// bytes left over.
    pub fn decode(bytes: &[u8]) -> Result<ConnSnapshot, DecodeError> {
        let mut r = Reader::new(bytes);
        let v = r.u8()?;
        if v != SNAPSHOT_VERSION {
            return Err(DecodeError::Version(v));
        }
        let key = r.key()?;
        let state = State::from_code(r.u8()?).ok_or(DecodeError::Invalid)?;
        let opts = get_opts(&mut r)?;
        let (iss, irs, snd_una, snd_nxt, snd_max) =
            (r.seq()?, r.seq()?, r.seq()?, r.seq()?, r.seq()?);
        let (snd_wnd, max_snd_wnd) = (r.u32()?, r.u32()?);
        let (snd_wl1, snd_wl2, peer_acked, send_start) = (r.seq()?, r.seq()?, r.seq()?, r.seq()?);
        let send_data = r.bytes()?;
        let fin_queued = r.bool()?;
        let rcv_nxt = r.seq()?;
        let recv_start = r.seq()?;
        let recv_data = r.bytes()?;
        let n = r.u32()? as usize;
        let mut recv_ooo = Vec::with_capacity(n.min(256));
        for _ in 0..n {
            recv_ooo.push((r.seq()?, r.bytes()?));
        }
        let peer_fin = r.opt_u64()?.map(|v| Seq(v as u32));
        let snap = ConnSnapshot {
            key,
            state,
            opts,
            iss,
            irs,
            snd_una,
            snd_nxt,
            snd_max,
            snd_wnd,
            max_snd_wnd,
            snd_wl1,
            snd_wl2,
            peer_acked,
            send_start,
            send_data,
            fin_queued,
            rcv_nxt,
            recv_start,
            recv_data,
            recv_ooo,
            peer_fin,
            rcv_adv: r.seq()?,
            last_ack_sent: r.seq()?,
            ts_recent: r.u32()?,
            max_tsecr: r.u32()?,
            congestion: match r.u8()? {
                0 => CongestionKind::NewReno,
                1 => CongestionKind::Cubic,
                _ => return Err(DecodeError::Invalid),
            },
            cwnd: r.u32()?,
            ssthresh: r.u32()?,
            srtt_us: r.opt_u64()?,
            rttvar_us: r.u64()?,
            nodelay: r.bool()?,
            rto_armed: r.bool()?,
            time_wait_left_us: r.opt_u64()?,
            delivery_limit: r.opt_u64()?.map(|v| Seq(v as u32)),
            app_state: r.bytes()?,
            app_state_at: r.u64()?,
            app_written: r.u64()?,
            opened_epoch: r.u64()?,
        };
        if !r.is_empty() {
            return Err(DecodeError::Invalid);
        }
        Ok(snap)
    }
}

use super::buffer::{OooSegment, RecvBuffer, SendBuffer};
use super::congestion::Congestion;
use super::conn::Tcb;
use crate::config::Config;
use hydra_base::time::{Duration, Instant};
use hydra_base::Role;

impl Tcb {
    /// Copy out everything needed to continue elsewhere.
    pub fn to_snapshot(&self, now: Instant) -> ConnSnapshot {
        ConnSnapshot {
            key: self.key,
            state: self.state,
            opts: self.opts,
            iss: self.iss,
            irs: self.irs,
            snd_una: self.snd_una,
            snd_nxt: self.snd_nxt,
            snd_max: self.snd_max,
            snd_wnd: self.snd_wnd,
            max_snd_wnd: self.max_snd_wnd,
            snd_wl1: self.snd_wl1,
            snd_wl2: self.snd_wl2,
            peer_acked: self.peer_acked,
            send_start: self.send.start,
            send_data: self.send.data.iter().copied().collect(),
            fin_queued: self.fin_queued,
            rcv_nxt: self.rcv_nxt,
            recv_start: self.recv.start,
            recv_data: self.recv.data.iter().copied().collect(),
            recv_ooo: self
                .recv
                .ooo
                .iter()
                .map(|s| (s.seq, s.data.clone()))
                .collect(),
            peer_fin: self.peer_fin,
            rcv_adv: self.rcv_adv,
            last_ack_sent: self.last_ack_sent,
            ts_recent: self.ts_recent,
            max_tsecr: self.max_tsecr,
            congestion: self.cc.kind(),
            cwnd: self.cc.window(),
            ssthresh: self.cc.ssthresh(),
            srtt_us: self.rtt.srtt().map(|d| d.total_micros()),
            rttvar_us: self.rtt.rttvar().total_micros(),
            nodelay: self.nodelay,
            rto_armed: self.timers.rto.is_some(),
            time_wait_left_us: self.timers.time_wait.map(|t| (t - now).total_micros()),
            delivery_limit: self.delivery_limit,
            app_state: self.app_state.clone(),
            app_state_at: self.app_state_at,
            app_written: self.app_written,
            opened_epoch: self.opened_epoch,
        }
    }

    /// Rebuild a control block from a snapshot; timers restart from `now`.
    pub fn from_snapshot(now: Instant, cfg: &Config, role: Role, s: &ConnSnapshot) -> Tcb {
        let mut t = Tcb::new(now, cfg, s.key, role, s.state, s.iss, s.irs, s.opts);
        t.snd_una = s.snd_una;
        t.snd_nxt = s.snd_nxt;
        t.snd_max = s.snd_max;
        t.snd_wnd = s.snd_wnd;
        t.max_snd_wnd = s.max_snd_wnd;
        t.snd_wl1 = s.snd_wl1;
        t.snd_wl2 = s.snd_wl2;
        t.peer_acked = s.peer_acked;
        t.send = SendBuffer::new(s.send_start, cfg.send_buffer.max(s.send_data.len()));
        t.send.data.extend(&s.send_data);
        t.fin_queued = s.fin_queued;
        t.rcv_nxt = s.rcv_nxt;
        t.recv = RecvBuffer::new(s.recv_start, cfg.ooo_limit);
        t.recv.data.extend(&s.recv_data);
        for (seq, data) in &s.recv_ooo {
            t.recv.ooo_bytes += data.len();
            t.recv.ooo.push(OooSegment {
                seq: *seq,
                data: data.clone(),
            });
        }
        t.peer_fin = s.peer_fin;
        t.rcv_adv = s.rcv_adv;
        t.last_ack_sent = s.last_ack_sent;
        t.ts_recent = s.ts_recent;
        t.max_tsecr = s.max_tsecr;
        t.max_tsecr_at_ms = now.total_millis();
        t.cc = Congestion::restore(s.congestion, s.opts.send_mss as u32, s.cwnd, s.ssthresh);
        t.rtt.restore(
            s.srtt_us.map(Duration::from_micros),
            Duration::from_micros(s.rttvar_us),
        );
        t.nodelay = s.nodelay;
        if s.rto_armed && role != Role::Backup {
            t.timers.rto = Some(now + t.rtt.rto());
        }
        t.timers.time_wait = s
            .time_wait_left_us
            .map(|us| now + Duration::from_micros(us));
        if role != Role::Standalone {
            t.delivery_limit = s.delivery_limit;
        }
        t.app_state = s.app_state.clone();
        t.app_state_at = s.app_state_at;
        t.app_written = s.app_written;
        t.opened_epoch = s.opened_epoch;
        t
    }

    pub fn open_record(&self) -> OpenRecord {
        OpenRecord {
            key: self.key,
            iss: self.iss,
            irs: self.irs,
            opts: self.opts,
            ts_recent: self.ts_recent,
            snd_wnd: self.snd_wnd,
            opened_epoch: self.opened_epoch,
        }
    }
}
