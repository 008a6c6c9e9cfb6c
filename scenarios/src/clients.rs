//! Real clients in the client namespace, started in the background and
//! judged when they finish.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;

use crate::cluster::Cluster;

/// The Python echo client (testnet/clients/echo_client.py).
pub fn echo_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testnet/clients/echo_client.py")
}

/// A paced bidirectional echo stream: `size` bytes in `chunk`s every `pace`.
pub fn start_echo(
    c: &Cluster,
    connections: usize,
    size: usize,
    chunk: usize,
    pace: Duration,
) -> anyhow::Result<Child> {
    start_echo_on(c, 7, connections, size, chunk, pace)
}

/// [`start_echo`] to an echo app on another port.
pub fn start_echo_on(
    c: &Cluster,
    port: u16,
    connections: usize,
    size: usize,
    chunk: usize,
    pace: Duration,
) -> anyhow::Result<Child> {
    start_echo_to(c, c.vip(), port, connections, size, chunk, pace)
}

/// [`start_echo`] to `vip` (either of a dual-stack cluster's) and `port`.
pub fn start_echo_to(
    c: &Cluster,
    vip: IpAddr,
    port: u16,
    connections: usize,
    size: usize,
    chunk: usize,
    pace: Duration,
) -> anyhow::Result<Child> {
    let mut cmd = c.client("python3");
    cmd.arg(echo_script())
        .args([&vip.to_string(), &port.to_string()]);
    cmd.args([
        "--connections",
        &connections.to_string(),
        "--size",
        &size.to_string(),
    ]);
    cmd.args([
        "--chunk",
        &chunk.to_string(),
        "--pace",
        &format!("{:.4}", pace.as_secs_f64()),
    ]);
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null());
    cmd.spawn().context("starting the echo client")
}

/// The Python client of the `session` app (testnet/clients/session_client.py).
pub fn session_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testnet/clients/session_client.py")
}

/// `sessions` concurrent sessions of the passive `session` app on `port`,
/// each `requests` request/reply rounds `pace` apart. Its verdict is read
/// with [`finish_echo`].
pub fn start_sessions(
    c: &Cluster,
    port: u16,
    sessions: usize,
    requests: usize,
    pace: Duration,
) -> anyhow::Result<Child> {
    let mut cmd = c.client("python3");
    cmd.arg(session_script())
        .args([&c.vip().to_string(), &port.to_string()])
        .args(["--sessions", &sessions.to_string()])
        .args(["--requests", &requests.to_string()])
        .args(["--pace", &format!("{:.4}", pace.as_secs_f64())]);
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null());
    cmd.spawn().context("starting the session client")
}

/// Wait for an echo client and parse its JSON verdict.
pub fn finish_echo(child: Child) -> anyhow::Result<serde_json::Value> {
    let out = child.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).with_context(|| {
        format!(
            "echo client printed no verdict: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// curl in the client namespace: failing on HTTP errors, rate-limited so
/// the transfer spans the failures.
fn curl(c: &Cluster, rate: &str) -> Command {
    let mut cmd: Command = c.client("curl");
    cmd.args(["-sS", "--fail", "--max-time", "300", "--limit-rate", rate]);
    cmd.stderr(Stdio::piped()).stdin(Stdio::null());
    cmd
}

/// curl download of `path` from the VIP's HTTP app into `dest`.
pub fn start_download(c: &Cluster, path: &str, dest: &Path, rate: &str) -> anyhow::Result<Child> {
    let mut cmd = curl(c, rate);
    cmd.arg("-o").arg(dest);
    cmd.arg(format!("http://{}/{path}", c.vip_host()));
    cmd.stdout(Stdio::null());
    cmd.spawn().context("starting curl")
}

/// curl upload of `src` to the VIP's HTTP app (POST); its stdout is the
/// app's answer, `<sha256 hex> <bytes>` of the body it read.
pub fn start_upload(c: &Cluster, src: &Path, rate: &str) -> anyhow::Result<Child> {
    let mut cmd = curl(c, rate);
    // `Expect:` off: the app sends no 100 Continue, curl would wait 1 s.
    cmd.args(["-H", "Expect:", "--data-binary"])
        .arg(format!("@{}", src.display()))
        .arg(format!("http://{}/upload", c.vip_host()));
    cmd.stdout(Stdio::piped());
    cmd.spawn().context("starting curl")
}

/// `wrk` against `path` on the VIP's HTTP app: `connections` keep-alive
/// connections for `seconds`.
pub fn start_wrk(
    c: &Cluster,
    path: &str,
    connections: usize,
    seconds: u64,
) -> anyhow::Result<Child> {
    let mut cmd: Command = c.client("wrk");
    cmd.args([
        "-t2".to_string(),
        format!("-c{connections}"),
        format!("-d{seconds}s"),
        "--timeout".into(),
        "10s".into(),
        "--latency".into(),
        format!("http://{}/{path}", c.vip_host()),
    ]);
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null());
    cmd.spawn().context("starting wrk (apt-get install wrk)")
}

/// What `wrk` reported.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct WrkReport {
    pub requests: u64,
    pub requests_per_s: f64,
    /// connect, read, write and timeout errors (a reset is a read error).
    pub socket_errors: u64,
    pub non_2xx: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// Parse wrk's text report; `None` if it has no request count.
pub fn parse_wrk(text: &str) -> Option<WrkReport> {
    let mut r = WrkReport::default();
    let mut counted = false;
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        if line.contains(" requests in ") {
            r.requests = words.first()?.parse().ok()?;
            counted = true;
        } else if let Some(rest) = line.strip_prefix("Requests/sec:") {
            r.requests_per_s = rest.trim().parse().ok()?;
        } else if let Some(rest) = line.strip_prefix("Socket errors:") {
            r.socket_errors = rest
                .split(',')
                .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
                .sum();
        } else if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
            r.non_2xx = rest.trim().parse().ok()?;
        } else if words.first() == Some(&"50%") {
            r.p50_ms = words.get(1).and_then(|v| duration_ms(v));
        } else if words.first() == Some(&"99%") {
            r.p99_ms = words.get(1).and_then(|v| duration_ms(v));
        }
    }
    counted.then_some(r)
}

/// wrk's durations: `812.00us`, `1.25ms`, `2.10s`, `1.00m`.
fn duration_ms(v: &str) -> Option<f64> {
    let split = v.find(|c: char| c.is_ascii_alphabetic())?;
    let (n, unit) = v.split_at(split);
    let n: f64 = n.parse().ok()?;
    Some(match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        _ => return None,
    })
}

/// A file of `len` pseudo-random bytes (a seeded generator; deterministic).
pub fn write_random_file(path: &Path, len: usize) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut rng = hydra_base::rng::SplitMix64::new(0);
    let mut block = vec![0u8; 1 << 16];
    let mut left = len;
    while left > 0 {
        rng.fill(&mut block);
        let n = left.min(block.len());
        f.write_all(&block[..n])?;
        left -= n;
    }
    f.flush()
}

pub fn sha256(path: &Path) -> anyhow::Result<String> {
    let out = testnet::netns::run(Command::new("sha256sum").arg(path))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_reports_parse() {
        let text = "Running 5s test @ http://198.18.0.1/w.bin
  2 threads and 100 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     5.20ms    2.10ms  110.00ms   90.00%
    Req/Sec     9.50k   500.00    10.20k    70.00%
  Latency Distribution
     50%    4.90ms
     75%    5.80ms
     90%    7.00ms
     99%  105.30ms
  94800 requests in 5.00s, 1.20GB read
  Socket errors: connect 0, read 3, write 1, timeout 2
  Non-2xx or 3xx responses: 4
Requests/sec:  18960.00
Transfer/sec:    245.00MB
";
        let r = parse_wrk(text).expect("parses");
        assert_eq!(r.requests, 94800);
        assert_eq!(r.socket_errors, 6);
        assert_eq!(r.non_2xx, 4);
        assert_eq!(r.requests_per_s, 18960.0);
        assert_eq!(r.p99_ms, Some(105.3));
        assert_eq!(duration_ms("812.00us"), Some(0.812));
        assert_eq!(duration_ms("2.10s"), Some(2100.0));
        assert!(parse_wrk("unable to connect to 198.18.0.1:80 Connection refused").is_none());
    }
}
