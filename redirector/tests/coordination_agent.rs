//! The coordination thread against a real etcd (`etcd-server`, started by
//! the test): one redirector acts, writes its views, and the next carries
//! them on.

mod support;

use std::time::{Duration, Instant};

use redirector::coordination::{Agent, CoordinationConfig, Event, ViewStore};
use support::{view, Etcd};

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
    with_heartbeat(etcd, name, 150)
}

fn with_heartbeat(etcd: &Etcd, name: &str, heartbeat_ms: u64) -> CoordinationConfig {
    CoordinationConfig {
        etcd: vec![etcd.url.clone()],
        prefix: "/hydra".into(),
        lease_ttl_ms: 2000,
        name: name.into(),
        request_timeout_ms: 300,
        heartbeat_ms,
        floating: None,
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
    let mut b = Agent::start(&agent_config(&etcd, "b"), vec!["web".into()]).unwrap();
    wait_for("b to see a", || {
        b.status().authority.as_deref() == Some("a")
    });
    let mut b_groups = vec![authority("web")];
    let mut b_draining = [false];
    assert!(!b.steer(stack::Instant::ZERO, &mut b_groups, &mut b_draining));
    // a's view change reaches etcd.
    let mut a_groups = vec![authority("web")];
    a_groups[0].restore(stack::Instant::ZERO, 4, &view(4, 3).members);
    let mut limits = Vec::new();
    a.announce_limits(&a_groups, &mut limits);
    assert_eq!(limits, [0], "epoch 4 is not announced before etcd holds it");
    let mut saved = [0];
    a.save_changed(&a_groups, &mut saved);
    assert_eq!(saved, [4]);
    wait_for("the view in etcd", || {
        a.announce_limits(&a_groups, &mut limits);
        limits == [4]
    });
    let mut store = ViewStore::new(etcd.client(), "/hydra");
    assert_eq!(store.load("web").unwrap(), Some(view(4, 3)));
    // The operator drains "web" through a: etcd keeps it.
    a.save_drained(vec!["web".into()]);
    wait_for("the drained groups in etcd", || {
        store.load_drained().is_ok_and(|d| d == ["web"])
    });
    // a stops (resigning): b acts at once, from the view etcd holds.
    drop(a);
    wait_for("b to act", || {
        b.steer(stack::Instant::ZERO, &mut b_groups, &mut b_draining)
    });
    assert_eq!(b_groups[0].saved(), (4, view(4, 3).members));
    assert_eq!(b_draining, [true], "b carries the drain on");
    b.announce_limits(&b_groups, &mut limits);
    assert_eq!(limits, [4]);
    assert_eq!(b.status().authority.as_deref(), Some("b"));
}

fn elected(etcd: &Etcd, name: &str) -> Agent {
    elected_with(agent_config(etcd, name))
}

fn elected_with(cfg: CoordinationConfig) -> Agent {
    let agent = Agent::start(&cfg, vec!["web".into()]).unwrap();
    wait_for("the election", || {
        matches!(agent.poll(), Some(Event::Elected(_)))
    });
    agent
}

/// Without heartbeats the lease alone bounds acting without etcd.
#[test]
fn an_agent_that_loses_etcd_stops_acting_before_its_lease_ends() {
    let Some(mut etcd) = Etcd::start("an_agent_that_loses_etcd") else {
        return;
    };
    let a = elected_with(with_heartbeat(&etcd, "a", 0));
    assert!(a.acting());
    etcd.kill();
    let lost = Instant::now();
    wait_for("a to stop acting", || !a.acting());
    // It carries on through a short outage, and stops before its lease
    // could have run out in etcd (2 s from its last renewal).
    let acted = lost.elapsed();
    assert!(acted >= Duration::from_millis(500), "{acted:?}");
    assert!(acted < Duration::from_millis(2000), "{acted:?}");
    wait_for("the loss reported", || {
        matches!(a.poll(), Some(Event::Lost(_)))
    });
    let s = a.status();
    assert!(!s.acting);
    let error = s.etcd_error.unwrap_or_default();
    assert!(error.contains("no etcd endpoint reachable"), "{error}");
}

#[test]
fn an_agent_whose_lease_is_gone_steps_down_and_a_new_election_follows() {
    let Some(etcd) = Etcd::start("an_agent_whose_lease_is_gone") else {
        return;
    };
    let a = elected(&etcd, "a");
    let b = Agent::start(&agent_config(&etcd, "b"), vec!["web".into()]).unwrap();
    // etcd drops a's lease (as after a partition longer than the lease).
    let client = etcd.client();
    let (_, key) = client.get(b"/hydra/authority").unwrap();
    client.lease_revoke(key.unwrap().lease).unwrap();
    wait_for("a to step down", || {
        matches!(a.poll(), Some(Event::Lost(_)))
    });
    // A new election follows (either may win it again), never two acting.
    wait_for("a new authority", || {
        let (x, y) = (a.acting(), b.acting());
        assert!(!(x && y), "two redirectors acting");
        x || y
    });
    let winner = if a.acting() { "a" } else { "b" };
    assert_eq!(b.status().authority.as_deref(), Some(winner));
}

/// With heartbeats the acting agent stops within three of them after
/// losing etcd: a standby may depose it after four.
#[test]
fn an_agent_with_heartbeats_that_loses_etcd_stops_acting_within_three() {
    let Some(mut etcd) = Etcd::start("an_agent_with_heartbeats_that_loses_etcd") else {
        return;
    };
    let a = elected(&etcd, "a");
    std::thread::sleep(Duration::from_millis(500));
    assert!(a.acting(), "heartbeats keep it acting");
    etcd.kill();
    let lost = Instant::now();
    wait_for("a to stop acting", || !a.acting());
    let acted = lost.elapsed();
    // Its last heartbeat went out at most one interval before the kill.
    assert!(acted < Duration::from_millis(3 * 150 + 50), "{acted:?}");
    wait_for("the loss reported", || {
        matches!(a.poll(), Some(Event::Lost(_)))
    });
}

/// An etcd answer held up past the acting margin stops the loop from
/// acting for a moment while the role is kept; the loop read nothing from
/// the members meanwhile, so when it acts again they must each get a
/// keepalive timeout, not be declared dead for the silence it did not hear.
#[test]
fn an_agent_acting_again_after_a_held_up_answer_gives_members_a_fresh_timeout() {
    let Some(etcd) = Etcd::start("an_agent_acting_again_after_a_held_up_answer") else {
        return;
    };
    let mut cfg = with_heartbeat(&etcd, "a", 100);
    cfg.request_timeout_ms = 200;
    let mut a = Agent::start(&cfg, vec!["web".into()]).unwrap();
    let mut groups = vec![authority("web")];
    let mut draining = [false];
    let clock = Instant::now();
    let now = || stack::Instant::from_micros(clock.elapsed().as_micros() as u64);
    let saved = view(1, 7).members;
    let mut restored = false;
    wait_for("the election", || {
        let acting = a.steer(now(), &mut groups, &mut draining);
        if acting && !restored {
            // The members as etcd would hand them, heard from now on.
            groups[0].restore(now(), 1, &saved);
            restored = true;
        }
        acting
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(a.steer(now(), &mut groups, &mut draining));
    // etcd held up for two heartbeats: the loop stops acting at the margin,
    // a third before the deadline, and the late answer comes before it.
    let mut stopped = false;
    std::thread::scope(|s| {
        let pause = s.spawn(|| etcd.pause(Duration::from_millis(200)));
        while !pause.is_finished() {
            stopped |= !a.steer(now(), &mut groups, &mut draining);
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    assert!(stopped, "the held-up answer stopped the loop from acting");
    wait_for("acting again", || {
        a.steer(now(), &mut groups, &mut draining)
    });
    assert!(
        a.poll().is_none(),
        "the role was kept: no election, no loss"
    );
    for (member, ms) in groups[0].silence(now()) {
        assert!(
            ms < 100,
            "member {member} counted silent for {ms} ms: the pause was held against it"
        );
    }
}
