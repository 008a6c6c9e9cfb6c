//! The coordination module against a real etcd (`etcd-server`), started by
//! each test on 127.0.0.1 with free ports and a data directory of its own,
//! both removed again when the test ends, also on failure.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ackchannel::control::SavedMember;
use redirector::coordination::etcd::{Compare, Op, OpResult};
use redirector::coordination::{
    Agent, Campaign, CoordinationConfig, CoordinationError, Election, EtcdClient, Event, Saved,
    ViewStore,
};
use redirector::state::GroupState;

const TIMEOUT: Duration = Duration::from_millis(500);

/// The etcd binary, or `None` (the test is then skipped, and fails under
/// `CI=true`).
fn etcd_binary(test: &str) -> Option<PathBuf> {
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

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// One etcd member of its own; killed and its directory removed on drop.
struct Etcd {
    child: Child,
    dir: PathBuf,
    url: String,
}

impl Etcd {
    fn start(test: &str) -> Option<Etcd> {
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

    fn client(&self) -> EtcdClient {
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

fn view(epoch: u64, incarnation: u64) -> GroupState {
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

fn won(c: Campaign) -> redirector::coordination::AuthorityToken {
    match c {
        Campaign::Won(t) => t,
        other => panic!("expected to win, got {other:?}"),
    }
}

#[test]
fn put_range_txn_and_leases_round_trip() {
    let Some(etcd) = Etcd::start("put_range_txn_and_leases_round_trip") else {
        return;
    };
    // The first endpoint is dead: reads go on to the next.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let c = EtcdClient::new(&[dead, etcd.url.clone()], TIMEOUT).unwrap();
    let status = c.status().unwrap();
    assert!(status.version.starts_with("3."), "{status:?}");
    assert_eq!(status.endpoint, etcd.url);
    assert_eq!(c.get(b"/t/k").unwrap().1, None);
    let c = etcd.client();
    let rev = c.put(b"/t/k", b"v\x00\xff", 0).unwrap();
    let (_, kv) = c.get(b"/t/k").unwrap();
    let kv = kv.unwrap();
    assert_eq!(
        (kv.value.as_slice(), kv.create_revision),
        (&b"v\x00\xff"[..], rev)
    );
    let r = c
        .txn(
            &[Compare::Created(b"/t/k".to_vec(), 0)],
            &[Op::Put(b"/t/k".to_vec(), b"no".to_vec(), 0)],
            &[Op::Range(b"/t/k".to_vec())],
        )
        .unwrap();
    assert!(!r.succeeded);
    assert_eq!(r.responses, vec![OpResult::Range(Some(kv.clone()))]);
    let r = c
        .txn(
            &[Compare::Modified(b"/t/k".to_vec(), kv.mod_revision)],
            &[
                Op::Put(b"/t/k".to_vec(), b"w".to_vec(), 0),
                Op::Delete(b"/t/x".to_vec()),
            ],
            &[],
        )
        .unwrap();
    assert!(r.succeeded);
    assert_eq!(r.responses, vec![OpResult::Done, OpResult::Done]);
    assert_eq!(c.get(b"/t/k").unwrap().1.unwrap().value, b"w");
    let lease = c.lease_grant(5).unwrap();
    assert!(lease.ttl_s >= 5, "{lease:?}");
    c.put(b"/t/leased", b"x", lease.id).unwrap();
    assert!(c.lease_keepalive(lease.id).unwrap() >= 4);
    c.lease_revoke(lease.id).unwrap();
    assert_eq!(c.lease_keepalive(lease.id).unwrap(), 0, "revoked");
    assert_eq!(c.get(b"/t/leased").unwrap().1, None, "its key went with it");
    c.lease_revoke(lease.id).unwrap();
}

#[test]
fn exactly_one_of_several_contenders_wins() {
    let Some(etcd) = Etcd::start("exactly_one_of_several_contenders_wins") else {
        return;
    };
    let results: Vec<(String, Campaign)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let client = etcd.client();
                s.spawn(move || {
                    let name = format!("r{i}");
                    let mut e = Election::new(client, "/hydra", &name, Duration::from_secs(5));
                    (name, e.campaign().unwrap())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let winners: Vec<&String> = results
        .iter()
        .filter(|(_, c)| matches!(c, Campaign::Won(_)))
        .map(|(n, _)| n)
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for (_, c) in &results {
        if let Campaign::HeldBy(holder) = c {
            assert_eq!(holder, winners[0]);
        }
    }
    let e = Election::new(etcd.client(), "/hydra", "other", Duration::from_secs(5));
    assert_eq!(e.holder().unwrap().as_ref(), Some(winners[0]));
}

#[test]
fn the_other_contender_takes_over_when_the_winners_lease_expires() {
    let Some(etcd) = Etcd::start("the_other_contender_takes_over") else {
        return;
    };
    let ttl = Duration::from_secs(2);
    let mut a = Election::new(etcd.client(), "/hydra", "a", ttl);
    let mut b = Election::new(etcd.client(), "/hydra", "b", ttl);
    won(a.campaign().unwrap());
    assert!(a.is_authority());
    // Renewed, the authority stays a's well past its lease.
    let until = Instant::now() + ttl * 2;
    while Instant::now() < until {
        a.keep_alive().unwrap();
        assert_eq!(b.campaign().unwrap(), Campaign::HeldBy("a".into()));
        std::thread::sleep(a.keepalive_interval());
    }
    // a stops renewing: b wins once a's lease ran out, and a learns it lost.
    let stopped = Instant::now();
    let token = loop {
        match b.campaign().unwrap() {
            Campaign::Won(t) => break t,
            Campaign::HeldBy(_) => std::thread::sleep(Duration::from_millis(100)),
        }
        assert!(stopped.elapsed() < Duration::from_secs(10), "no takeover");
    };
    assert!(stopped.elapsed() >= ttl / 2, "took over too soon");
    assert!(b.is_authority() && b.token() == Some(token));
    let e = a.keep_alive().unwrap_err();
    assert!(matches!(e, CoordinationError::AuthorityLost { .. }), "{e}");
    assert!(!a.is_authority() && a.token().is_none());
    // Resigning frees the role at once.
    b.resign().unwrap();
    won(a.campaign().unwrap());
}

#[test]
fn a_deposed_authoritys_view_write_is_fenced_off() {
    let Some(etcd) = Etcd::start("a_deposed_authoritys_view_write_is_fenced_off") else {
        return;
    };
    let ttl = Duration::from_secs(2);
    let mut a = Election::new(etcd.client(), "/hydra", "a", ttl);
    let old = won(a.campaign().unwrap());
    let mut a_views = ViewStore::new(etcd.client(), "/hydra");
    assert_eq!(a_views.load("web").unwrap(), None);
    assert!(matches!(
        a_views.save(&old, &view(1, 7)).unwrap(),
        Saved::Written(_)
    ));
    // a is cut off (no renewals) and b takes over.
    let mut b = Election::new(etcd.client(), "/hydra", "b", ttl);
    let new = loop {
        if let Campaign::Won(t) = b.campaign().unwrap() {
            break t;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_ne!(old, new);
    let mut b_views = ViewStore::new(etcd.client(), "/hydra");
    assert_eq!(b_views.load("web").unwrap(), Some(view(1, 7)));
    assert!(matches!(
        b_views.save(&new, &view(2, 7)).unwrap(),
        Saved::Written(_)
    ));
    // a, with the current view read and its old token, is refused.
    assert_eq!(a_views.load("web").unwrap(), Some(view(2, 7)));
    let e = a_views.save(&old, &view(3, 9)).unwrap_err();
    assert!(matches!(e, CoordinationError::AuthorityLost { .. }), "{e}");
    assert!(e.to_string().contains("\"b\""), "{e}");
    assert_eq!(b_views.load("web").unwrap(), Some(view(2, 7)));
}

#[test]
fn view_writes_compare_and_swap_and_keep_one_view_per_epoch() {
    let Some(etcd) = Etcd::start("view_writes_compare_and_swap") else {
        return;
    };
    let mut a = Election::new(etcd.client(), "/hydra", "a", Duration::from_secs(5));
    let token = won(a.campaign().unwrap());
    let mut first = ViewStore::new(etcd.client(), "/hydra");
    let mut second = ViewStore::new(etcd.client(), "/hydra");
    assert_eq!(first.load("web").unwrap(), None);
    assert_eq!(second.load("web").unwrap(), None);
    assert!(matches!(
        second.save(&token, &view(2, 1)).unwrap(),
        Saved::Written(_)
    ));
    // first read before second wrote: its write is refused.
    let e = first.save(&token, &view(2, 5)).unwrap_err();
    assert_eq!(
        e,
        CoordinationError::Conflict {
            key: "/hydra/groups/web/view".into()
        }
    );
    // Having re-read, a different view for the same epoch is still refused...
    let e = first.save(&token, &view(2, 5)).unwrap_err();
    assert!(
        matches!(
            e,
            CoordinationError::StaleEpoch {
                stored: 2,
                offered: 2,
                ..
            }
        ),
        "{e}"
    );
    let e = first.save(&token, &view(1, 5)).unwrap_err();
    assert!(matches!(e, CoordinationError::StaleEpoch { .. }), "{e}");
    // ...the same view is no change, and a newer epoch is written.
    assert_eq!(first.save(&token, &view(2, 1)).unwrap(), Saved::Unchanged);
    assert!(matches!(
        first.save(&token, &view(3, 5)).unwrap(),
        Saved::Written(_)
    ));
    assert_eq!(second.load("web").unwrap(), Some(view(3, 5)));
    // A value that is not a view is reported, not overwritten.
    etcd.client()
        .put(b"/hydra/groups/web/view", b"junk", 0)
        .unwrap();
    let e = second.load("web").unwrap_err();
    assert!(e.to_string().contains("not a group view"), "{e}");
}

#[test]
fn an_unreachable_or_silent_etcd_fails_fast_with_a_typed_error() {
    // Nothing listens: refused at once.
    let url = format!("http://127.0.0.1:{}", free_port());
    let c = EtcdClient::new(std::slice::from_ref(&url), TIMEOUT).unwrap();
    let started = Instant::now();
    let e = c.get(b"/k").unwrap_err();
    assert!(matches!(e, CoordinationError::Unreachable { .. }), "{e}");
    assert!(e.to_string().contains(&url), "{e}");
    assert!(started.elapsed() < TIMEOUT, "{:?}", started.elapsed());
    // Accepts and never answers: timed out within the bound.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let c = EtcdClient::new(&[silent_url], TIMEOUT).unwrap();
    let started = Instant::now();
    let e = c.put(b"/k", b"v", 0).unwrap_err();
    assert!(matches!(e, CoordinationError::TimedOut { .. }), "{e}");
    assert!(e.is_connectivity());
    assert!(started.elapsed() < TIMEOUT + Duration::from_millis(300));
    // Answers, but not as etcd: a bad response.
    let web = TcpListener::bind("127.0.0.1:0").unwrap();
    let web_url = format!("http://{}", web.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        if let Ok((mut s, _)) = web.accept() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found");
        }
    });
    let c = EtcdClient::new(&[web_url], TIMEOUT).unwrap();
    let e = c.get(b"/k").unwrap_err();
    assert!(matches!(e, CoordinationError::BadResponse { .. }), "{e}");
    assert!(e.to_string().contains("HTTP 404"), "{e}");
    server.join().unwrap();
}

fn authority(name: &str) -> ackchannel::control::ViewAuthority {
    ackchannel::control::ViewAuthority::new(ackchannel::control::GroupPolicy {
        name: name.into(),
        key: ackchannel::auth::GroupKey([1; 32]),
        members: vec![1, 2],
        min_members: 1,
        keepalive_timeout: stack::Duration::from_millis(100),
        lease: stack::Duration::from_millis(60),
        heartbeat: stack::Duration::from_millis(10),
        preferred_primary: None,
    })
}

fn agent_config(etcd: &Etcd, name: &str) -> CoordinationConfig {
    CoordinationConfig {
        etcd: vec![etcd.url.clone()],
        prefix: "/hydra".into(),
        lease_ttl_ms: 2000,
        name: name.into(),
        request_timeout_ms: 300,
    }
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn one_agent_acts_writes_its_views_and_hands_them_to_the_next() {
    let Some(etcd) = Etcd::start("one_agent_acts") else {
        return;
    };
    let a = Agent::start(&agent_config(&etcd, "a"), vec!["web".into()]).unwrap();
    let mut event = None;
    wait_for("a's election", || {
        event = a.poll();
        event.is_some()
    });
    assert_eq!(event, Some(Event::Elected(Vec::new())));
    assert!(a.acting());
    let b = Agent::start(&agent_config(&etcd, "b"), vec!["web".into()]).unwrap();
    wait_for("b to see a", || {
        b.status().authority.as_deref() == Some("a")
    });
    let mut b_groups = vec![authority("web")];
    assert!(!b.steer(stack::Instant::ZERO, &mut b_groups));
    // a's view change reaches etcd.
    let mut a_groups = vec![authority("web")];
    a_groups[0].restore(stack::Instant::ZERO, 4, &view(4, 3).members);
    let mut saved = [0];
    a.save_changed(&a_groups, &mut saved);
    assert_eq!(saved, [4]);
    let mut store = ViewStore::new(etcd.client(), "/hydra");
    wait_for("the view in etcd", || {
        store.load("web").ok().flatten() == Some(view(4, 3))
    });
    // a stops (resigning): b acts at once, from the view etcd holds.
    drop(a);
    wait_for("b to act", || b.steer(stack::Instant::ZERO, &mut b_groups));
    assert_eq!(b_groups[0].saved(), (4, view(4, 3).members));
    assert_eq!(b.status().authority.as_deref(), Some("b"));
}
