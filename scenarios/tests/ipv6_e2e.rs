//! IPv6 end to end with the real binaries on namespaces: a dual-stack
//! group of 3 whose redirector and replicas talk over IPv6 (copies, ack
//! channel, control plane) serves an IPv6 VIP; its primary is SIGKILLed
//! during an IPv6 download, IPv6 echo streams and an IPv4 echo stream on
//! the same group. Every byte arrives exactly once, and no client sees a
//! reset.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{download_matches, echo_verdict, kill_primary, serial, start};
use scenarios::clients;
use scenarios::cluster::{ClusterSpec, VIP, VIP6};
use testnet::netns::privileged;

#[test]
fn an_ipv6_group_survives_a_primary_crash_for_ipv6_and_ipv4_clients() {
    if !privileged("an_ipv6_group_survives_a_primary_crash_for_ipv6_and_ipv4_clients") {
        return;
    }
    let _one = serial();
    let mut c = start(
        "six",
        ClusterSpec {
            ipv6: true,
            ..ClusterSpec::default()
        },
    );
    assert_eq!(c.vip(), std::net::IpAddr::from(VIP6));
    // The members registered with their IPv6 link addresses.
    assert!(
        c.control_addr().starts_with("[fd00:1::1]"),
        "{}",
        c.control_addr()
    );

    let original = c.www.join("file.bin");
    clients::write_random_file(&original, 48 << 20).unwrap();
    let dest = c.log_dir().join("got.bin");
    let curl = clients::start_download(&c, "file.bin", &dest, "16M").unwrap();
    let echo6 = clients::start_echo(&c, 20, 1 << 20, 8192, Duration::from_millis(10)).unwrap();
    // An IPv4 client of the same group at the same time.
    let mut four = c.client("python3");
    four.arg(clients::echo_script())
        .args([&VIP.to_string(), "7"])
        .args(["--connections", "5", "--size", "1048576"])
        .args(["--chunk", "8192", "--pace", "0.0100"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null());
    let echo4 = four.spawn().unwrap();

    std::thread::sleep(Duration::from_millis(1200));
    let victim = kill_primary(&mut c);
    eprintln!("killed member {victim}, the primary");

    download_matches(curl, &dest, &original);
    let v6 = clients::finish_echo(echo6).unwrap();
    echo_verdict(&v6, "IPv6 echo");
    assert_eq!(v6["connections"], 20);
    let v4 = clients::finish_echo(echo4).unwrap();
    echo_verdict(&v4, "IPv4 echo");
    assert_eq!(v4["connections"], 5);
}
