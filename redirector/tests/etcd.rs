//! The etcd client, the authority election and the view store against a
//! real etcd (`etcd-server`, started by each test).

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use redirector::coordination::etcd::{Compare, Op, OpResult};
use redirector::coordination::{
    Campaign, CoordinationError, Election, EtcdClient, Saved, ViewStore,
};
use support::{free_port, view, Etcd, TIMEOUT};

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

/// With heartbeats, a standby deposes an authority whose heartbeats stop
/// (a lost host) after four of them, long before its lease runs out; the
/// silent authority has stopped acting before that, and its next
/// heartbeat finds the role gone.
#[test]
fn a_standby_deposes_an_authority_whose_heartbeat_stopped() {
    let Some(etcd) = Etcd::start("a_standby_deposes_a_silent_authority") else {
        return;
    };
    let ttl = Duration::from_secs(5);
    let beat = Duration::from_millis(100);
    let mut a = Election::new(etcd.client(), "/hydra", "a", ttl).with_heartbeat(Some(beat));
    let mut b = Election::new(etcd.client(), "/hydra", "b", ttl).with_heartbeat(Some(beat));
    won(a.campaign().unwrap());
    // Beating, a stays the authority well past four heartbeats.
    let until = Instant::now() + beat * 10;
    while Instant::now() < until {
        a.beat().unwrap();
        assert!(a.is_authority());
        assert_eq!(b.campaign().unwrap(), Campaign::HeldBy("a".into()));
        std::thread::sleep(beat / 2);
    }
    a.beat().unwrap();
    let stopped = Instant::now();
    let mut a_stopped_acting = None;
    let token = loop {
        if a_stopped_acting.is_none() && !a.is_authority() {
            a_stopped_acting = Some(stopped.elapsed());
        }
        match b.campaign().unwrap() {
            Campaign::Won(t) => break t,
            Campaign::HeldBy(_) => std::thread::sleep(beat),
        }
        assert!(
            stopped.elapsed() < ttl,
            "no takeover before the lease ran out"
        );
    };
    let took_over = stopped.elapsed();
    let a_stopped = a_stopped_acting.expect("a stopped acting before b won");
    assert!(a_stopped <= beat * 3 + beat / 2, "a acted {a_stopped:?}");
    assert!(took_over >= beat * 4, "b deposed a too soon: {took_over:?}");
    assert!(b.is_authority() && b.token() == Some(token));
    let e = a.beat().unwrap_err();
    assert!(matches!(e, CoordinationError::AuthorityLost { .. }), "{e}");
    println!("heartbeats of 100 ms: a stopped acting after {a_stopped:?}, b won after {took_over:?} (lease {ttl:?})");
    // An authority that writes no heartbeat (b has not yet) is not
    // deposed by silence: its lease alone decides.
    let mut c = Election::new(etcd.client(), "/hydra", "c", ttl).with_heartbeat(Some(beat));
    for _ in 0..6 {
        assert_eq!(c.campaign().unwrap(), Campaign::HeldBy("b".into()));
        std::thread::sleep(beat);
    }
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
    assert!(
        a_views.load_drained().unwrap().is_empty(),
        "none drained yet"
    );
    a_views.save_drained(&old, &["web".into()]).unwrap();
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
    assert_eq!(b_views.load_drained().unwrap(), vec!["web".to_string()]);
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
    // So is its list of drained groups.
    let e = a_views.save_drained(&old, &[]).unwrap_err();
    assert!(matches!(e, CoordinationError::AuthorityLost { .. }), "{e}");
    assert_eq!(b_views.load_drained().unwrap(), vec!["web".to_string()]);
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
