//! Export and import of a connection's full state (the CGL takeover
//! primitive: stop / get / set / restart, `shared/seeds/001`), and the
//! smaller "opened" record the replication log carries.
//!
//! Both have a compact binary encoding (`encode` / `decode`) so they can
//! cross a process boundary: state transfer to a rejoining replica, the log.

use std::net::{Ipv4Addr, SocketAddrV4};

use super::conn::Options;
use super::seq::Seq;
use super::State;
use crate::config::CongestionKind;
use crate::iface::ConnKey;

/// Everything needed to continue a connection in another stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnSnapshot {
    pub key: ConnKey,
    pub state: State,
    pub opts: Options,
    pub iss: Seq,
    pub irs: Seq,
    pub snd_una: Seq,
    pub snd_nxt: Seq,
    pub snd_max: Seq,
    pub snd_wnd: u32,
    pub max_snd_wnd: u32,
    pub snd_wl1: Seq,
    pub snd_wl2: Seq,
    pub peer_acked: Seq,
    /// Sequence number of the first byte of `send_data`.
    pub send_start: Seq,
    /// Unacknowledged and unsent application bytes.
    pub send_data: Vec<u8>,
    pub fin_queued: bool,
    pub rcv_nxt: Seq,
    /// Sequence number of the first byte of `recv_data`.
    pub recv_start: Seq,
    /// Received bytes the application has not read.
    pub recv_data: Vec<u8>,
    /// Out-of-order segments held.
    pub recv_ooo: Vec<(Seq, Vec<u8>)>,
    pub peer_fin: Option<Seq>,
    pub rcv_adv: Seq,
    pub last_ack_sent: Seq,
    pub ts_recent: u32,
    pub max_tsecr: u32,
    pub congestion: CongestionKind,
    pub cwnd: u32,
    pub ssthresh: u32,
    pub srtt_us: Option<u64>,
    pub rttvar_us: u64,
    pub nodelay: bool,
    /// Logical timer state: a retransmission was pending, TIME-WAIT remaining (µs).
    pub rto_armed: bool,
    pub time_wait_left_us: Option<u64>,
    /// Replicated roles: the application may read only before this.
    pub delivery_limit: Option<Seq>,
    /// The application's state and output count (see `Tcb::app_state`).
    pub app_state: Vec<u8>,
    pub app_state_at: u64,
    pub app_written: u64,
    pub opened_epoch: u64,
}

/// Negotiated parameters of a new connection, identical on every replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenRecord {
    pub key: ConnKey,
    pub iss: Seq,
    pub irs: Seq,
    pub opts: Options,
    pub ts_recent: u32,
    /// Peer's window (scaled) from the segment that completed the handshake.
    pub snd_wnd: u32,
    /// The group's view epoch when it opened (see `Tcb::opened_epoch`).
    pub opened_epoch: u64,
}

/// Why bytes did not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("truncated snapshot")]
    Truncated,
    #[error("unknown snapshot version {0}")]
    Version(u8),
    #[error("invalid field value")]
    Invalid,
}

const SNAPSHOT_VERSION: u8 = 2;
const OPEN_VERSION: u8 = 1;

pub(crate) struct Writer(pub(crate) Vec<u8>);

impl Writer {
    pub(crate) fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub(crate) fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn bool(&mut self, v: bool) {
        self.u8(v as u8);
    }
    pub(crate) fn seq(&mut self, v: Seq) {
        self.u32(v.0);
    }
    pub(crate) fn opt_u64(&mut self, v: Option<u64>) {
        self.bool(v.is_some());
        self.u64(v.unwrap_or(0));
    }
    pub(crate) fn bytes(&mut self, v: &[u8]) {
        self.u32(v.len() as u32);
        self.0.extend_from_slice(v);
    }
    pub(crate) fn addr(&mut self, a: SocketAddrV4) {
        self.u32(u32::from(*a.ip()));
        self.u16(a.port());
    }
    pub(crate) fn key(&mut self, k: ConnKey) {
        self.addr(k.local);
        self.addr(k.remote);
    }
    pub(crate) fn opts(&mut self, o: &Options) {
        self.u16(o.send_mss);
        self.u8(o.snd_wscale);
        self.u8(o.rcv_wscale);
        self.bool(o.sack);
        self.bool(o.timestamps);
        self.u32(o.ts_offset);
        self.bool(o.window_scale_ok);
    }
}

pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl Reader<'_> {
    pub(crate) fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(
            self.take(2)?
                .try_into()
                .map_err(|_| DecodeError::Truncated)?,
        ))
    }
    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(
            self.take(4)?
                .try_into()
                .map_err(|_| DecodeError::Truncated)?,
        ))
    }
    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(
            self.take(8)?
                .try_into()
                .map_err(|_| DecodeError::Truncated)?,
        ))
    }
    pub(crate) fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::Invalid),
        }
    }
    pub(crate) fn seq(&mut self) -> Result<Seq, DecodeError> {
        Ok(Seq(self.u32()?))
    }
    pub(crate) fn opt_u64(&mut self) -> Result<Option<u64>, DecodeError> {
        let some = self.bool()?;
        let v = self.u64()?;
        Ok(some.then_some(v))
    }
    pub(crate) fn bytes(&mut self) -> Result<Vec<u8>, DecodeError> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }
    pub(crate) fn addr(&mut self) -> Result<SocketAddrV4, DecodeError> {
        let ip = Ipv4Addr::from(self.u32()?);
        Ok(SocketAddrV4::new(ip, self.u16()?))
    }
    pub(crate) fn key(&mut self) -> Result<ConnKey, DecodeError> {
        Ok(ConnKey {
            local: self.addr()?,
            remote: self.addr()?,
        })
    }
    pub(crate) fn opts(&mut self) -> Result<Options, DecodeError> {
        let o = Options {
            send_mss: self.u16()?,
            snd_wscale: self.u8()?,
            rcv_wscale: self.u8()?,
            sack: self.bool()?,
            timestamps: self.bool()?,
            ts_offset: self.u32()?,
            window_scale_ok: self.bool()?,
        };
        if o.snd_wscale > 14 || o.rcv_wscale > 14 || o.send_mss < 64 {
            return Err(DecodeError::Invalid);
        }
        Ok(o)
    }
}

fn state_code(s: State) -> u8 {
    s as u8
}

fn state_from(code: u8) -> Result<State, DecodeError> {
    use State::*;
    const ALL: [State; 11] = [
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
    ];
    ALL.get(code as usize).copied().ok_or(DecodeError::Invalid)
}

impl OpenRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer(Vec::with_capacity(48));
        w.u8(OPEN_VERSION);
        w.key(self.key);
        w.seq(self.iss);
        w.seq(self.irs);
        w.opts(&self.opts);
        w.u32(self.ts_recent);
        w.u32(self.snd_wnd);
        w.u64(self.opened_epoch);
        w.0
    }

    pub fn decode(bytes: &[u8]) -> Result<OpenRecord, DecodeError> {
        let mut r = Reader(bytes);
        let v = r.u8()?;
        if v != OPEN_VERSION {
            return Err(DecodeError::Version(v));
        }
        Ok(OpenRecord {
            key: r.key()?,
            iss: r.seq()?,
            irs: r.seq()?,
            opts: r.opts()?,
            ts_recent: r.u32()?,
            snd_wnd: r.u32()?,
            opened_epoch: r.u64()?,
        })
    }
}

impl ConnSnapshot {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer(Vec::with_capacity(
            128 + self.send_data.len() + self.recv_data.len(),
        ));
        w.u8(SNAPSHOT_VERSION);
        w.key(self.key);
        w.u8(state_code(self.state));
        w.opts(&self.opts);
        for s in [self.iss, self.irs, self.snd_una, self.snd_nxt, self.snd_max] {
            w.seq(s);
        }
        w.u32(self.snd_wnd);
        w.u32(self.max_snd_wnd);
        for s in [self.snd_wl1, self.snd_wl2, self.peer_acked, self.send_start] {
            w.seq(s);
        }
        w.bytes(&self.send_data);
        w.bool(self.fin_queued);
        w.seq(self.rcv_nxt);
        w.seq(self.recv_start);
        w.bytes(&self.recv_data);
        w.u32(self.recv_ooo.len() as u32);
        for (s, d) in &self.recv_ooo {
            w.seq(*s);
            w.bytes(d);
        }
        w.opt_u64(self.peer_fin.map(|s| s.0 as u64));
        w.seq(self.rcv_adv);
        w.seq(self.last_ack_sent);
        w.u32(self.ts_recent);
        w.u32(self.max_tsecr);
        w.u8(match self.congestion {
            CongestionKind::NewReno => 0,
            CongestionKind::Cubic => 1,
        });
        w.u32(self.cwnd);
        w.u32(self.ssthresh);
        w.opt_u64(self.srtt_us);
        w.u64(self.rttvar_us);
        w.bool(self.nodelay);
        w.bool(self.rto_armed);
        w.opt_u64(self.time_wait_left_us);
        w.opt_u64(self.delivery_limit.map(|s| u64::from(s.0)));
        w.bytes(&self.app_state);
        w.u64(self.app_state_at);
        w.u64(self.app_written);
        w.u64(self.opened_epoch);
        w.0
    }

    pub fn decode(bytes: &[u8]) -> Result<ConnSnapshot, DecodeError> {
        let mut r = Reader(bytes);
        let v = r.u8()?;
        if v != SNAPSHOT_VERSION {
            return Err(DecodeError::Version(v));
        }
        let key = r.key()?;
        let state = state_from(r.u8()?)?;
        let opts = r.opts()?;
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
        if !r.0.is_empty() {
            return Err(DecodeError::Invalid);
        }
        Ok(snap)
    }
}

use super::buffer::{OooSegment, RecvBuffer, SendBuffer};
use super::congestion::Congestion;
use super::conn::Tcb;
use crate::config::Config;
use crate::iface::Role;
use crate::time::{Duration, Instant};

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
