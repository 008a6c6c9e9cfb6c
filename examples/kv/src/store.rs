//! The store and its commands: deterministic given the order of requests,
//! as active replication needs (no clock, no randomness, ordered maps).

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::resp::reply;

/// Keys and values, byte strings both.
#[derive(Debug, Default)]
pub struct Store {
    data: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Requests executed (every member counts the same).
    requests: u64,
}

fn wrong_args(out: &mut Vec<u8>, name: &str) {
    reply::error(
        out,
        &format!("ERR wrong number of arguments for '{name}' command"),
    );
}

fn parse_int(b: &[u8]) -> Option<i64> {
    std::str::from_utf8(b).ok()?.parse().ok()
}

impl Store {
    /// Run one request and append its reply to `out`.
    pub fn execute(&mut self, args: &[Vec<u8>], out: &mut Vec<u8>) {
        self.requests += 1;
        let Some((name, rest)) = args.split_first() else {
            return; // an empty inline line: Redis answers nothing
        };
        let name = String::from_utf8_lossy(name).to_ascii_uppercase();
        match (name.as_str(), rest.len()) {
            ("PING", 0) => reply::simple(out, "PONG"),
            ("PING", 1) | ("ECHO", 1) => reply::bulk(out, Some(&rest[0])),
            ("GET", 1) => reply::bulk(out, self.data.get(&rest[0]).map(Vec::as_slice)),
            ("SET", 2) => {
                self.data.insert(rest[0].clone(), rest[1].clone());
                reply::simple(out, "OK");
            }
            ("DEL", n) if n >= 1 => {
                let gone = rest
                    .iter()
                    .filter(|k| self.data.remove(*k).is_some())
                    .count();
                reply::integer(out, gone as i64);
            }
            ("EXISTS", n) if n >= 1 => {
                let n = rest.iter().filter(|k| self.data.contains_key(*k)).count();
                reply::integer(out, n as i64);
            }
            ("INCR", 1) => self.add(&rest[0], 1, out),
            ("DECR", 1) => self.add(&rest[0], -1, out),
            ("INCRBY", 2) | ("DECRBY", 2) => match parse_int(&rest[1]) {
                Some(by) if name == "INCRBY" => self.add(&rest[0], by, out),
                Some(by) => match by.checked_neg() {
                    Some(neg) => self.add(&rest[0], neg, out),
                    None => reply::error(out, "ERR increment or decrement would overflow"),
                },
                None => reply::error(out, "ERR value is not an integer or out of range"),
            },
            ("MGET", n) if n >= 1 => {
                reply::array(out, n);
                for k in rest {
                    reply::bulk(out, self.data.get(k).map(Vec::as_slice));
                }
            }
            ("MSET", n) if n >= 2 && n % 2 == 0 => {
                for pair in rest.chunks(2) {
                    self.data.insert(pair[0].clone(), pair[1].clone());
                }
                reply::simple(out, "OK");
            }
            ("DBSIZE", 0) => reply::integer(out, self.data.len() as i64),
            ("FLUSHALL", 0) | ("FLUSHDB", 0) => {
                self.data.clear();
                reply::simple(out, "OK");
            }
            // Clients ask these at start (redis-benchmark reads the
            // server's configuration; redis-cli the command table): an
            // empty list says there is nothing to tell.
            ("CONFIG", _) | ("COMMAND", _) => reply::array(out, 0),
            (
                "PING" | "ECHO" | "GET" | "SET" | "DEL" | "EXISTS" | "INCR" | "DECR" | "INCRBY"
                | "DECRBY" | "MGET" | "MSET" | "DBSIZE" | "FLUSHALL" | "FLUSHDB",
                _,
            ) => wrong_args(out, &name.to_ascii_lowercase()),
            (other, _) => reply::error(
                out,
                &format!(
                    "ERR unknown command '{}'",
                    other.chars().take(64).collect::<String>()
                ),
            ),
        }
    }

    fn add(&mut self, key: &[u8], by: i64, out: &mut Vec<u8>) {
        let now = match self.data.get(key) {
            None => Some(0),
            Some(v) => parse_int(v),
        };
        match now.map(|n| n.checked_add(by)) {
            Some(Some(n)) => {
                self.data.insert(key.to_vec(), n.to_string().into_bytes());
                reply::integer(out, n);
            }
            Some(None) => reply::error(out, "ERR increment or decrement would overflow"),
            None => reply::error(out, "ERR value is not an integer or out of range"),
        }
    }

    /// SHA-256 over every key and value in order, and the request count:
    /// equal on every member that executed the same requests in the same order.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        for (k, v) in &self.data {
            h.update((k.len() as u64).to_be_bytes());
            h.update(k);
            h.update((v.len() as u64).to_be_bytes());
            h.update(v);
        }
        let d = h.finalize();
        let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
        format!("{hex} keys={} requests={}", self.data.len(), self.requests)
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// No keys.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(s: &mut Store, words: &[&str]) -> String {
        let args: Vec<Vec<u8>> = words.iter().map(|w| w.as_bytes().to_vec()).collect();
        let mut out = Vec::new();
        s.execute(&args, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn commands_answer_as_redis_does() {
        let mut s = Store::default();
        assert_eq!(run(&mut s, &["PING"]), "+PONG\r\n");
        assert_eq!(run(&mut s, &["set", "a", "1"]), "+OK\r\n");
        assert_eq!(run(&mut s, &["GET", "a"]), "$1\r\n1\r\n");
        assert_eq!(run(&mut s, &["GET", "b"]), "$-1\r\n");
        assert_eq!(run(&mut s, &["INCR", "a"]), ":2\r\n");
        assert_eq!(run(&mut s, &["INCRBY", "a", "-5"]), ":-3\r\n");
        assert_eq!(run(&mut s, &["INCR", "n"]), ":1\r\n");
        assert_eq!(run(&mut s, &["MSET", "x", "1", "y", "2"]), "+OK\r\n");
        assert_eq!(
            run(&mut s, &["MGET", "x", "nope", "y"]),
            "*3\r\n$1\r\n1\r\n$-1\r\n$1\r\n2\r\n"
        );
        assert_eq!(run(&mut s, &["EXISTS", "x", "y", "z"]), ":2\r\n");
        assert_eq!(run(&mut s, &["DBSIZE"]), ":4\r\n");
        assert_eq!(run(&mut s, &["DEL", "x", "z"]), ":1\r\n");
        assert_eq!(run(&mut s, &["SET", "t", "text"]), "+OK\r\n");
        assert!(run(&mut s, &["INCR", "t"]).starts_with("-ERR value is not an integer"));
        assert!(run(&mut s, &["GET"]).starts_with("-ERR wrong number"));
        assert!(run(&mut s, &["NOPE"]).starts_with("-ERR unknown command 'NOPE'"));
        run(&mut s, &["SET", "m", &i64::MAX.to_string()]);
        assert!(run(&mut s, &["INCR", "m"]).contains("overflow"));
    }

    #[test]
    fn the_digest_follows_the_contents_and_the_requests() {
        let (mut a, mut b) = (Store::default(), Store::default());
        run(&mut a, &["SET", "k", "1"]);
        run(&mut b, &["SET", "k", "1"]);
        assert_eq!(a.digest(), b.digest());
        run(&mut b, &["INCR", "k"]);
        assert_ne!(a.digest(), b.digest());
    }
}
