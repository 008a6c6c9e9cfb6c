//! The offloads end to end, with the real binaries on namespaces: a bulk
//! upload reaches every replica as segments the redirector's kernel
//! coalesced (one copy per segment, not per 1,500-byte packet), and the
//! application reads exactly what curl sent.

mod common;

use common::{cluster, serial};
use scenarios::clients;
use testnet::netns::privileged;

#[test]
fn a_bulk_upload_reaches_every_replica_coalesced_and_exact() {
    if !privileged("a_bulk_upload_reaches_every_replica_coalesced_and_exact") {
        return;
    }
    let _serial = serial();
    let c = cluster("of3", 3);
    let len: u64 = 32 << 20;
    let src = c.log_dir().join("upload.bin");
    clients::write_random_file(&src, len as usize).unwrap();
    let curl = clients::start_upload(&c, &src, "1G").unwrap();
    let out = curl.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "curl upload failed: {}; logs in {}",
        String::from_utf8_lossy(&out.stderr),
        c.log_dir().display()
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{} {len}", clients::sha256(&src).unwrap()),
        "the app read other bytes than curl sent"
    );
    for i in 0..3 {
        let packets = c.replica_metric(i, "hydra_stack_packets_in_total").unwrap();
        let bytes = c.replica_metric(i, "hydra_stack_bytes_in_total").unwrap();
        assert!(bytes >= len, "replica {i} took in {bytes} bytes");
        // Plain copies would average under the client's MTU (1,500).
        assert!(
            bytes / packets.max(1) > 4 * 1500,
            "replica {i}: {bytes} bytes in {packets} packets: copies were not coalesced"
        );
    }
}

#[test]
fn a_download_leaves_the_primary_in_large_segments_and_exact() {
    if !privileged("a_download_leaves_the_primary_in_large_segments_and_exact") {
        return;
    }
    let _serial = serial();
    let c = cluster("od3", 3);
    let original = c.www.join("file.bin");
    clients::write_random_file(&original, 32 << 20).unwrap();
    let dest = c.log_dir().join("got.bin");
    let curl = clients::start_download(&c, "file.bin", &dest, "1G").unwrap();
    common::download_matches(curl, &dest, &original);
    let (_, primary, _) = c.view().unwrap();
    let i = usize::from(primary.expect("a primary")) - 1;
    let packets = c
        .replica_metric(i, "hydra_stack_packets_out_total")
        .unwrap();
    let bytes = c.replica_metric(i, "hydra_stack_bytes_out_total").unwrap();
    assert!(bytes >= 32 << 20, "the primary wrote {bytes} bytes");
    // Without transmit offload every write would be one wire segment.
    assert!(
        bytes / packets.max(1) > 4 * 1500,
        "{bytes} bytes in {packets} writes: no large segments"
    );
}
