//! The fast subset of the scenario catalogue (files with `ci = true`),
//! played with the real binaries like `hydra-scenario run --ci` does.

use std::path::Path;

use scenarios::cluster::{coordination_tools_missing, Binaries};
use scenarios::runner;
use scenarios::spec::Scenario;
use testnet::netns::privileged;

#[test]
fn ci_subset_of_the_catalogue_passes() {
    if !privileged("ci_subset_of_the_catalogue_passes") {
        return;
    }
    let bins =
        Binaries::beside_current_exe().expect("build the binaries first: cargo build --bins");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("catalogue");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    let mut scenarios: Vec<Scenario> = files
        .iter()
        .map(|f| Scenario::load(f).unwrap())
        .filter(|s| s.ci)
        .collect();
    // Redundant redirectors need etcd and arping: without them those
    // scenarios are skipped, said, and refused under CI=true.
    if let Some(why) = coordination_tools_missing() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("ci_subset_of_the_catalogue_passes: {why}; CI=true forbids skipping");
        }
        for s in scenarios.iter().filter(|s| s.topology.redirectors > 1) {
            eprintln!(
                "SKIPPED {} (ci_subset_of_the_catalogue_passes): {why}",
                s.name
            );
        }
        scenarios.retain(|s| s.topology.redirectors == 1);
    }
    assert!(scenarios.len() >= 3, "the CI subset is too small");
    let outcomes: Vec<_> = scenarios
        .iter()
        .enumerate()
        .map(|(i, s)| runner::play(s, &bins, i))
        .collect();
    let table = runner::table(&outcomes);
    eprintln!("{table}");
    assert!(outcomes.iter().all(|o| o.passed), "{table}");
}
