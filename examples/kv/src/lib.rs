//! A key-value store speaking the Redis protocol (RESP) on Hydra: the
//! example of an application whose connections share state. It serves all
//! its connections from one thread on an [`OrderedListener`], so every
//! group member executes the same requests in the same order and holds the
//! same store: a client's `INCR` survives the crash of the primary with
//! neither a lost nor a repeated increment.
//!
//! Commands: PING, ECHO, GET, SET, DEL, EXISTS, INCR, DECR, INCRBY, DECRBY,
//! MGET, MSET, DBSIZE, FLUSHALL; pipelining; `-ERR` for what it does not
//! know. No expiry (it would need a clock, which active replication rules
//! out).

#![forbid(unsafe_code)]

pub mod resp;
pub mod store;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use stack::socket::{NetStack, OrderedEvent, OrderedListener};
use stack::ConnKey;

pub use store::Store;

/// Serve the store on `addr` of `net` until the stack stops. `store` is
/// shared so that others can read it (an admin page showing its digest);
/// only this loop changes it.
pub fn serve(net: &NetStack, addr: SocketAddr, store: Arc<Mutex<Store>>) -> io::Result<()> {
    let mut listener = OrderedListener::bind(net, addr)?;
    // Each connection's bytes not yet parsed into a whole request.
    let mut pending: HashMap<ConnKey, Vec<u8>> = HashMap::new();
    loop {
        let Some(event) = listener.next(None)? else {
            continue;
        };
        match event {
            OrderedEvent::Opened(key) => {
                pending.insert(key, Vec::new());
            }
            OrderedEvent::Data(key, bytes) => {
                let buf = pending.entry(key).or_default();
                buf.extend_from_slice(&bytes);
                let mut out = Vec::new();
                let mut used = 0;
                let mut broken = false;
                {
                    let mut store = store.lock().unwrap_or_else(|p| p.into_inner());
                    loop {
                        match resp::parse(&buf[used..]) {
                            Ok(Some((args, n))) => {
                                used += n;
                                store.execute(&args, &mut out);
                            }
                            Ok(None) => break,
                            Err(e) => {
                                resp::reply::error(
                                    &mut out,
                                    &format!("ERR Protocol error: {}", e.0),
                                );
                                broken = true;
                                break;
                            }
                        }
                    }
                }
                buf.drain(..used);
                // A write error means the connection is gone: its Closed
                // event follows.
                let _ = listener.write_all(key, &out);
                if broken {
                    pending.remove(&key);
                    let _ = listener.shutdown(key);
                    listener.close(key);
                }
            }
            OrderedEvent::PeerFin(key) => {
                pending.remove(&key);
                let _ = listener.shutdown(key);
                listener.close(key);
            }
            OrderedEvent::Closed(key) => {
                pending.remove(&key);
                listener.close(key);
            }
        }
    }
}
