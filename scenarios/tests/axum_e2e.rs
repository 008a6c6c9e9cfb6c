//! An axum service of one's own (`hydra-axum`, on tokio through
//! `hydra-tokio`) as a group of 3: `curl` gets its answers, and `wrk`
//! through a primary crash sees no socket error and no non-2xx answer.

mod common;

use std::time::Duration;

use common::{example_group, kill_primary, serial};
use scenarios::clients;
use scenarios::cluster::{Cluster, VIP};
use testnet::netns::{privileged, run};

fn curl(c: &Cluster, args: &[&str]) -> String {
    let mut cmd = c.client("curl");
    cmd.args(["-sS", "--fail", "--max-time", "10"]).args(args);
    String::from_utf8_lossy(&run(&mut cmd).expect("curl").stdout).into_owned()
}

#[test]
fn wrk_through_a_primary_crash_sees_no_error() {
    if !privileged("wrk_through_a_primary_crash_sees_no_error") {
        return;
    }
    let _serial = serial();
    let mut c = example_group("axw", "hydra-axum", 80);
    let base = format!("http://{VIP}");
    assert_eq!(curl(&c, &[&format!("{base}/")]), "hello from hydra\n");
    assert_eq!(
        curl(&c, &[&format!("{base}/echo/replicated")]),
        "replicated"
    );
    assert_eq!(
        curl(&c, &["--data", "40 1 1", &format!("{base}/sum")]),
        "42\n"
    );

    let wrk = clients::start_wrk(&c, "", 20, 5).unwrap();
    std::thread::sleep(Duration::from_millis(2000));
    kill_primary(&mut c);
    let out = wrk.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("wrk through a primary crash:\n{text}");
    let report = clients::parse_wrk(&text).unwrap_or_else(|| panic!("wrk output: {text}"));
    assert!(report.requests > 1000, "{report:?}");
    assert_eq!(report.socket_errors, 0, "{report:?}");
    assert_eq!(report.non_2xx, 0, "{report:?}");
}
