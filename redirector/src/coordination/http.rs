//! A minimal HTTP/1.1 client for etcd's JSON gateway: one POST per
//! connection, plain TCP, every step under one deadline, answers capped in
//! size.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Bytes of status line and headers we accept at most.
const MAX_HEAD: usize = 16 * 1024;

/// An etcd client URL, `http://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The URL as configured.
    pub url: String,
    host: String,
    port: u16,
}

impl Endpoint {
    /// Parse `http://host:port` (an optional trailing `/`); TLS is not
    /// supported.
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            format!("{url:?}: only http://host:port is supported (no TLS, no other scheme)")
        })?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| format!("{url:?}: give the port, e.g. http://198.18.0.1:2379"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{url:?}: {port:?} is not a port number"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains('/') || port == 0 {
            return Err(format!("{url:?}: expected http://host:port"));
        }
        Ok(Endpoint {
            url: url.to_string(),
            host: host.to_string(),
            port,
        })
    }
}

/// Why one request to one endpoint failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpFailure {
    /// No connection: nothing was sent.
    Connect(String),
    /// The deadline passed after the request may have been sent.
    Timeout,
    /// The connection broke after the request may have been sent.
    Io(String),
    /// Not a well-formed HTTP answer, or larger than allowed.
    Malformed(String),
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

fn timed_out(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock)
}

fn remaining(deadline: Instant) -> Result<Duration, HttpFailure> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(HttpFailure::Timeout)
    } else {
        Ok(left)
    }
}

fn connect(ep: &Endpoint, deadline: Instant) -> Result<TcpStream, HttpFailure> {
    let addrs = (ep.host.as_str(), ep.port)
        .to_socket_addrs()
        .map_err(|e| HttpFailure::Connect(format!("cannot resolve {}: {e}", ep.host)))?;
    let mut last = format!("{} resolves to no address", ep.host);
    for addr in addrs {
        let left =
            remaining(deadline).map_err(|_| HttpFailure::Connect("connect timed out".into()))?;
        match TcpStream::connect_timeout(&addr, left) {
            Ok(s) => return Ok(s),
            Err(e) if timed_out(&e) => last = format!("{addr}: connect timed out"),
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Err(HttpFailure::Connect(last))
}

/// POST `body` as JSON to `path` on `ep`; the whole exchange ends by
/// `timeout`, and a body larger than `max_body` is refused.
pub fn post(
    ep: &Endpoint,
    path: &str,
    body: &[u8],
    timeout: Duration,
    max_body: usize,
) -> Result<Response, HttpFailure> {
    let deadline = Instant::now() + timeout;
    let mut stream = connect(ep, deadline)?;
    let io = |e: std::io::Error| {
        if timed_out(&e) {
            HttpFailure::Timeout
        } else {
            HttpFailure::Io(e.to_string())
        }
    };
    let _ = stream.set_nodelay(true);
    let host = if ep.host.contains(':') {
        format!("[{}]", ep.host)
    } else {
        ep.host.clone()
    };
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        ep.port,
        body.len()
    );
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    stream
        .set_write_timeout(Some(remaining(deadline)?))
        .map_err(io)?;
    stream.write_all(&request).map_err(io)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(r) = parse(&buf, max_body)? {
            return Ok(r);
        }
        stream
            .set_read_timeout(Some(remaining(deadline)?))
            .map_err(io)?;
        let n = match stream.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(io(e)),
        };
        if n == 0 {
            return Err(HttpFailure::Malformed(
                "connection closed before a complete answer".into(),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_HEAD + max_body * 2 {
            return Err(HttpFailure::Malformed(format!(
                "answer larger than {max_body} bytes"
            )));
        }
    }
}

/// The complete answer in `buf`, `None` while more is needed.
fn parse(buf: &[u8], max_body: usize) -> Result<Option<Response>, HttpFailure> {
    let bad = |m: &str| HttpFailure::Malformed(m.to_string());
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > MAX_HEAD {
            return Err(bad("headers too long"));
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| bad("headers are not text"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|s| s.get(2..5))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| bad(&format!("not an HTTP status line: {status_line:.60}")))?;
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| bad("bad Content-Length"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        }
    }
    let rest = &buf[end + 4..];
    let body = if chunked {
        match dechunk(rest, max_body)? {
            Some(b) => b,
            None => return Ok(None),
        }
    } else {
        let Some(length) = length else {
            return Err(bad("neither Content-Length nor chunked"));
        };
        if length > max_body {
            return Err(bad(&format!("answer larger than {max_body} bytes")));
        }
        if rest.len() < length {
            return Ok(None);
        }
        rest[..length].to_vec()
    };
    Ok(Some(Response { status, body }))
}

/// A chunked body, `None` while incomplete.
fn dechunk(mut rest: &[u8], max_body: usize) -> Result<Option<Vec<u8>>, HttpFailure> {
    let mut body = Vec::new();
    loop {
        let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let size_text = std::str::from_utf8(&rest[..eol])
            .ok()
            .map(|s| s.split(';').next().unwrap_or("").trim());
        let size = size_text
            .and_then(|s| usize::from_str_radix(s, 16).ok())
            .ok_or_else(|| HttpFailure::Malformed("bad chunk size".into()))?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok(Some(body));
        }
        if body.len() + size > max_body {
            return Err(HttpFailure::Malformed(format!(
                "answer larger than {max_body} bytes"
            )));
        }
        if rest.len() < size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_and_bad_ones_are_explained() {
        let e = Endpoint::parse("http://198.18.0.1:2379").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("198.18.0.1", 2379));
        assert_eq!(Endpoint::parse("http://[::1]:2379/").unwrap().host, "::1");
        assert!(Endpoint::parse("https://a:1")
            .unwrap_err()
            .contains("no TLS"));
        assert!(Endpoint::parse("http://a").unwrap_err().contains("port"));
        assert!(Endpoint::parse("http://a:x").unwrap_err().contains("port"));
    }

    #[test]
    fn answers_parse_whole_chunked_or_not_and_are_capped() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(parse(plain, 10).unwrap().unwrap().body, b"{}");
        assert!(parse(&plain[..plain.len() - 1], 10).unwrap().is_none());
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let r = parse(chunked, 10).unwrap().unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"abcde"[..]));
        assert!(parse(&chunked[..60], 10).unwrap().is_none());
        assert!(matches!(parse(chunked, 4), Err(HttpFailure::Malformed(_))));
        assert!(matches!(parse(plain, 1), Err(HttpFailure::Malformed(_))));
        assert!(matches!(
            parse(b"SSH-2.0-OpenSSH\r\n\r\n", 10),
            Err(HttpFailure::Malformed(_))
        ));
    }
}
