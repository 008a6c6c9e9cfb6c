//! End to end: Linux clients (curl, nc, Python sockets) in one network
//! namespace against `hydra-replica standalone` over TUN in another, over
//! IPv4 and over IPv6 (the stack serves both families on one TUN).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use testnet::netns::{privileged, run, Topology};

const SERVICE: &str = "198.18.20.1";
/// The service's IPv6 address (a ULA prefix inside the test's namespaces).
const SERVICE6: &str = "fd00:20::1";

struct Setup {
    topo: Topology,
    client: String,
    www: PathBuf,
}

/// client ns --veth-- server ns (router) --TUN-- hydra-replica standalone
fn setup(tag: &str) -> Setup {
    let mut topo = Topology::new(tag);
    let client = topo.namespace("c").unwrap();
    let server = topo.namespace("s").unwrap();
    let (client_link, server_link) = topo
        .veth(
            (&client, "198.18.10.1/24"),
            (&server, "198.18.10.2/24"),
            1500,
        )
        .unwrap();
    topo.add_ipv6(&client, &client_link, "fd00:10::1/64")
        .unwrap();
    topo.add_ipv6(&server, &server_link, "fd00:10::2/64")
        .unwrap();
    topo.router(&server).unwrap();
    topo.ip(
        &client,
        &["route", "add", "198.18.20.0/24", "via", "198.18.10.2"],
    )
    .unwrap();
    topo.ip(
        &client,
        &["-6", "route", "add", "fd00:20::/64", "via", "fd00:10::2"],
    )
    .unwrap();
    let www = std::env::temp_dir().join(format!("{}-www", topo.prefix()));
    std::fs::create_dir_all(&www).unwrap();
    let tun = topo.name("t");
    let mut cmd = topo.command(&server, env!("CARGO_BIN_EXE_hydra-replica"));
    cmd.args(["standalone", "--tun", &tun, "--address", SERVICE]);
    cmd.args(["--address", SERVICE6]);
    for app in ["echo:7", "discard:9", "source:19"] {
        cmd.args(["--app", app]);
    }
    cmd.arg("--app").arg(format!("http:80={}", www.display()));
    topo.spawn("replica", cmd).unwrap();
    topo.wait_link(&server, &tun, Duration::from_secs(10))
        .unwrap();
    topo.ip(
        &server,
        &["route", "add", &format!("{SERVICE}/32"), "dev", &tun],
    )
    .unwrap();
    topo.ip(
        &server,
        &[
            "-6",
            "route",
            "add",
            &format!("{SERVICE6}/128"),
            "dev",
            &tun,
        ],
    )
    .unwrap();
    Setup { topo, client, www }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.www);
    }
}

/// A file of `len` deterministic but non-repeating-looking bytes.
fn write_file(path: &Path, len: usize) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut rng = hydra_base::rng::SplitMix64::new(0);
    let mut left = len;
    let mut block = vec![0u8; 1 << 16];
    while left > 0 {
        rng.fill(&mut block);
        let n = left.min(block.len());
        f.write_all(&block[..n]).unwrap();
        left -= n;
    }
}

fn sha256(path: &Path) -> String {
    let out = run(Command::new("sha256sum").arg(path)).unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn curl_downloads_100_mib_byte_exact_and_ranges() {
    if !privileged("curl_downloads_100_mib_byte_exact_and_ranges") {
        return;
    }
    let s = setup("http");
    let original = s.www.join("big.bin");
    write_file(&original, 100 << 20);
    let fetched = s.www.join("fetched.bin");
    let url = format!("http://{SERVICE}/big.bin");
    let mut curl = s.topo.command(&s.client, "curl");
    curl.args(["-sS", "--fail", "--max-time", "300", "-o"])
        .arg(&fetched)
        .arg(&url);
    run(&mut curl).expect("curl download");
    assert_eq!(
        sha256(&fetched),
        sha256(&original),
        "downloaded file differs"
    );

    let mut range = s.topo.command(&s.client, "curl");
    range.args(["-sS", "--fail", "-r", "1000-1999", &url]);
    let part = run(&mut range).expect("curl range").stdout;
    let whole = std::fs::read(&original).unwrap();
    assert_eq!(part, whole[1000..2000].to_vec());

    let mut missing = s.topo.command(&s.client, "curl");
    missing.args([
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("http://{SERVICE}/nope"),
    ]);
    assert_eq!(
        String::from_utf8_lossy(&run(&mut missing).unwrap().stdout),
        "404"
    );
}

/// An upload through the TUN device's receive offload: the client's large
/// TCP segments reach the stack coalesced (up to 64 KiB, checksums for us
/// to fill in); the HTTP app answers with the SHA-256 of what it read.
#[test]
fn curl_uploads_64_mib_byte_exact_through_receive_offload() {
    if !privileged("curl_uploads_64_mib_byte_exact_through_receive_offload") {
        return;
    }
    let s = setup("upl");
    let original = s.www.join("up.bin");
    write_file(&original, 64 << 20);
    let mut curl = s.topo.command(&s.client, "curl");
    curl.args(["-sS", "--fail", "--max-time", "120", "-H", "Expect:"])
        .arg("--data-binary")
        .arg(format!("@{}", original.display()))
        .arg(format!("http://{SERVICE}/upload"));
    let answer = run(&mut curl).expect("curl upload").stdout;
    assert_eq!(
        String::from_utf8_lossy(&answer).trim(),
        format!("{} {}", sha256(&original), 64 << 20),
        "the server read other bytes than were sent"
    );
}

fn echo_client(s: &Setup, args: &[&str]) -> serde_json::Value {
    echo_client_to(s, SERVICE, args)
}

fn echo_client_to(s: &Setup, service: &str, args: &[&str]) -> serde_json::Value {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testnet/clients/echo_client.py"
    );
    let mut cmd = s.topo.command(&s.client, "python3");
    cmd.arg(script).args([service, "7"]).args(args);
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap_or_else(|_| {
        panic!(
            "client output: {text} / {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(out.status.success(), "echo client failed: {v}");
    v
}

#[test]
fn python_and_nc_echo_clients_see_no_reset() {
    if !privileged("python_and_nc_echo_clients_see_no_reset") {
        return;
    }
    let s = setup("echo");
    let one = echo_client(&s, &["--connections", "1", "--size", "4194304"]);
    assert_eq!(one["bytes"], 4194304);
    let many = echo_client(
        &s,
        &["--connections", "100", "--size", "65536", "--seed", "7"],
    );
    assert_eq!(many["connections"], 100);
    assert_eq!(many["resets"], 0);
    assert_eq!(many["bytes"], 100 * 65536);

    // nc (netcat-openbsd): -N closes the write side at end of input.
    let mut nc = s.topo.command(&s.client, "sh");
    nc.args([
        "-c",
        &format!("printf 'hello hydra\\n' | nc -N -w 10 {SERVICE} 7"),
    ]);
    let out = run(&mut nc).expect("nc");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello hydra\n");
}

/// IPv6 clients of the same stack that serves IPv4: curl downloads and
/// uploads (through the TUN's IPv6 receive and segmentation offloads),
/// Python and nc echo, all byte-exact and without a reset; an IPv4 client
/// alongside shows one stack serving both families.
#[test]
fn ipv6_clients_curl_python_and_nc_against_a_dual_stack_server() {
    if !privileged("ipv6_clients_curl_python_and_nc_against_a_dual_stack_server") {
        return;
    }
    let s = setup("six");
    let original = s.www.join("big.bin");
    write_file(&original, 32 << 20);
    let fetched = s.www.join("fetched6.bin");
    let mut curl = s.topo.command(&s.client, "curl");
    curl.args(["-6", "-sS", "--fail", "--max-time", "120", "-o"])
        .arg(&fetched)
        .arg(format!("http://[{SERVICE6}]/big.bin"));
    run(&mut curl).expect("curl -6 download");
    assert_eq!(sha256(&fetched), sha256(&original), "IPv6 download differs");

    let mut upload = s.topo.command(&s.client, "curl");
    upload
        .args(["-6", "-sS", "--fail", "--max-time", "120", "-H", "Expect:"])
        .arg("--data-binary")
        .arg(format!("@{}", original.display()))
        .arg(format!("http://[{SERVICE6}]/upload"));
    let answer = run(&mut upload).expect("curl -6 upload").stdout;
    assert_eq!(
        String::from_utf8_lossy(&answer).trim(),
        format!("{} {}", sha256(&original), 32 << 20),
        "the server read other bytes than were sent over IPv6"
    );

    let many = echo_client_to(
        &s,
        SERVICE6,
        &["--connections", "50", "--size", "65536", "--seed", "6"],
    );
    assert_eq!(many["connections"], 50);
    assert_eq!(many["resets"], 0);
    assert_eq!(many["bytes"], 50 * 65536);

    let mut nc = s.topo.command(&s.client, "sh");
    nc.args([
        "-c",
        &format!("printf 'hello six\\n' | nc -6 -N -w 10 {SERVICE6} 7"),
    ]);
    assert_eq!(
        String::from_utf8_lossy(&run(&mut nc).expect("nc -6").stdout),
        "hello six\n"
    );

    // The same stack, over IPv4, at the same time.
    let four = echo_client(&s, &["--connections", "5", "--size", "100000"]);
    assert_eq!(four["resets"], 0);
    assert_eq!(four["bytes"], 5 * 100000);
}
