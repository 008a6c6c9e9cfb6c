//! A blocking echo server as a member of a replicated group: the whole
//! program. Run one per member with the member's configuration (the
//! fields of `replica.toml`; an `apps` entry is ignored):
//!
//! ```sh
//! cargo run --example echo_member -- replica1.toml
//! ```
use std::io::{Read, Write};
use std::net::{Ipv6Addr, SocketAddr};

use replica::member::{Member, MemberConfig};
use stack::socket::TcpListener;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("usage: echo_member CONFIG")?;
    let member = Member::join(&MemberConfig::from_replica_file(path.as_ref())?)?;
    let listener = TcpListener::bind(
        member.net(),
        SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 7),
    )?;
    std::thread::spawn(move || {
        // Ends when the stack stops (accept then fails for good).
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { break };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = s.read(&mut buf) {
                    if s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    member.run_until_signal()?;
    Ok(())
}
