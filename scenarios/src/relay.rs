//! A userspace link impairer (the kernel here has no netem): a UDP relay
//! (the redirector's copies of client packets to one replica) and a TCP
//! relay (that replica's ack-channel endpoint), with loss, delay, jitter
//! (which reorders), duplication and cuts read from a control file the
//! scenario rewrites at run time:
//!
//! ```text
//! loss=0.05 delay_ms=2 jitter_ms=3 duplicate=0.01 cut_data=0 cut_ack=0
//! ```
//!
//! Run as `hydra-scenario relay --udp LISTEN=TARGET --tcp LISTEN=TARGET
//! --control FILE`; every queue is bounded and every drop counted (printed
//! on exit).

use std::collections::BinaryHeap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use hydra_base::rng::SplitMix64 as Rng;

/// Datagrams held for delay at most; beyond, new ones are dropped (counted).
const MAX_QUEUED: usize = 65536;
/// How often the control file is read again.
const CONTROL_POLL: Duration = Duration::from_millis(10);

/// The link's state, as the control file sets it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Impairment {
    pub loss: f64,
    pub delay_ms: u64,
    pub jitter_ms: u64,
    pub duplicate: f64,
    /// Drop every datagram of the data link.
    pub cut_data: bool,
    /// Close the ack-channel connections and refuse new ones.
    pub cut_ack: bool,
}

impl std::str::FromStr for Impairment {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut out = Impairment::default();
        for item in s.split_whitespace() {
            let (k, v) = item
                .split_once('=')
                .ok_or_else(|| format!("`{item}`: expected key=value"))?;
            let num = |v: &str| {
                v.parse::<f64>()
                    .map_err(|_| format!("`{item}`: bad number"))
            };
            let prob = |v: &str| {
                let p = num(v)?;
                if (0.0..=1.0).contains(&p) {
                    Ok(p)
                } else {
                    Err(format!("`{item}`: a probability is 0..1"))
                }
            };
            let flag = |v: &str| match v {
                "0" | "false" => Ok(false),
                "1" | "true" => Ok(true),
                _ => Err(format!("`{item}`: expected 0 or 1")),
            };
            match k {
                "loss" => out.loss = prob(v)?,
                "duplicate" => out.duplicate = prob(v)?,
                "delay_ms" => out.delay_ms = num(v)? as u64,
                "jitter_ms" => out.jitter_ms = num(v)? as u64,
                "cut_data" => out.cut_data = flag(v)?,
                "cut_ack" => out.cut_ack = flag(v)?,
                _ => {
                    return Err(format!(
                        "`{k}`: unknown (loss, delay_ms, jitter_ms, duplicate, cut_data, cut_ack)"
                    ))
                }
            }
        }
        Ok(out)
    }
}

#[derive(clap::Args, Debug)]
pub struct RelayArgs {
    /// UDP relay LISTEN=TARGET (impaired one way, replies pass back).
    #[arg(long, value_parser = parse_pair)]
    pub udp: Option<(SocketAddrV4, SocketAddrV4)>,
    /// TCP relay LISTEN=TARGET (cut and healed; bytes pass unchanged).
    #[arg(long, value_parser = parse_pair)]
    pub tcp: Option<(SocketAddrV4, SocketAddrV4)>,
    /// The file holding the impairment line (missing or empty: a clean link).
    #[arg(long)]
    pub control: PathBuf,
    /// Seed for the loss and jitter draws.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

fn parse_pair(s: &str) -> Result<(SocketAddrV4, SocketAddrV4), String> {
    let (a, b) = s.split_once('=').ok_or("expected LISTEN=TARGET")?;
    let a = a.parse().map_err(|e| format!("`{a}`: {e}"))?;
    let b = b.parse().map_err(|e| format!("`{b}`: {e}"))?;
    Ok((a, b))
}

/// Counters, printed when the relay ends.
#[derive(Default)]
struct Counters {
    forwarded: AtomicU64,
    lost: AtomicU64,
    cut: AtomicU64,
    duplicated: AtomicU64,
    overflow: AtomicU64,
    tcp_refused: AtomicU64,
}

pub fn run(args: &RelayArgs) -> anyhow::Result<()> {
    let state = Arc::new(Mutex::new(Impairment::default()));
    let counters = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    if let Some((listen, target)) = args.udp {
        let (s, c, st) = (state.clone(), counters.clone(), stop.clone());
        let seed = args.seed;
        let socket = UdpSocket::bind(listen).with_context(|| format!("udp {listen}"))?;
        threads.push(std::thread::spawn(move || {
            if let Err(e) = udp_relay(socket, target, &s, &c, &st, seed) {
                eprintln!("relay: udp {listen}: {e}");
            }
        }));
    }
    if let Some((listen, target)) = args.tcp {
        let (s, c, st) = (state.clone(), counters.clone(), stop.clone());
        let listener = TcpListener::bind(listen).with_context(|| format!("tcp {listen}"))?;
        threads.push(std::thread::spawn(move || {
            tcp_relay(listener, target, &s, &c, &st);
        }));
    }
    anyhow::ensure!(!threads.is_empty(), "nothing to relay: give --udp or --tcp");
    let mut last = String::new();
    loop {
        let text = std::fs::read_to_string(&args.control).unwrap_or_default();
        if text != last {
            match text.trim().parse::<Impairment>() {
                Ok(i) => {
                    *state.lock().unwrap_or_else(|p| p.into_inner()) = i;
                    eprintln!("relay: now {i:?}");
                }
                Err(e) => eprintln!("relay: control file ignored: {e}"),
            }
            last = text;
        }
        if threads.iter().all(|t| t.is_finished()) {
            break;
        }
        std::thread::sleep(CONTROL_POLL);
    }
    stop.store(true, Ordering::SeqCst);
    let c = &counters;
    eprintln!(
        "relay: forwarded {} lost {} cut {} duplicated {} overflow {} tcp_refused {}",
        c.forwarded.load(Ordering::Relaxed),
        c.lost.load(Ordering::Relaxed),
        c.cut.load(Ordering::Relaxed),
        c.duplicated.load(Ordering::Relaxed),
        c.overflow.load(Ordering::Relaxed),
        c.tcp_refused.load(Ordering::Relaxed),
    );
    Ok(())
}

/// A datagram waiting for its delay (earliest first).
struct Delayed {
    at: Instant,
    seq: u64,
    bytes: Vec<u8>,
}

impl PartialEq for Delayed {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Delayed {}
impl PartialOrd for Delayed {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Delayed {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq)) // min-heap
    }
}

fn udp_relay(
    socket: UdpSocket,
    target: SocketAddrV4,
    state: &Mutex<Impairment>,
    c: &Counters,
    stop: &AtomicBool,
    seed: u64,
) -> anyhow::Result<()> {
    // Replies come back to an unconnected socket of our own, from the target.
    let out = UdpSocket::bind(SocketAddrV4::new(socket_ip(&socket)?, 0))?;
    out.set_nonblocking(true)?;
    socket.set_read_timeout(Some(Duration::from_millis(1)))?;
    let mut rng = Rng::new(seed);
    let mut queue: BinaryHeap<Delayed> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut sender: Option<SocketAddr> = None;
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        while queue.peek().is_some_and(|d| d.at <= now) {
            let d = queue.pop().expect("peeked");
            if out.send_to(&d.bytes, target).is_ok() {
                c.forwarded.fetch_add(1, Ordering::Relaxed);
            }
        }
        while let Ok((n, from)) = out.recv_from(&mut buf) {
            if let (SocketAddr::V4(f), Some(s)) = (from, sender) {
                if f == target {
                    let _ = socket.send_to(&buf[..n], s);
                }
            }
        }
        let (n, from) = match socket.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) => return Err(e.into()),
        };
        sender = Some(from);
        let imp = *state.lock().unwrap_or_else(|p| p.into_inner());
        if imp.cut_data {
            c.cut.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if rng.chance(imp.loss) {
            c.lost.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let copies = if rng.chance(imp.duplicate) {
            c.duplicated.fetch_add(1, Ordering::Relaxed);
            2
        } else {
            1
        };
        for _ in 0..copies {
            if queue.len() >= MAX_QUEUED {
                c.overflow.fetch_add(1, Ordering::Relaxed);
                break;
            }
            let jitter = if imp.jitter_ms > 0 {
                rng.below(imp.jitter_ms * 1000)
            } else {
                0
            };
            let delay = Duration::from_micros(imp.delay_ms * 1000 + jitter);
            seq += 1;
            queue.push(Delayed {
                at: now + delay,
                seq,
                bytes: buf[..n].to_vec(),
            });
        }
    }
    Ok(())
}

fn socket_ip(s: &UdpSocket) -> anyhow::Result<std::net::Ipv4Addr> {
    match s.local_addr()? {
        SocketAddr::V4(a) => Ok(*a.ip()),
        SocketAddr::V6(_) => anyhow::bail!("IPv4 only"),
    }
}

fn tcp_relay(
    listener: TcpListener,
    target: SocketAddrV4,
    state: &Arc<Mutex<Impairment>>,
    c: &Arc<Counters>,
    stop: &Arc<AtomicBool>,
) {
    let _ = listener.set_nonblocking(true);
    // Open connection pairs, so a cut can close them all.
    let open: Arc<Mutex<Vec<(TcpStream, TcpStream)>>> = Arc::default();
    while !stop.load(Ordering::Relaxed) {
        let cut = state.lock().unwrap_or_else(|p| p.into_inner()).cut_ack;
        if cut {
            let mut pairs = open.lock().unwrap_or_else(|p| p.into_inner());
            for (a, b) in pairs.drain(..) {
                let _ = a.shutdown(Shutdown::Both);
                let _ = b.shutdown(Shutdown::Both);
            }
        }
        match listener.accept() {
            Ok((inbound, _)) if cut => {
                c.tcp_refused.fetch_add(1, Ordering::Relaxed);
                drop(inbound);
            }
            Ok((inbound, _)) => {
                let Ok(outbound) =
                    TcpStream::connect_timeout(&target.into(), Duration::from_secs(1))
                else {
                    c.tcp_refused.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let _ = inbound.set_nonblocking(false);
                for s in [&inbound, &outbound] {
                    let _ = s.set_nodelay(true);
                }
                if let (Ok(a), Ok(b)) = (inbound.try_clone(), outbound.try_clone()) {
                    let mut pairs = open.lock().unwrap_or_else(|p| p.into_inner());
                    // Bounded: the oldest pairs have long been replaced.
                    if pairs.len() >= 256 {
                        pairs.remove(0);
                    }
                    pairs.push((a, b));
                }
                spawn_copy(&inbound, &outbound);
                spawn_copy(&outbound, &inbound);
            }
            Err(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

/// Copy bytes one way until either side closes.
fn spawn_copy(from: &TcpStream, to: &TcpStream) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_lines_parse_and_bad_ones_are_explained() {
        let i: Impairment = "loss=0.05 delay_ms=2 jitter_ms=3 duplicate=0.01 cut_ack=1"
            .parse()
            .unwrap();
        assert_eq!(i.loss, 0.05);
        assert_eq!((i.delay_ms, i.jitter_ms), (2, 3));
        assert!(i.cut_ack && !i.cut_data);
        assert_eq!("".parse::<Impairment>().unwrap(), Impairment::default());
        assert!("loss=2".parse::<Impairment>().unwrap_err().contains("0..1"));
        assert!("speed=9"
            .parse::<Impairment>()
            .unwrap_err()
            .contains("unknown"));
        assert!("loss"
            .parse::<Impairment>()
            .unwrap_err()
            .contains("key=value"));
    }
}
