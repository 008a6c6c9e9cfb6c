//! A small HTTP/1.1 file server: GET and HEAD, Content-Length, single byte
//! ranges (RFC 9110 section 14), keep-alive. Enough for `curl` as a real client.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};

use stack::socket::TcpStream;

/// Request line plus headers larger than this get 431.
const MAX_HEAD: usize = 16 * 1024;
/// Requests served on one connection at most (bounds a client that never closes).
const MAX_REQUESTS: usize = 10_000;

#[derive(Debug, PartialEq, Eq)]
struct Request {
    method: String,
    path: String,
    range: Option<String>,
    keep_alive: bool,
}

#[derive(Debug, PartialEq, Eq)]
enum Head {
    Request(Request),
    Closed,
    Bad(u16, &'static str),
}

/// Serve requests until the client closes. The connection's app state
/// (kept in the stack, so snapshots carry it) is the count of requests
/// served and, while a response is being written, the request itself: a
/// replica that receives this connection by state transfer regenerates the
/// same response and continues it from the output position it finds.
pub fn serve(stream: TcpStream, root: &Path) -> io::Result<()> {
    let mut out = stream;
    let saved = out.app_state()?;
    let (mut served, in_progress) = decode_state(&saved.state);
    if let Some(raw) = in_progress {
        let head = split_head(raw).map_or(Head::Bad(400, "truncated request"), |(_, h)| h);
        let keep = answer(&mut out, root, &head, saved.written - saved.set_at)?;
        out.set_app_state(&encode_state(served, None))?;
        if !keep {
            return out.shutdown(std::net::Shutdown::Write);
        }
    }
    let mut buf = vec![0u8; MAX_HEAD + 1];
    while served < MAX_REQUESTS {
        let (len, head) = next_head(&out, &mut buf)?;
        if head == Head::Closed {
            break;
        }
        served += 1;
        out.consume_with_state(len, &encode_state(served, Some(&buf[..len])))?;
        let keep = answer(&mut out, root, &head, 0)?;
        out.set_app_state(&encode_state(served, None))?;
        if !keep {
            break;
        }
    }
    out.shutdown(std::net::Shutdown::Write)
}

/// App state: requests served (u32), then the raw request being answered.
fn encode_state(served: usize, request: Option<&[u8]>) -> Vec<u8> {
    let mut out = (served as u32).to_be_bytes().to_vec();
    out.extend_from_slice(request.unwrap_or_default());
    out
}

fn decode_state(state: &[u8]) -> (usize, Option<&[u8]>) {
    match state.split_first_chunk::<4>() {
        Some((n, rest)) => (
            u32::from_be_bytes(*n) as usize,
            (!rest.is_empty()).then_some(rest),
        ),
        None => (0, None),
    }
}

/// Peek until a whole request head is readable; returns its length and
/// the parsed head (nothing is consumed).
fn next_head(s: &TcpStream, buf: &mut [u8]) -> io::Result<(usize, Head)> {
    let mut have = 0;
    loop {
        let now = s.peek_beyond(buf, have)?;
        if let Some(found) = split_head(&buf[..now]) {
            return Ok(found);
        }
        if now > MAX_HEAD {
            return Ok((now, Head::Bad(431, "request header too large")));
        }
        if now == have {
            // The stream ended without a complete head.
            let head = if now == 0 || buf[..now].iter().all(|b| matches!(b, b'\r' | b'\n')) {
                Head::Closed
            } else {
                Head::Bad(400, "truncated request")
            };
            return Ok((now, head));
        }
        have = now;
    }
}

/// The request head at the start of `bytes` (empty lines before it are
/// skipped, RFC 9112 2.2): its length and parse, or `None` if incomplete.
fn split_head(bytes: &[u8]) -> Option<(usize, Head)> {
    let mut lines = Vec::new();
    let mut pos = 0;
    while let Some(nl) = bytes[pos..].iter().position(|b| *b == b'\n') {
        let line = &bytes[pos..pos + nl];
        pos += nl + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            if lines.is_empty() {
                continue;
            }
            return Some((pos, parse_head(&lines)));
        }
        let Ok(text) = std::str::from_utf8(line) else {
            return Some((pos, Head::Bad(400, "request is not UTF-8")));
        };
        lines.push(text.to_string());
    }
    None
}

/// Write the response to `head`, skipping its first `skip` bytes (already
/// sent by the replica this connection came from). False: close after it.
fn answer(out: &mut TcpStream, root: &Path, head: &Head, skip: u64) -> io::Result<bool> {
    let mut w = SkipWriter { inner: out, skip };
    match head {
        Head::Closed => Ok(false),
        Head::Bad(code, why) => {
            respond_error(&mut w, *code, why)?;
            Ok(false)
        }
        Head::Request(req) => respond(&mut w, root, req),
    }
}

/// Drops the first `skip` bytes written through it.
struct SkipWriter<'a, W: Write> {
    inner: &'a mut W,
    skip: u64,
}

impl<W: Write> Write for SkipWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.skip >= buf.len() as u64 {
            self.skip -= buf.len() as u64;
            return Ok(buf.len());
        }
        let skipped = self.skip as usize;
        self.skip = 0;
        Ok(skipped + self.inner.write(&buf[skipped..])?)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn parse_head(lines: &[String]) -> Head {
    let mut parts = lines[0].split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Head::Bad(400, "malformed request line");
    };
    if !version.starts_with("HTTP/1.") {
        return Head::Bad(505, "only HTTP/1.x is supported");
    }
    let mut keep_alive = version == "HTTP/1.1";
    let mut range = None;
    for h in &lines[1..] {
        let Some((name, value)) = h.split_once(':') else {
            return Head::Bad(400, "malformed header");
        };
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "connection" if value.eq_ignore_ascii_case("close") => keep_alive = false,
            "connection" if value.eq_ignore_ascii_case("keep-alive") => keep_alive = true,
            "range" => range = Some(value.to_string()),
            "content-length" | "transfer-encoding" => {
                return Head::Bad(400, "request bodies are not supported")
            }
            _ => {}
        }
    }
    Head::Request(Request {
        method: method.to_string(),
        path: target.to_string(),
        range,
        keep_alive,
    })
}

/// Map a request target to a file under `root`, refusing escapes.
fn resolve(root: &Path, target: &str) -> Option<PathBuf> {
    let path = target.split(['?', '#']).next()?;
    let rel = Path::new(path.trim_start_matches('/'));
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return None;
    }
    let full = root.join(rel);
    if full.is_dir() {
        return Some(full.join("index.html"));
    }
    Some(full)
}

/// Parse `bytes=a-b`, `bytes=a-`, `bytes=-n` against a file of `len` bytes.
/// `Ok(None)`: ignore the header; `Err(())`: unsatisfiable (416).
fn parse_range(spec: &str, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(set) = spec.strip_prefix("bytes=") else {
        return Ok(None);
    };
    if set.contains(',') {
        return Ok(None); // multiple ranges: serve the whole file, as allowed
    }
    let Some((a, b)) = set.trim().split_once('-') else {
        return Ok(None);
    };
    let (start, end) = match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(s), Ok(e)) if s <= e => (s, e.min(len.saturating_sub(1))),
        (Ok(s), Err(_)) if b.is_empty() => (s, len.saturating_sub(1)),
        (Err(_), Ok(n)) if a.is_empty() && n > 0 => (len.saturating_sub(n), len.saturating_sub(1)),
        _ => return Ok(None),
    };
    if start >= len {
        return Err(());
    }
    Ok(Some((start, end)))
}

/// Returns false when the connection must close after this response.
fn respond(out: &mut impl Write, root: &Path, req: &Request) -> io::Result<bool> {
    let head_only = match req.method.as_str() {
        "GET" => false,
        "HEAD" => true,
        _ => {
            respond_error(out, 405, "only GET and HEAD")?;
            return Ok(false);
        }
    };
    let Some(path) = resolve(root, &req.path) else {
        respond_error(out, 400, "bad path")?;
        return Ok(false);
    };
    let Ok(mut file) = File::open(&path) else {
        respond_error(out, 404, "not found")?;
        return Ok(req.keep_alive);
    };
    let len = file.metadata()?.len();
    let range = match req.range.as_deref().map(|r| parse_range(r, len)) {
        Some(Err(())) => {
            let head = format!("HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\nContent-Length: 0\r\n\r\n");
            out.write_all(head.as_bytes())?;
            return Ok(req.keep_alive);
        }
        Some(Ok(r)) => r,
        None => None,
    };
    let connection = if req.keep_alive {
        "keep-alive"
    } else {
        "close"
    };
    let (status, start, count, extra) = match range {
        Some((s, e)) => (
            "206 Partial Content",
            s,
            e - s + 1,
            format!("Content-Range: bytes {s}-{e}/{len}\r\n"),
        ),
        None => ("200 OK", 0, len, String::new()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {count}\r\nContent-Type: application/octet-stream\r\nAccept-Ranges: bytes\r\n{extra}Connection: {connection}\r\n\r\n"
    );
    out.write_all(head.as_bytes())?;
    if !head_only {
        file.seek(SeekFrom::Start(start))?;
        let copied = io::copy(&mut file.take(count), out)?;
        if copied != count {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while serving",
            ));
        }
    }
    Ok(req.keep_alive)
}

fn respond_error(out: &mut impl Write, code: u16, why: &str) -> io::Result<()> {
    let reason = match code {
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    };
    let body = format!("{code} {reason}: {why}\n");
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    out.write_all(head.as_bytes())?;
    out.write_all(body.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_rfc9110() {
        assert_eq!(parse_range("bytes=0-9", 100), Ok(Some((0, 9))));
        assert_eq!(parse_range("bytes=90-", 100), Ok(Some((90, 99))));
        assert_eq!(parse_range("bytes=-10", 100), Ok(Some((90, 99))));
        assert_eq!(parse_range("bytes=50-500", 100), Ok(Some((50, 99))));
        assert_eq!(parse_range("bytes=100-", 100), Err(()));
        assert_eq!(parse_range("bytes=9-1", 100), Ok(None));
        assert_eq!(parse_range("items=0-1", 100), Ok(None));
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Ok(None));
    }

    #[test]
    fn paths_cannot_escape_the_root() {
        let root = Path::new("/srv");
        assert_eq!(
            resolve(root, "/a/b.txt?x=1"),
            Some(PathBuf::from("/srv/a/b.txt"))
        );
        assert_eq!(resolve(root, "/../etc/passwd"), None);
        assert_eq!(resolve(root, "/a/../../x"), None);
    }

    #[test]
    fn heads_parse_and_bad_ones_are_rejected() {
        let raw = b"\r\nGET /f HTTP/1.1\r\nRange: bytes=1-2\r\nConnection: close\r\n\r\nGET /next";
        let (len, head) = split_head(raw).unwrap();
        assert_eq!(
            &raw[len..],
            b"GET /next",
            "the head ends where the next request starts"
        );
        assert_eq!(
            head,
            Head::Request(Request {
                method: "GET".into(),
                path: "/f".into(),
                range: Some("bytes=1-2".into()),
                keep_alive: false
            })
        );
        assert_eq!(
            split_head(b"GET /f HTTP/1.1\r\nHost: x\r\n"),
            None,
            "incomplete"
        );
        assert!(matches!(
            split_head(b"GET /f\r\n\r\n"),
            Some((_, Head::Bad(400, _)))
        ));
        assert!(matches!(
            split_head(b"GET /f HTTP/2\n\n"),
            Some((_, Head::Bad(505, _)))
        ));
        assert!(matches!(
            split_head(b"GET /\xff HTTP/1.1\r\n\r\n"),
            Some((_, Head::Bad(400, _)))
        ));
    }

    #[test]
    fn state_round_trips_and_skipping_resumes_a_response() {
        assert_eq!(
            decode_state(&encode_state(7, Some(b"GET /"))),
            (7, Some(&b"GET /"[..]))
        );
        assert_eq!(decode_state(&encode_state(7, None)), (7, None));
        assert_eq!(decode_state(&[]), (0, None));
        let mut out = Vec::new();
        let mut w = SkipWriter {
            inner: &mut out,
            skip: 5,
        };
        w.write_all(b"abc").unwrap();
        w.write_all(b"defgh").unwrap();
        assert_eq!(out, b"fgh");
    }
}
