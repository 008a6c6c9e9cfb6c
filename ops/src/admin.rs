//! A tiny HTTP/1.1 endpoint for operators: `GET /metrics` (Prometheus
//! text), `GET /status` (JSON) and a few `POST` actions, served by one
//! thread from a callback. Both binaries use it.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// Answers `(method, path)` with `(content type, body)`, or `None` for 404.
pub type Handler = dyn Fn(&str, &str) -> Option<(&'static str, String)> + Send + Sync;

/// Bind `addr` and serve requests on a background thread until the process ends.
/// Returns the bound address (useful with port 0).
pub fn serve(addr: SocketAddr, handler: Arc<Handler>) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    thread::Builder::new()
        .name("admin-http".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Err(e) = answer(stream, &*handler) {
                    tracing::debug!("admin request failed: {e}");
                }
            }
        })?;
    Ok(local)
}

/// Longest request line we read; anything longer is refused.
const MAX_REQUEST_LINE: usize = 4096;

fn answer(stream: TcpStream, handler: &Handler) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader
        .by_ref()
        .take(MAX_REQUEST_LINE as u64)
        .read_line(&mut line)?;
    // Drain headers (bounded) so the client sees a clean close.
    let mut header = String::new();
    for _ in 0..100 {
        header.clear();
        if reader
            .by_ref()
            .take(MAX_REQUEST_LINE as u64)
            .read_line(&mut header)?
            == 0
            || header.trim().is_empty()
        {
            break;
        }
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, ctype, body) = match handler(method, path) {
        Some((ctype, body)) => ("200 OK", ctype, body),
        None => (
            "404 Not Found",
            "text/plain",
            format!("no {method} {path} here\n"),
        ),
    };
    let mut out = stream;
    write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    out.flush()
}

/// Appends one Prometheus sample with HELP/TYPE lines.
pub fn metric(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    labels: &str,
    value: impl std::fmt::Display,
) {
    use std::fmt::Write as _;
    // One HELP and TYPE per metric name, before its first sample: the
    // exposition format refuses a second one (labelled series repeat names).
    if !out.contains(&format!("# TYPE {name} {kind}\n")) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }
    if labels.is_empty() {
        let _ = writeln!(out, "{name} {value}");
    } else {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
}

#[cfg(test)]
mod tests {
    use super::metric;

    #[test]
    fn a_labelled_metric_gets_one_help_and_type_before_its_samples() {
        let mut out = String::new();
        metric(&mut out, "x_total", "counter", "X.", "reason=\"a\"", 1);
        metric(&mut out, "x_total", "counter", "X.", "reason=\"b\"", 2);
        metric(&mut out, "x", "gauge", "Another.", "", 3);
        assert_eq!(
            out,
            "# HELP x_total X.\n# TYPE x_total counter\nx_total{reason=\"a\"} 1\nx_total{reason=\"b\"} 2\n\
             # HELP x Another.\n# TYPE x gauge\nx 3\n"
        );
    }
}
