//! A small HTTP/1.1 file server: GET and HEAD, Content-Length, single byte
//! ranges (RFC 9110 section 14), keep-alive. Enough for `curl` as a real client.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
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

pub fn serve(stream: TcpStream, root: &Path) -> io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    for _ in 0..MAX_REQUESTS {
        match read_head(&mut reader)? {
            Head::Closed => break,
            Head::Bad(code, why) => {
                respond_error(&mut out, code, why)?;
                break;
            }
            Head::Request(req) => {
                if !respond(&mut out, root, &req)? || !req.keep_alive {
                    break;
                }
            }
        }
    }
    out.shutdown(std::net::Shutdown::Write)
}

fn read_head(r: &mut impl BufRead) -> io::Result<Head> {
    let mut lines = Vec::new();
    let mut total = 0;
    loop {
        let mut line = Vec::new();
        let n = r
            .take((MAX_HEAD + 1 - total) as u64)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(if lines.is_empty() {
                Head::Closed
            } else {
                Head::Bad(400, "truncated request")
            });
        }
        total += n;
        if total > MAX_HEAD {
            return Ok(Head::Bad(431, "request header too large"));
        }
        let Ok(text) = String::from_utf8(line) else {
            return Ok(Head::Bad(400, "request is not UTF-8"));
        };
        let text = text.trim_end_matches(['\r', '\n']).to_string();
        if text.is_empty() {
            if lines.is_empty() {
                continue; // RFC 9112 2.2: ignore empty lines before the request line
            }
            return Ok(parse_head(&lines));
        }
        lines.push(text);
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
fn respond(out: &mut TcpStream, root: &Path, req: &Request) -> io::Result<bool> {
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

fn respond_error(out: &mut TcpStream, code: u16, why: &str) -> io::Result<()> {
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
        let mut r = io::Cursor::new(
            b"\r\nGET /f HTTP/1.1\r\nRange: bytes=1-2\r\nConnection: close\r\n\r\n".to_vec(),
        );
        assert_eq!(
            read_head(&mut r).unwrap(),
            Head::Request(Request {
                method: "GET".into(),
                path: "/f".into(),
                range: Some("bytes=1-2".into()),
                keep_alive: false
            })
        );
        let mut r = io::Cursor::new(b"GET /f\r\n\r\n".to_vec());
        assert!(matches!(read_head(&mut r).unwrap(), Head::Bad(400, _)));
        let mut r = io::Cursor::new(b"GET /f HTTP/2\r\n\r\n".to_vec());
        assert!(matches!(read_head(&mut r).unwrap(), Head::Bad(505, _)));
        let mut big = b"GET /f HTTP/1.1\r\nX: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', MAX_HEAD));
        assert!(matches!(
            read_head(&mut io::Cursor::new(big)).unwrap(),
            Head::Bad(431, _)
        ));
        assert_eq!(
            read_head(&mut io::Cursor::new(Vec::new())).unwrap(),
            Head::Closed
        );
    }
}
