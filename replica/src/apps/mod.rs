//! Built-in applications a replica serves. All but `session` are
//! deterministic given their input, as active replication requires: every
//! replica runs the same app on the same bytes and produces the same
//! output. `session` is not, and runs passively replicated: only on the
//! primary, its steps checkpointed to the backups.

mod http;
pub mod session;
mod upload;

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

use stack::socket::{NetStack, TcpListener, TcpStream};

/// Size of the block `source` writes repeatedly.
pub const SOURCE_BLOCK: usize = 64 * 1024;

/// Which application and on which port, as given on the command line
/// (`echo:7`, `discard:9`, `source:19`, `http:80=/srv/www`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSpec {
    pub kind: AppKind,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppKind {
    /// Sends back what it receives (RFC 862).
    Echo,
    /// Reads and drops everything (RFC 863).
    Discard,
    /// Sends an endless deterministic byte pattern until the client goes away.
    Source,
    /// HTTP/1.1 file server rooted at a directory.
    Http(PathBuf),
    /// Dice-rolling sessions with clock and randomness (passive mode).
    Session,
}

impl FromStr for AppSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, rest) = s
            .split_once(':')
            .ok_or_else(|| format!("`{s}`: expected NAME:PORT"))?;
        let (port, arg) = match rest.split_once('=') {
            Some((p, a)) => (p, Some(a)),
            None => (rest, None),
        };
        let port: u16 = port
            .parse()
            .map_err(|_| format!("`{s}`: bad port `{port}`"))?;
        let kind = match (name, arg) {
            ("echo", None) => AppKind::Echo,
            ("discard", None) => AppKind::Discard,
            ("source", None) => AppKind::Source,
            ("session", None) => AppKind::Session,
            ("http", Some(dir)) if !dir.is_empty() => AppKind::Http(PathBuf::from(dir)),
            ("http", _) => {
                return Err(format!(
                    "`{s}`: http needs a directory, e.g. http:80=/srv/www"
                ))
            }
            (other, _) => {
                return Err(format!(
                    "`{s}`: unknown app `{other}` (echo, discard, source, http, session)"
                ))
            }
        };
        Ok(AppSpec { kind, port })
    }
}

impl fmt::Display for AppSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            AppKind::Echo => write!(f, "echo:{}", self.port),
            AppKind::Discard => write!(f, "discard:{}", self.port),
            AppKind::Source => write!(f, "source:{}", self.port),
            AppKind::Http(dir) => write!(f, "http:{}={}", self.port, dir.display()),
            AppKind::Session => write!(f, "session:{}", self.port),
        }
    }
}

/// The byte at offset `i` of the `source` stream, so clients can verify it.
pub fn source_byte(i: u64) -> u8 {
    (i % 251) as u8
}

/// Listen on `address:port` and serve `spec` with a thread per connection.
pub fn start(net: &NetStack, address: IpAddr, spec: &AppSpec) -> io::Result<()> {
    let local = SocketAddr::new(address, spec.port);
    let listener = if spec.kind == AppKind::Session {
        TcpListener::bind_passive(net, local)?
    } else {
        TcpListener::bind(net, local)?
    };
    let kind = spec.kind.clone();
    if let AppKind::Http(dir) = &kind {
        if !dir.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("http root {} is not a directory", dir.display()),
            ));
        }
    }
    std::thread::Builder::new()
        .name(format!("app-{spec}"))
        .spawn(move || {
            for stream in listener.incoming() {
                let stream = match stream {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!("accept failed, app stops: {e}");
                        return;
                    }
                };
                let kind = kind.clone();
                let spawned =
                    std::thread::Builder::new()
                        .name("app-conn".into())
                        .spawn(move || {
                            let peer = stream.key().remote;
                            if let Err(e) = serve(&kind, stream) {
                                tracing::debug!("{peer}: {e}");
                            }
                        });
                if let Err(e) = spawned {
                    tracing::warn!("cannot start a connection thread: {e}");
                }
            }
        })?;
    Ok(())
}

fn serve(kind: &AppKind, stream: TcpStream) -> io::Result<()> {
    match kind {
        AppKind::Echo => echo(stream),
        AppKind::Discard => discard(stream),
        AppKind::Source => source(stream),
        AppKind::Http(root) => http::serve(stream, root),
        AppKind::Session => session::serve(stream),
    }
}

/// Echo keeps no bytes of its own: it peeks and writes-and-consumes in one
/// step, so a snapshot of the connection alone resumes it on a rejoining
/// replica.
fn echo(s: TcpStream) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = s.peek(&mut buf)?;
        if n == 0 {
            return s.shutdown(Shutdown::Write);
        }
        let mut done = 0;
        while done < n {
            done += s.write_consuming(&buf[done..n])?;
        }
    }
}

fn discard(mut s: TcpStream) -> io::Result<()> {
    // Large reads: fewer trips through the stack's lock per byte.
    let mut buf = vec![0u8; 256 * 1024];
    while s.read(&mut buf)? > 0 {}
    s.shutdown(Shutdown::Write)
}

/// The pattern position is the count of bytes written, which the
/// connection keeps: a restored connection carries on from it.
fn source(mut s: TcpStream) -> io::Result<()> {
    // A block length that is a multiple of 251 keeps the pattern seamless.
    let block: Vec<u8> = (0..SOURCE_BLOCK as u64 / 251 * 251)
        .map(source_byte)
        .collect();
    let written = s.app_state()?.written;
    let mut at = (written % block.len() as u64) as usize;
    loop {
        let n = s.write(&block[at..])?;
        at = (at + n) % block.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_print_back() {
        for s in [
            "echo:7",
            "discard:9",
            "source:19",
            "http:80=/srv/www",
            "session:7000",
        ] {
            assert_eq!(s.parse::<AppSpec>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn bad_specs_are_explained() {
        assert!("echo".parse::<AppSpec>().unwrap_err().contains("NAME:PORT"));
        assert!("echo:x"
            .parse::<AppSpec>()
            .unwrap_err()
            .contains("bad port"));
        assert!("http:80"
            .parse::<AppSpec>()
            .unwrap_err()
            .contains("directory"));
        assert!("ftp:21"
            .parse::<AppSpec>()
            .unwrap_err()
            .contains("unknown app"));
    }
}
