//! A small HTTP/1.1 file server: GET and HEAD, Content-Length, single byte
//! ranges (RFC 9110 section 14), keep-alive; and an upload sink: POST or
//! PUT to any path answers with the SHA-256 and length of the body it read
//! (`<hex digest> <bytes>`), so `curl --data-binary @file` can check an
//! upload end to end. Enough for `curl` and `wrk` as real clients.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};

use stack::socket::TcpStream;

use super::upload::{hex, BodyDigest};

/// Request line plus headers larger than this get 431.
const MAX_HEAD: usize = 16 * 1024;
/// Requests served on one connection at most (bounds a client that never closes).
const MAX_REQUESTS: usize = 1_000_000;
/// An upload's body is read (and its digest state saved) this much at a time.
const BODY_CHUNK: usize = 64 * 1024;

#[derive(Debug, PartialEq, Eq)]
struct Request {
    method: String,
    path: String,
    range: Option<String>,
    keep_alive: bool,
    /// Body length (uploads only; other methods carry no body).
    content_length: u64,
}

#[derive(Debug, PartialEq, Eq)]
enum Head {
    Request(Request),
    Closed,
    Bad(u16, &'static str),
}

impl Head {
    /// An upload: its body follows the head.
    fn has_body(&self) -> bool {
        matches!(self, Head::Request(r) if is_upload(&r.method))
    }
}

fn is_upload(method: &str) -> bool {
    matches!(method, "POST" | "PUT")
}

/// Serve requests until the client closes. The connection's app state
/// (kept in the stack, so snapshots carry it) is the count of requests
/// served and, while a request is being answered, the request head and,
/// for an upload, the digest of its body so far: a replica that receives
/// this connection by state transfer reads the rest of the body, then
/// regenerates the same response and continues it from the output
/// position it finds.
pub fn serve(stream: TcpStream, root: &Path) -> io::Result<()> {
    let mut out = stream;
    let saved = out.app_state()?;
    let state = decode_state(&saved.state)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "corrupt http app state"))?;
    let mut served = state.served;
    if let Some((raw, body)) = state.in_progress {
        let head = split_head(raw).map_or(Head::Bad(400, "truncated request"), |(_, h)| h);
        let skip = saved.written - saved.set_at;
        let keep = finish(&mut out, root, &head, raw, served, body, skip)?;
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
        let body = head.has_body().then(BodyDigest::default);
        let raw = &buf[..len];
        out.consume_with_state(len, &encode_state(served, Some((raw, body.as_ref()))))?;
        let keep = finish(&mut out, root, &head, raw, served, body, 0)?;
        out.set_app_state(&encode_state(served, None))?;
        if !keep {
            break;
        }
    }
    out.shutdown(std::net::Shutdown::Write)
}

/// Read the rest of an upload's body (`body`: its digest so far), then
/// answer the request, skipping the first `skip` bytes of the answer.
fn finish(
    out: &mut TcpStream,
    root: &Path,
    head: &Head,
    raw: &[u8],
    served: usize,
    body: Option<BodyDigest>,
    skip: u64,
) -> io::Result<bool> {
    let upload = match (body, head) {
        (Some(mut digest), Head::Request(req)) => {
            let total = req.content_length;
            let mut chunk = vec![0u8; BODY_CHUNK];
            while digest.len < total {
                let want = (total - digest.len).min(BODY_CHUNK as u64) as usize;
                let n = out.peek(&mut chunk[..want])?;
                if n == 0 {
                    return Ok(false); // the client ended the body early
                }
                digest.update(&chunk[..n]);
                let state = encode_state(served, Some((raw, Some(&digest))));
                out.consume_with_state(n, &state)?;
            }
            Some(digest)
        }
        _ => None,
    };
    answer(out, root, head, upload.as_ref(), skip)
}

/// What the app state says about the connection.
struct SavedState<'a> {
    served: usize,
    /// The request being answered and, for an upload, its body's digest.
    in_progress: Option<(&'a [u8], Option<BodyDigest>)>,
}

/// App state: requests served (u32); while answering, the request head's
/// length (u32), the head, then for an upload the body digest.
fn encode_state(served: usize, request: Option<(&[u8], Option<&BodyDigest>)>) -> Vec<u8> {
    let mut out = (served as u32).to_be_bytes().to_vec();
    if let Some((raw, body)) = request {
        out.extend_from_slice(&(raw.len() as u32).to_be_bytes());
        out.extend_from_slice(raw);
        if let Some(digest) = body {
            digest.encode(&mut out);
        }
    }
    out
}

/// `None` if the state is not what `encode_state` wrote.
fn decode_state(state: &[u8]) -> Option<SavedState<'_>> {
    let Some((n, rest)) = state.split_first_chunk::<4>() else {
        return state.is_empty().then_some(SavedState {
            served: 0,
            in_progress: None,
        });
    };
    let served = u32::from_be_bytes(*n) as usize;
    if rest.is_empty() {
        return Some(SavedState {
            served,
            in_progress: None,
        });
    }
    let (len, rest) = rest.split_first_chunk::<4>()?;
    let len = u32::from_be_bytes(*len) as usize;
    if rest.len() < len {
        return None;
    }
    let (raw, body) = rest.split_at(len);
    let body = if body.is_empty() {
        None
    } else {
        Some(BodyDigest::decode(body)?)
    };
    Some(SavedState {
        served,
        in_progress: Some((raw, body)),
    })
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
fn answer(
    out: &mut TcpStream,
    root: &Path,
    head: &Head,
    upload: Option<&BodyDigest>,
    skip: u64,
) -> io::Result<bool> {
    let mut w = SkipWriter { inner: out, skip };
    match head {
        Head::Closed => Ok(false),
        Head::Bad(code, why) => {
            respond_error(&mut w, *code, why)?;
            Ok(false)
        }
        Head::Request(req) => match upload {
            Some(digest) => respond_upload(&mut w, req, digest),
            None => respond(&mut w, root, req),
        },
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
    let mut content_length = None;
    for h in &lines[1..] {
        let Some((name, value)) = h.split_once(':') else {
            return Head::Bad(400, "malformed header");
        };
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "connection" if value.eq_ignore_ascii_case("close") => keep_alive = false,
            "connection" if value.eq_ignore_ascii_case("keep-alive") => keep_alive = true,
            "range" => range = Some(value.to_string()),
            "content-length" => match value.parse::<u64>() {
                Ok(n) if content_length.is_none_or(|m| m == n) => content_length = Some(n),
                _ => return Head::Bad(400, "invalid Content-Length"),
            },
            "transfer-encoding" => {
                return Head::Bad(
                    411,
                    "chunked bodies are not supported: send a Content-Length",
                )
            }
            _ => {}
        }
    }
    if is_upload(method) && content_length.is_none() {
        return Head::Bad(411, "an upload needs a Content-Length");
    }
    if !is_upload(method) && content_length.unwrap_or(0) > 0 {
        return Head::Bad(400, "only POST and PUT carry a body");
    }
    Head::Request(Request {
        method: method.to_string(),
        path: target.to_string(),
        range,
        keep_alive,
        content_length: content_length.unwrap_or(0),
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
            respond_error(out, 405, "only GET, HEAD, POST and PUT")?;
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

/// The answer to an upload: its body's SHA-256 and length.
fn respond_upload(out: &mut impl Write, req: &Request, digest: &BodyDigest) -> io::Result<bool> {
    let body = format!("{} {}\n", hex(&digest.finish()), digest.len);
    let connection = if req.keep_alive {
        "keep-alive"
    } else {
        "close"
    };
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n",
        body.len()
    );
    out.write_all(head.as_bytes())?;
    out.write_all(body.as_bytes())?;
    Ok(req.keep_alive)
}

fn respond_error(out: &mut impl Write, code: u16, why: &str) -> io::Result<()> {
    let reason = match code {
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
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
                keep_alive: false,
                content_length: 0,
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
        let upload = split_head(b"POST /up HTTP/1.1\r\nContent-Length: 12\r\n\r\n")
            .unwrap()
            .1;
        assert!(upload.has_body());
        assert!(matches!(&upload, Head::Request(r) if r.content_length == 12));
        for (bad, code) in [
            (&b"POST /up HTTP/1.1\r\n\r\n"[..], 411),
            (
                b"PUT /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                411,
            ),
            (b"POST /up HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
            (
                b"POST /up HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                400,
            ),
            (b"GET /f HTTP/1.1\r\nContent-Length: 3\r\n\r\n", 400),
        ] {
            assert!(
                matches!(split_head(bad), Some((_, Head::Bad(c, _))) if c == code),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn state_round_trips_and_skipping_resumes_a_response() {
        let mut digest = BodyDigest::default();
        digest.update(b"part of a body");
        for (raw, body) in [(&b"GET /"[..], None), (b"POST /u", Some(&digest))] {
            let saved = encode_state(7, Some((raw, body)));
            let state = decode_state(&saved).expect("decodes");
            assert_eq!(state.served, 7);
            assert_eq!(state.in_progress, Some((raw, body.cloned())));
            assert!(decode_state(&saved[..saved.len() - 1]).is_none(), "torn");
        }
        let saved = encode_state(7, None);
        let idle = decode_state(&saved).expect("decodes");
        assert_eq!((idle.served, idle.in_progress), (7, None));
        assert_eq!(decode_state(&[]).map(|s| s.served), Some(0));
        assert!(decode_state(&[0, 0]).is_none(), "a torn count");
        assert!(
            decode_state(&[0, 0, 0, 1, 0, 0, 0, 9, b'G']).is_none(),
            "a head shorter than its length"
        );
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
