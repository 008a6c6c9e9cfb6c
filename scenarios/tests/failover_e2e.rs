//! Failover end to end with the real binaries on namespaces: the
//! primary (or a backup) is SIGKILLed during a download, an upload, an
//! interactive exchange and 100 concurrent connections, with 2 and 3
//! replicas; the client must see every byte exactly once and no reset.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{
    cluster, download_matches, echo_verdict, kill_and_wait_view, kill_primary, live_members,
    primary_gate_deliveries, serial, wait_until,
};
use scenarios::clients;
use scenarios::cluster::{Cluster, VIP};
use testnet::netns::privileged;

/// Kill the current primary (or, with `backup`, the last live backup) once
/// `after` has passed, and wait for the new view.
fn kill_after(c: &mut Cluster, after: Duration, backup: bool) -> u8 {
    std::thread::sleep(after);
    if !backup {
        return kill_primary(c);
    }
    let victim = *live_members(c).last().expect("a live backup");
    kill_and_wait_view(c, victim);
    victim
}

fn download_survives(tag: &str, replicas: usize, kill_backup: bool) {
    let mut c = cluster(tag, replicas);
    let original = c.www.join("file.bin");
    clients::write_random_file(&original, 48 << 20).unwrap();
    let dest = c.log_dir().join("got.bin");
    let curl = clients::start_download(&c, "file.bin", &dest, "16M").unwrap();
    kill_after(&mut c, Duration::from_millis(1200), kill_backup);
    download_matches(curl, &dest, &original);
}

fn upload_and_interactive_survive(tag: &str, replicas: usize) {
    let mut c = cluster(tag, replicas);
    // Upload-heavy: a large paced stream to echo (both directions checked).
    let bulk = clients::start_echo(&c, 1, 16 << 20, 65536, Duration::from_millis(5)).unwrap();
    // Interactive: small request/response exchanges.
    let chat = clients::start_echo(&c, 1, 200 * 512, 512, Duration::from_millis(10)).unwrap();
    kill_after(&mut c, Duration::from_millis(1000), false);
    echo_verdict(&clients::finish_echo(bulk).unwrap(), "bulk echo");
    echo_verdict(&clients::finish_echo(chat).unwrap(), "interactive echo");
    // The echo app's connections share nothing: the new primary hands
    // them bytes at the gate, ahead of the log.
    assert!(primary_gate_deliveries(&c) > 0);
}

fn many_connections_survive(tag: &str, replicas: usize) {
    let mut c = cluster(tag, replicas);
    let many = clients::start_echo(&c, 100, 256 << 10, 4096, Duration::from_millis(20)).unwrap();
    kill_after(&mut c, Duration::from_millis(1500), false);
    let v = clients::finish_echo(many).unwrap();
    echo_verdict(&v, "100 connections");
    assert_eq!(v["connections"], 100);
}

#[test]
fn download_survives_primary_crash_with_2_replicas() {
    if privileged("download_survives_primary_crash_with_2_replicas") {
        let _serial = serial();
        download_survives("dl2", 2, false);
    }
}

#[test]
fn download_survives_primary_crash_with_3_replicas() {
    if privileged("download_survives_primary_crash_with_3_replicas") {
        let _serial = serial();
        download_survives("dl3", 3, false);
    }
}

#[test]
fn backup_crash_is_invisible_to_the_client() {
    if privileged("backup_crash_is_invisible_to_the_client") {
        let _serial = serial();
        download_survives("bk3", 3, true);
    }
}

#[test]
fn upload_and_interactive_survive_primary_crash_with_2_replicas() {
    if privileged("upload_and_interactive_survive_primary_crash_with_2_replicas") {
        let _serial = serial();
        upload_and_interactive_survive("up2", 2);
    }
}

#[test]
fn upload_and_interactive_survive_primary_crash_with_3_replicas() {
    if privileged("upload_and_interactive_survive_primary_crash_with_3_replicas") {
        let _serial = serial();
        upload_and_interactive_survive("up3", 3);
    }
}

#[test]
fn hundred_connections_survive_primary_crash_with_2_replicas() {
    if privileged("hundred_connections_survive_primary_crash_with_2_replicas") {
        let _serial = serial();
        many_connections_survive("mc2", 2);
    }
}

#[test]
fn hundred_connections_survive_primary_crash_with_3_replicas() {
    if privileged("hundred_connections_survive_primary_crash_with_3_replicas") {
        let _serial = serial();
        many_connections_survive("mc3", 3);
    }
}

/// A crash while connections are being opened and closed: short connections
/// in a loop across the failover all complete.
#[test]
fn crash_during_handshakes_and_closes() {
    if !privileged("crash_during_handshakes_and_closes") {
        return;
    }
    let _serial = serial();
    let mut c = cluster("hs3", 3);
    // Short echo connections back to back for ~4 s, the primary killed in the middle.
    let script = format!(
        "for i in $(seq 1 60); do python3 {} {} 7 --size 512 --seed $i >/dev/null || exit 1; sleep 0.05; done",
        clients::echo_script().display(),
        VIP
    );
    let mut loop_cmd = c.client("sh");
    loop_cmd
        .args(["-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let child = loop_cmd.spawn().unwrap();
    kill_after(&mut c, Duration::from_millis(1500), false);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "a short connection failed across the crash: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Fencing: a primary paused past the failure timeout is replaced; when it
/// resumes it must not write to clients (its lease is over, the group tells
/// it it is out, and it stops), and the client's stream stays intact.
#[test]
fn a_paused_old_primary_is_fenced_after_the_new_view() {
    if !privileged("a_paused_old_primary_is_fenced_after_the_new_view") {
        return;
    }
    let _serial = serial();
    let mut c = cluster("fn3", 3);
    let echo = clients::start_echo(&c, 1, 4 << 20, 8192, Duration::from_millis(5)).unwrap();
    std::thread::sleep(Duration::from_millis(800));
    let (epoch, primary, _) = c.view().unwrap();
    let old = primary.unwrap();
    c.signal_member(old, libc::SIGSTOP).unwrap();
    wait_until(
        "a view change while the primary was paused",
        Duration::from_secs(5),
        || c.view().unwrap().0 != epoch,
    );
    std::thread::sleep(Duration::from_millis(300));
    c.signal_member(old, libc::SIGCONT).unwrap();
    // It learns from the authority that it is out and exits without sending.
    wait_until(
        "the old primary to exit after the new view",
        Duration::from_secs(5),
        || !c.member_running(old),
    );
    let log = std::fs::read_to_string(c.log_dir().join(format!("replica{old}.log"))).unwrap();
    assert!(
        log.contains("the group declared this member dead"),
        "old primary log: {log}"
    );
    echo_verdict(
        &clients::finish_echo(echo).unwrap(),
        "echo across the pause",
    );
}

/// Forged or unauthenticated registrations and ack-channel frames are
/// refused and counted; the group's view and traffic are unaffected.
#[test]
fn forged_registrations_and_ack_channel_frames_are_refused() {
    if !privileged("forged_registrations_and_ack_channel_frames_are_refused") {
        return;
    }
    let _serial = serial();
    let c = cluster("fg2", 2);
    let (epoch, primary, _) = c.view().unwrap();
    // A registration-shaped datagram sealed with the wrong key, and garbage,
    // sent to the redirector's control port from a replica's network.
    let forge = format!(
        r#"import socket,os
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)
host,port="{control}".split(":")
frame=bytes([1,1])+bytes(8)+bytes([3])+(2**62).to_bytes(8,"big")+bytes([4])+b"demo"+bytes(12)+os.urandom(16)
for _ in range(5): s.sendto(frame,(host,int(port)))
s.sendto(b"garbage",(host,int(port)))
"#,
        control = c.control_addr()
    );
    let backup = if primary == Some(1) { 2 } else { 1 };
    let out = c.in_replica(backup, "python3", &["-c", &forge]).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A length-prefixed frame with a bad tag into the primary's ack channel,
    // from the other replica's namespace (the only place that can reach it).
    let inject = format!(
        r#"import socket,os
s=socket.create_connection(("{ack}".split(":")[0],int("{ack}".split(":")[1])))
frame=bytes([1,2])+({epoch}).to_bytes(8,"big")+bytes([{backup}])+(2**62).to_bytes(8,"big")+bytes(10)+os.urandom(16)
s.sendall(len(frame).to_bytes(4,"big")+frame)
s.close()
"#,
        ack = c.ack_addr(primary.unwrap()),
    );
    let out = c.in_replica(backup, "python3", &["-c", &inject]).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(Duration::from_millis(300));
    let s = c.status().unwrap();
    let refused = s["groups"][0]["refused_unauthenticated"]
        .as_u64()
        .unwrap_or(0)
        + s["counters"]["control_unauthenticated"]
            .as_u64()
            .unwrap_or(0);
    assert!(refused >= 6, "forged control datagrams not counted: {s}");
    assert_eq!(
        c.view().unwrap().0,
        epoch,
        "a forged message changed the view"
    );
    let p = c.replica_status(primary.unwrap()).unwrap();
    assert!(
        p["frames_refused"].as_u64().unwrap_or(0) >= 1,
        "forged ack-channel frame not refused: {p}"
    );
    // The group still serves.
    let v =
        clients::finish_echo(clients::start_echo(&c, 2, 256 << 10, 4096, Duration::ZERO).unwrap())
            .unwrap();
    echo_verdict(&v, "echo after forgeries");
}

/// The redirector itself crashes and is started again mid-transfer: it
/// restores the views from its state file, the primary keeps its role (no
/// failover), and the client's streams come through intact.
#[test]
fn a_redirector_restart_keeps_the_views_and_the_connections() {
    if !privileged("a_redirector_restart_keeps_the_views_and_the_connections") {
        return;
    }
    let _serial = serial();
    let mut c = cluster("rr3", 3);
    let original = c.www.join("file.bin");
    clients::write_random_file(&original, 24 << 20).unwrap();
    let dest = c.log_dir().join("got.bin");
    let curl = clients::start_download(&c, "file.bin", &dest, "12M").unwrap();
    let echo = clients::start_echo(&c, 2, 200 * 1024, 1024, Duration::from_millis(10)).unwrap();
    std::thread::sleep(Duration::from_millis(800));
    let (epoch, primary, _) = c.view().unwrap();
    c.restart_redirector().unwrap();
    wait_until(
        "the redirector to come back",
        Duration::from_secs(5),
        || c.view().is_ok(),
    );
    assert_eq!(
        c.view().unwrap(),
        (epoch, primary, 3),
        "views restored as they were"
    );
    download_matches(curl, &dest, &original);
    let v = clients::finish_echo(echo).unwrap();
    echo_verdict(&v, "echo across a redirector restart");
    eprintln!(
        "longest echo gap across the restart: {} ms",
        v["max_gap_ms"]
    );
    let p = c.replica_status(primary.unwrap()).unwrap();
    assert_eq!(p["failovers"], 0, "no failover: {p}");
    assert_eq!(c.view().unwrap().0, epoch, "no view change");
}
