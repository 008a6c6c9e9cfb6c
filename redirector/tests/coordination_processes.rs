//! Two `hydra-redirector` processes with `[coordination]` and a real etcd:
//! the first acts from the views etcd holds, the second stands by, and
//! takes over when the first is killed.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{free_port, tun_available, view, Etcd};

/// A redirector process, killed on drop.
struct Redirector {
    child: Child,
    admin: String,
}

impl Redirector {
    fn start(etcd: &Etcd, dir: &Path, name: &str) -> Redirector {
        let admin = format!("127.0.0.1:{}", free_port());
        let config = format!(
            r#"tun = "hy{pid}{name}"
control_listen = "127.0.0.1:{control}"
data_bind = "127.0.0.1:0"
admin = "{admin}"

[[services]]
vip = "198.18.100.1"
group = "web"

[[groups]]
name = "web"
key = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
members = [1, 2, 3]

[coordination]
etcd = ["{url}"]
name = "{name}"
lease_ttl_ms = 2000
"#,
            pid = std::process::id() % 10000,
            control = free_port(),
            url = etcd.url,
        );
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, config).expect("config written");
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_hydra-redirector"))
            .arg("--config")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting hydra-redirector");
        Redirector { child, admin }
    }

    /// `/status`, or `Value::Null` while it does not answer.
    fn status(&self) -> Value {
        let Ok(mut s) = TcpStream::connect(&self.admin) else {
            return Value::Null;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let _ = s.write_all(b"GET /status HTTP/1.0\r\n\r\n");
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        text.split_once("\r\n\r\n")
            .and_then(|(_, body)| serde_json::from_str(body).ok())
            .unwrap_or(Value::Null)
    }
}

impl Drop for Redirector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

#[test]
fn redirector_processes_act_from_etcds_views_and_take_over_when_killed() {
    let test = "redirector_processes_act_from_etcds_views";
    if !tun_available(test) {
        return;
    }
    let Some(etcd) = Etcd::start(test) else {
        return;
    };
    let saved = serde_json::to_vec(&view(7, 3)).unwrap();
    etcd.client()
        .put(b"/hydra/groups/web/view", &saved, 0)
        .unwrap();
    let dir = etcd.dir().to_path_buf();
    let mut r1 = Redirector::start(&etcd, &dir, "r1");
    wait_for("r1 to act", || {
        r1.status()["coordination"]["acting"] == true
    });
    let s = r1.status();
    assert_eq!(s["groups"][0]["epoch"], 7, "the view etcd holds: {s}");
    assert_eq!(s["coordination"]["authority"], "r1", "{s}");
    let r2 = Redirector::start(&etcd, &dir, "r2");
    wait_for("r2 to see r1", || {
        r2.status()["coordination"]["authority"] == "r1"
    });
    assert_eq!(r2.status()["coordination"]["acting"], false);
    r1.child.kill().unwrap();
    r1.child.wait().unwrap();
    let took = wait_for("r2 to act", || {
        r2.status()["coordination"]["acting"] == true
    });
    eprintln!("r2 acted {} ms after r1 was killed", took.as_millis());
    assert_eq!(r2.status()["groups"][0]["epoch"], 7);
}
