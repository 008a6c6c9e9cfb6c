//! The floating addresses on a real link: a redirector claiming them moves
//! a neighbour's cached entries (IPv4 by gratuitous ARP, IPv6 by
//! unsolicited neighbour advertisement) to its own link address, and
//! releasing takes them off. Needs root (namespaces); skipped without.

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use redirector::coordination::{Addresses, FloatingAddress, FloatingConfig};
use testnet::netns::{privileged, run, Topology};

const V4: &str = "198.18.5.254";
const V6: &str = "fd00:5::fe";
/// What the client's stale entries point at before the claim.
const OLD_MAC: &str = "02:00:00:00:00:99";

/// Run `f` on a thread inside namespace `ns` (the `ip` commands it starts
/// and the sockets it opens are that namespace's).
fn in_namespace<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = std::fs::File::open(format!("/var/run/netns/{ns}")).expect("netns file");
            // SAFETY: setns(2) on this thread with a namespace file we opened.
            let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("the namespace thread")
    })
}

/// The link address `ns` has cached for `ip` on `link`, if any.
fn cached(topo: &Topology, ns: &str, link: &str, ip: &str) -> Option<String> {
    let out = run(topo
        .command(ns, "ip")
        .args(["neigh", "show", ip, "dev", link]))
    .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut words = text.split_whitespace();
    words.find(|w| *w == "lladdr")?;
    words.next().map(str::to_string)
}

fn addresses(topo: &Topology, ns: &str, link: &str) -> String {
    let out = run(topo
        .command(ns, "ip")
        .args(["-br", "addr", "show", "dev", link]))
    .unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn claiming_moves_the_neighbours_entries_of_both_families() {
    let test = "claiming_moves_the_neighbours_entries_of_both_families";
    if !privileged(test) {
        return;
    }
    let mut topo = Topology::new("hfl");
    let redirector = topo.namespace("r").unwrap();
    let client = topo.namespace("c").unwrap();
    let (link, client_link) = topo
        .veth((&redirector, ""), (&client, "198.18.5.1/24"), 1500)
        .unwrap();
    topo.add_ipv6(&client, &client_link, "fd00:5::1/64")
        .unwrap();
    // The client knew the addresses at another host (the old holder).
    for ip in [V4, V6] {
        topo.ip(
            &client,
            &[
                "neigh",
                "replace",
                ip,
                "lladdr",
                OLD_MAC,
                "dev",
                &client_link,
                "nud",
                "stale",
            ],
        )
        .unwrap();
        assert_eq!(
            cached(&topo, &client, &client_link, ip).as_deref(),
            Some(OLD_MAC)
        );
    }
    let floating = FloatingAddress::new(&FloatingConfig {
        address: Addresses::Many(vec![format!("{V4}/24"), format!("{V6}/64")]),
        link: link.clone(),
        announcements: 2,
    })
    .unwrap();
    let mac = testnet::hostile::mac(&topo, &redirector, &link).unwrap();
    // The check runs on the claiming thread: `arping` dies with the thread
    // that started it (as with a redirector's own), so that thread must
    // outlive the announcements the check waits for.
    let moved = in_namespace(&redirector, || {
        floating.claim()?;
        let held = addresses(&topo, &redirector, &link);
        if !(held.contains(&format!("{V4}/24")) && held.contains(&format!("{V6}/64"))) {
            return Err(format!("the addresses are not on the link: {held}"));
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        for ip in [V4, V6] {
            while cached(&topo, &client, &client_link, ip).as_deref() != Some(mac.as_str()) {
                if Instant::now() >= deadline {
                    return Err(format!(
                        "the client still has {ip} at {:?}, not {mac}",
                        cached(&topo, &client, &client_link, ip)
                    ));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    });
    if let Err(e) = moved {
        panic!("{e}");
    }
    in_namespace(&redirector, || floating.release()).unwrap();
    let held = addresses(&topo, &redirector, &link);
    assert!(!held.contains(V4) && !held.contains(V6), "{held}");
    // Released twice: no error.
    in_namespace(&redirector, || floating.release()).unwrap();
}
