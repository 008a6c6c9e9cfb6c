//! The load generator, run inside the client namespace as
//! `hydra-bench client ...`; prints one JSON result on stdout.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Stdio;
use std::time::{Duration, Instant};

use scenarios::cluster::{Cluster, VIP};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// Server address (the VIP or the server's address) and port.
    #[arg(long)]
    pub addr: SocketAddr,
    /// upload (to a discard server), download (from a source server), rr (request/response with an echo
    /// server), hold (open many connections and keep them).
    #[arg(long)]
    pub mode: String,
    /// Message size in bytes (upload: write size; rr: request = response size).
    #[arg(long, default_value_t = 65536)]
    pub msg: usize,
    /// How long to run.
    #[arg(long, default_value_t = 3.0)]
    pub secs: f64,
    /// hold: connections to open.
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ClientResult {
    pub bytes: u64,
    pub secs: f64,
    /// Request/response round trips in microseconds: p50, p99, p99.9, max.
    pub rtt_us: Option<[u64; 4]>,
    /// rr: (start of the request in ms since the run began, its round trip in
    /// ms) for every round trip over 5 ms: the stalls.
    pub slow: Vec<(f64, f64)>,
    /// rr: round trips completed.
    pub round_trips: u64,
    /// rr: round trips completed in each 100 ms of the run, in order (for
    /// rates before and after a disruption).
    pub per_100ms: Vec<u32>,
    /// hold: connections established and verified, and how long that took.
    pub held: usize,
    pub setup_secs: f64,
    pub error: Option<String>,
    /// CDF points of the round trip (us, fraction) for plots.
    pub cdf: Vec<(u64, f64)>,
}

impl ClientResult {
    /// The result a client process printed on stdout, or what went wrong
    /// running it.
    pub fn from_output(out: std::io::Result<std::process::Output>) -> ClientResult {
        match out {
            Ok(out) => serde_json::from_slice(&out.stdout).unwrap_or_else(|e| ClientResult {
                error: Some(format!(
                    "client output unreadable: {e}: {}",
                    String::from_utf8_lossy(&out.stderr)
                )),
                ..ClientResult::default()
            }),
            Err(e) => ClientResult {
                error: Some(format!("client did not run: {e}")),
                ..ClientResult::default()
            },
        }
    }
}

/// The load generator (`hydra-bench client --mode <mode>`) in a group's
/// client namespace against `port` of the VIP, its output piped (read
/// with [`ClientResult::from_output`]).
pub fn spawn_in(
    c: &Cluster,
    mode: &str,
    port: u16,
    args: &[&str],
) -> anyhow::Result<std::process::Child> {
    let exe = std::env::current_exe()?;
    let mut cmd = c.client(&exe.to_string_lossy());
    cmd.args(["client", "--mode", mode, "--addr", &format!("{VIP}:{port}")]);
    cmd.args(args);
    Ok(cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?)
}

pub fn run(args: &ClientArgs) -> ClientResult {
    let result = match args.mode.as_str() {
        "upload" => upload(args),
        "download" => download(args),
        "rr" => request_response(args),
        "hold" => hold(args),
        other => Err(format!("unknown mode {other}")),
    };
    result.unwrap_or_else(|e| ClientResult {
        error: Some(e),
        ..ClientResult::default()
    })
}

fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_nodelay(true).ok();
    Ok(s)
}

fn upload(args: &ClientArgs) -> Result<ClientResult, String> {
    let mut s = connect(args.addr)?;
    let buf = vec![0x5au8; args.msg];
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(args.secs);
    let mut bytes = 0u64;
    while Instant::now() < end {
        s.write_all(&buf).map_err(|e| format!("write: {e}"))?;
        bytes += buf.len() as u64;
    }
    // Count only what the server took: shut down and wait for its close.
    s.shutdown(std::net::Shutdown::Write).ok();
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut sink = [0u8; 64];
    let _ = s.read(&mut sink);
    Ok(ClientResult {
        bytes,
        secs: start.elapsed().as_secs_f64(),
        ..ClientResult::default()
    })
}

fn download(args: &ClientArgs) -> Result<ClientResult, String> {
    let mut s = connect(args.addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut buf = vec![0u8; args.msg];
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(args.secs);
    let mut bytes = 0u64;
    while Instant::now() < end {
        let n = s.read(&mut buf).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("server closed the download".into());
        }
        bytes += n as u64;
    }
    Ok(ClientResult {
        bytes,
        secs: start.elapsed().as_secs_f64(),
        ..ClientResult::default()
    })
}

fn request_response(args: &ClientArgs) -> Result<ClientResult, String> {
    let mut s = connect(args.addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let request: Vec<u8> = (0..args.msg).map(|i| (i % 251) as u8).collect();
    let mut response = vec![0u8; args.msg];
    let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
        .map_err(|e| e.to_string())?;
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(args.secs);
    let mut slow = Vec::new();
    let mut round_trips = 0u64;
    let mut per_100ms = Vec::new();
    while Instant::now() < end {
        let t0 = Instant::now();
        s.write_all(&request)
            .map_err(|e| format!("write after {round_trips} round trips: {e}"))?;
        s.read_exact(&mut response)
            .map_err(|e| format!("read after {round_trips} round trips: {e}"))?;
        if response != request {
            return Err(format!("response {round_trips} differs from its request"));
        }
        let rtt = t0.elapsed();
        hist.record(rtt.as_micros().max(1) as u64).ok();
        if rtt > Duration::from_millis(5) && slow.len() < 10_000 {
            slow.push(((t0 - start).as_secs_f64() * 1e3, rtt.as_secs_f64() * 1e3));
        }
        round_trips += 1;
        // Bounded by the run's length: one counter per 100 ms (10 a second).
        let bucket = (start.elapsed().as_millis() / 100) as usize;
        if bucket < 100_000 {
            if per_100ms.len() <= bucket {
                per_100ms.resize(bucket + 1, 0);
            }
            per_100ms[bucket] += 1;
        }
    }
    let cdf = [
        0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.99, 100.0,
    ]
    .iter()
    .map(|q| (hist.value_at_quantile(q / 100.0), q / 100.0))
    .collect();
    Ok(ClientResult {
        bytes: round_trips * 2 * args.msg as u64,
        secs: start.elapsed().as_secs_f64(),
        rtt_us: Some([
            hist.value_at_quantile(0.5),
            hist.value_at_quantile(0.99),
            hist.value_at_quantile(0.999),
            hist.max(),
        ]),
        slow,
        round_trips,
        per_100ms,
        cdf,
        ..ClientResult::default()
    })
}

fn hold(args: &ClientArgs) -> Result<ClientResult, String> {
    let start = Instant::now();
    let mut streams = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        let mut s = connect(args.addr).map_err(|e| format!("connection {i}: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok();
        let b = [(i % 251) as u8];
        s.write_all(&b)
            .map_err(|e| format!("connection {i} write: {e}"))?;
        let mut r = [0u8];
        s.read_exact(&mut r)
            .map_err(|e| format!("connection {i} read: {e}"))?;
        if r != b {
            return Err(format!("connection {i}: wrong echo"));
        }
        streams.push(s);
    }
    let setup = start.elapsed().as_secs_f64();
    // Hold them while the harness samples the servers' memory (or restarts
    // replicas), then check every one still echoes.
    std::thread::sleep(Duration::from_secs_f64(args.secs));
    for (i, s) in streams.iter_mut().enumerate() {
        let b = [((i + 7) % 251) as u8];
        let mut r = [0u8];
        s.write_all(&b)
            .and_then(|_| s.read_exact(&mut r))
            .map_err(|e| format!("connection {i} after the hold: {e}"))?;
        if r != b {
            return Err(format!("connection {i}: wrong echo after the hold"));
        }
    }
    Ok(ClientResult {
        held: streams.len(),
        setup_secs: setup,
        secs: start.elapsed().as_secs_f64(),
        ..ClientResult::default()
    })
}
