//! The Redis serialization protocol (RESP2): requests are arrays of bulk
//! strings (or inline commands, words on one line); replies are simple
//! strings, errors, integers, bulk strings and arrays.

/// Largest request accepted: a longer one is a protocol error (the
/// connection's buffer is bounded by it).
pub const MAX_REQUEST: usize = 1 << 20;
/// Most arguments in one request.
const MAX_ARGS: usize = 4096;

/// Why a request could not be parsed. The connection gets `-ERR` and is
/// closed, as Redis does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub String);

/// A whole request: its arguments and how many bytes it took.
pub type Request = (Vec<Vec<u8>>, usize);

/// Parse one request from the front of `buf`: `Ok(None)` when more bytes
/// are needed.
pub fn parse(buf: &[u8]) -> Result<Option<Request>, ProtocolError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    if first != b'*' {
        return parse_inline(buf);
    }
    let Some((count, mut at)) = line_number(buf, 1)? else {
        return Ok(None);
    };
    if !(0..=MAX_ARGS as i64).contains(&count) {
        return Err(ProtocolError(format!("invalid multibulk length {count}")));
    }
    let mut args = Vec::with_capacity(count as usize);
    for _ in 0..count {
        match buf.get(at) {
            None => return Ok(None),
            Some(b'$') => {}
            Some(&c) => {
                return Err(ProtocolError(format!(
                    "expected '$', got '{}'",
                    char::from(c).escape_default()
                )))
            }
        }
        let Some((len, data_at)) = line_number(buf, at + 1)? else {
            return Ok(None);
        };
        if !(0..=MAX_REQUEST as i64).contains(&len) {
            return Err(ProtocolError(format!("invalid bulk length {len}")));
        }
        let end = data_at + len as usize;
        if buf.len() < end + 2 {
            if buf.len() > MAX_REQUEST {
                return Err(ProtocolError("request too large".into()));
            }
            return Ok(None);
        }
        if &buf[end..end + 2] != b"\r\n" {
            return Err(ProtocolError("bulk string not followed by CRLF".into()));
        }
        args.push(buf[data_at..end].to_vec());
        at = end + 2;
    }
    Ok(Some((args, at)))
}

/// A number ending in CRLF at `at`: the number and where the next line starts.
fn line_number(buf: &[u8], at: usize) -> Result<Option<(i64, usize)>, ProtocolError> {
    let Some(rel) = buf
        .get(at..)
        .and_then(|b| b.windows(2).position(|w| w == b"\r\n"))
    else {
        if buf.len() - at.min(buf.len()) > 32 {
            return Err(ProtocolError("length line too long".into()));
        }
        return Ok(None);
    };
    let text = std::str::from_utf8(&buf[at..at + rel])
        .map_err(|_| ProtocolError("length is not a number".into()))?;
    let n = text
        .parse::<i64>()
        .map_err(|_| ProtocolError(format!("length `{text}` is not a number")))?;
    Ok(Some((n, at + rel + 2)))
}

fn parse_inline(buf: &[u8]) -> Result<Option<Request>, ProtocolError> {
    let Some(end) = buf.iter().position(|b| *b == b'\n') else {
        if buf.len() > MAX_REQUEST {
            return Err(ProtocolError("inline request too large".into()));
        }
        return Ok(None);
    };
    let line = buf[..end].strip_suffix(b"\r").unwrap_or(&buf[..end]);
    let args = line
        .split(|b| *b == b' ' || *b == b'\t')
        .filter(|w| !w.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    Ok(Some((args, end + 1)))
}

/// Reply encoders.
pub mod reply {
    /// `+OK`-style status.
    pub fn simple(out: &mut Vec<u8>, s: &str) {
        out.push(b'+');
        out.extend_from_slice(s.as_bytes());
        out.extend_from_slice(b"\r\n");
    }

    /// `-ERR ...`.
    pub fn error(out: &mut Vec<u8>, s: &str) {
        out.push(b'-');
        out.extend_from_slice(s.replace(['\r', '\n'], " ").as_bytes());
        out.extend_from_slice(b"\r\n");
    }

    /// `:n`.
    pub fn integer(out: &mut Vec<u8>, n: i64) {
        out.extend_from_slice(format!(":{n}\r\n").as_bytes());
    }

    /// `$len` and the bytes, or `$-1` for none.
    pub fn bulk(out: &mut Vec<u8>, b: Option<&[u8]>) {
        match b {
            Some(b) => {
                out.extend_from_slice(format!("${}\r\n", b.len()).as_bytes());
                out.extend_from_slice(b);
                out.extend_from_slice(b"\r\n");
            }
            None => out.extend_from_slice(b"$-1\r\n"),
        }
    }

    /// `*n`: the header of an array of `n` replies.
    pub fn array(out: &mut Vec<u8>, n: usize) {
        out.extend_from_slice(format!("*{n}\r\n").as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_inline_partial_and_pipelined_requests() {
        let two = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPING\r\n";
        let (args, used) = parse(two).unwrap().unwrap();
        assert_eq!(args, vec![b"GET".to_vec(), b"k".to_vec()]);
        let (args, rest) = parse(&two[used..]).unwrap().unwrap();
        assert_eq!(args, vec![b"PING".to_vec()]);
        assert_eq!(used + rest, two.len());
        for cut in 0..used {
            assert_eq!(parse(&two[..cut]).unwrap(), None, "cut at {cut}");
        }
        let (args, used) = parse(b"SET a  b\r\nrest").unwrap().unwrap();
        assert_eq!(args, vec![b"SET".to_vec(), b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(used, 10);
        let (args, _) = parse(b"*1\r\n$0\r\n\r\n").unwrap().unwrap();
        assert_eq!(args, vec![Vec::<u8>::new()]);
    }

    #[test]
    fn bad_requests_are_errors_not_panics() {
        for bad in [
            &b"*x\r\n"[..],
            b"*2\r\n+OK\r\n",
            b"*1\r\n$-5\r\n",
            b"*1\r\n$3\r\nabcXY",
            b"*99999999\r\n",
            b"*1\r\n$99999999999\r\n",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(parse(&[b'*'; 40]).is_err());
        let long = vec![b'a'; MAX_REQUEST + 1];
        assert!(parse(&long).is_err());
    }
}
