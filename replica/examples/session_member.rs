//! The passive-mode session service as a member of a group: only the
//! primary runs it (it reads the clock and rolls dice), each step
//! checkpointed to the backups, so a session carries on across a crash
//! without a skipped or repeated step. See `replica::apps::session`.
//!
//! ```sh
//! cargo run --example session_member -- replica1.toml    # port 7000
//! ```
use std::net::{Ipv6Addr, SocketAddr};

use replica::apps::session;
use replica::member::{Member, MemberConfig};
use stack::socket::TcpListener;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: session_member CONFIG")?;
    let member = Member::join(&MemberConfig::from_replica_file(path.as_ref())?)?;
    let listener = TcpListener::bind_passive(
        member.net(),
        SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 7000),
    )?;
    std::thread::spawn(move || {
        // On a backup, accept waits: after a takeover it returns every
        // session the old primary's application had.
        for stream in listener.incoming() {
            let Ok(stream) = stream else { break };
            std::thread::spawn(move || {
                if let Err(e) = session::serve(stream) {
                    eprintln!("session ended: {e}");
                }
            });
        }
    });
    member.run_until_signal()?;
    Ok(())
}
