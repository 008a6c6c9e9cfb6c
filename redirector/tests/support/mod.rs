//! A real etcd for the coordination tests: one member per test on
//! 127.0.0.1 with free ports and a data directory of its own, both removed
//! again when the test ends, also on failure.

#![allow(dead_code)] // each test crate uses part of it

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ackchannel::control::SavedMember;
use redirector::coordination::EtcdClient;
use redirector::state::GroupState;

/// Each request's bound in the tests.
pub const TIMEOUT: Duration = Duration::from_millis(500);

/// The etcd binary, or `None` (the test is then skipped, and fails under
/// `CI=true`).
pub fn etcd_binary(test: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|d| d.join("etcd"))
        .find(|p| p.is_file());
    if found.is_none() {
        let why = "etcd is not installed (apt-get install etcd-server)";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{test}: {why}; CI=true forbids skipping");
        }
        eprintln!("SKIPPED {test}: {why}");
    }
    found
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// One etcd member of its own; killed and its directory removed on drop.
pub struct Etcd {
    child: Child,
    dir: PathBuf,
    /// Its client URL.
    pub url: String,
}

impl Etcd {
    /// Start one, or `None` when etcd is not installed (skipped).
    pub fn start(test: &str) -> Option<Etcd> {
        let binary = etcd_binary(test)?;
        let dir = std::env::temp_dir().join(format!("hydra-etcd-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let (client, peer) = (free_port(), free_port());
        let url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = std::fs::File::create(dir.join("etcd.log")).expect("log file");
        let child = Command::new(binary)
            .args(["--name", "t", "--data-dir"])
            .arg(dir.join("data"))
            .args([
                "--listen-client-urls",
                &url,
                "--advertise-client-urls",
                &url,
            ])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("t={peer_url}")])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("starting etcd");
        let etcd = Etcd { child, dir, url };
        let client = etcd.client();
        let deadline = Instant::now() + Duration::from_secs(20);
        while client.status().map(|s| s.leader).unwrap_or(0) == 0 {
            if Instant::now() > deadline {
                panic!("etcd did not start within 20 s:\n{}", etcd.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(etcd)
    }

    /// Kill it now (its directory stays until drop).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stop it (SIGSTOP) for `d`, then let it go on: requests sent
    /// meanwhile are answered late, not refused.
    pub fn pause(&self, d: Duration) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) with the pid of a child we own and keep.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        std::thread::sleep(d);
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGCONT) };
    }

    /// Its directory, removed with it: room for a test's other files.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// A client for it.
    pub fn client(&self) -> EtcdClient {
        EtcdClient::new(std::slice::from_ref(&self.url), TIMEOUT).expect("valid URL")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A one-member view of group "web".
pub fn view(epoch: u64, incarnation: u64) -> GroupState {
    GroupState {
        name: "web".into(),
        epoch,
        members: vec![SavedMember {
            id: 1,
            alive: true,
            joining: false,
            data_addr: "198.18.1.11:7100".parse().expect("address"),
            ack_addr: "198.18.1.11:7200".parse().expect("address"),
            incarnation,
        }],
    }
}

/// True when this process may create TUN devices (the redirector binary
/// needs one). Without, the test is skipped, and fails under `CI=true`.
pub fn tun_available(test: &str) -> bool {
    let ok = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .is_ok();
    if !ok {
        let why = "needs root and /dev/net/tun";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{test}: {why}; CI=true forbids skipping");
        }
        eprintln!("SKIPPED {test}: {why}");
    }
    ok
}
