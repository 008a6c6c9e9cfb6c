//! Real clients in the client namespace, started in the background and
//! judged when they finish.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;

use crate::cluster::{Cluster, VIP};

/// The Python echo client (tests/clients/echo_client.py).
pub fn echo_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/clients/echo_client.py")
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
    let mut cmd = c.client("python3");
    cmd.arg(echo_script())
        .args([&VIP.to_string(), &port.to_string()]);
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

/// The Python client of the `session` app (tests/clients/session_client.py).
pub fn session_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/clients/session_client.py")
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
        .args([&VIP.to_string(), &port.to_string()])
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

/// curl download of `path` from the VIP's HTTP app into `dest`, rate-limited
/// so the transfer spans the failures.
pub fn start_download(c: &Cluster, path: &str, dest: &Path, rate: &str) -> anyhow::Result<Child> {
    let mut cmd: Command = c.client("curl");
    cmd.args([
        "-sS",
        "--fail",
        "--max-time",
        "300",
        "--limit-rate",
        rate,
        "-o",
    ])
    .arg(dest);
    cmd.arg(format!("http://{VIP}/{path}"));
    cmd.stdout(Stdio::null())
        .stderr(Stdio::piped())
        .stdin(Stdio::null());
    cmd.spawn().context("starting curl")
}

/// A file of `len` pseudo-random bytes (xorshift; deterministic).
pub fn write_random_file(path: &Path, len: usize) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut block = vec![0u8; 1 << 16];
    let mut left = len;
    while left > 0 {
        for b in block.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        let n = left.min(block.len());
        f.write_all(&block[..n])?;
        left -= n;
    }
    f.flush()
}

pub fn sha256(path: &Path) -> anyhow::Result<String> {
    let out = hydra_tests::netns::run(Command::new("sha256sum").arg(path))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string())
}
