//! Criterion micro-benchmarks of the hot paths: segment parse and emit,
//! input of in-order data, reassembly with holes, ACK gating on backup
//! confirmations, and the delivery log's encoding. `cargo bench -p
//! hydra-bench --bench hot_paths`; the end-to-end figures are `hydra-bench`.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use ackchannel::auth::{Counter, GroupKey};
use ackchannel::replication::{MemberId, Progress, ReplicationConfig, ReplicationView, Replicator};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use stack::{Config, ConnKey, Instant, Seq, Stack};

const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

/// Move every pending packet from `from` into `to`; returns them.
fn pump(now: Instant, from: &mut Stack, to: &mut Stack) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    while let Some(n) = from.poll_transmit(now, &mut buf) {
        to.handle_packet(now, &buf[..n]);
        out.push(buf[..n].to_vec());
    }
    out
}

/// A client and a server stack with one established connection.
fn connected() -> (Stack, Stack, ConnKey, ConnKey) {
    let now = Instant::ZERO;
    let mut client = Stack::new(Config::default());
    let mut server = Stack::new(Config::default());
    let listen = SocketAddr::V4(SocketAddrV4::new(SERVER, 7));
    server.listen(listen).expect("listen");
    let key = client
        .connect(
            now,
            SocketAddr::V4(SocketAddrV4::new(CLIENT, 40000)),
            listen,
        )
        .expect("connect");
    for _ in 0..4 {
        pump(now, &mut client, &mut server);
        pump(now, &mut server, &mut client);
    }
    let accepted = server.accept(listen).expect("established");
    (client, server, key, accepted)
}

/// `n` full-size in-order data segments from the client (not delivered).
fn data_segments(client: &mut Stack, key: ConnKey, n: usize) -> Vec<Vec<u8>> {
    let payload = vec![0x5a; 1460 * n];
    client.send(key, &payload).expect("send buffer room");
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    while let Some(len) = client.poll_transmit(Instant::ZERO, &mut buf) {
        out.push(buf[..len].to_vec());
    }
    out.truncate(n);
    out
}

fn segments(c: &mut Criterion) {
    let (mut client, _, key, _) = connected();
    let packet = data_segments(&mut client, key, 1).remove(0);
    let mut g = c.benchmark_group("segment");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_1460", |b| {
        b.iter(|| std::hint::black_box(stack::wire::parse(std::hint::black_box(&packet)).is_ok()))
    });
    g.bench_function("emit_1460_send_and_poll", |b| {
        b.iter_batched(
            connected,
            |(mut client, _, key, _)| {
                client.send(key, &[0x5a; 1460]).ok();
                let mut buf = [0u8; 1600];
                std::hint::black_box(client.poll_transmit(Instant::ZERO, &mut buf))
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// Verifying the TCP checksum of a 64 KiB coalesced segment (every byte a
/// replica receives is verified): ours against smoltcp's, for the ratio.
fn checksums(c: &mut Criterion) {
    use smoltcp::wire::{IpAddress, TcpPacket};
    use std::net::Ipv4Addr;
    let (src, dst): (std::net::IpAddr, std::net::IpAddr) = (
        Ipv4Addr::new(198, 18, 0, 1).into(),
        Ipv4Addr::new(198, 18, 0, 2).into(),
    );
    let data: Vec<u8> = (0..65_000u32).map(|i| (i * 7 + 3) as u8).collect();
    let mut g = c.benchmark_group("tcp_checksum");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("ours_65000", |b| {
        b.iter(|| stack::checksum::tcp_is_valid(src, dst, std::hint::black_box(&data)))
    });
    g.bench_function("smoltcp_65000", |b| {
        b.iter(|| {
            TcpPacket::new_unchecked(std::hint::black_box(&data[..]))
                .verify_checksum(&IpAddress::from(src), &IpAddress::from(dst))
        })
    });
    g.finish();
}

/// The client's initial congestion window (what it sends before an ACK):
/// ten full segments into an established connection in `order`, then one
/// read of what became readable.
fn deliver_initial_window(c: &mut Criterion, group: &str, name: &str, order: &[usize]) {
    const N: usize = 10;
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function(name, |b| {
        b.iter_batched(
            || {
                let (mut client, server, key, accepted) = connected();
                let segs = data_segments(&mut client, key, N);
                assert_eq!(segs.len(), N, "the client sent fewer segments");
                (server, accepted, segs)
            },
            |(mut server, accepted, segs)| {
                let mut buf = vec![0u8; 65536];
                for &i in order {
                    server.handle_packet(Instant::ZERO, &segs[i]);
                }
                std::hint::black_box(server.recv(accepted, &mut buf).ok())
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn input(c: &mut Criterion) {
    let in_order: Vec<usize> = (0..10).collect();
    deliver_initial_window(c, "input", "in_order_data_10_segments", &in_order);
}

fn reassembly(c: &mut Criterion) {
    // A hole before every other segment: the odd ones wait out of order
    // until the even ones fill the holes.
    let holes_first: Vec<usize> = (1..10).step_by(2).chain((0..10).step_by(2)).collect();
    deliver_initial_window(
        c,
        "reassembly",
        "holes_every_other_then_filled_10_segments",
        &holes_first,
    );
}

fn key(i: u32) -> ConnKey {
    ConnKey {
        local: SocketAddr::V4(SocketAddrV4::new(SERVER, 80)),
        remote: SocketAddr::V4(SocketAddrV4::new(
            Ipv4Addr::from(0xC612_0000 | (i >> 16)),
            (i & 0xffff) as u16,
        )),
    }
}

/// A primary and a backup replicator in epoch 1 tracking `conns` connections.
fn group(conns: u32) -> (Replicator, Replicator) {
    let gk = GroupKey([3; 32]);
    let view = ReplicationView {
        epoch: 1,
        members: vec![MemberId(1), MemberId(2)],
        joining: Vec::new(),
    };
    let mk = |id: u8| {
        let mut r = Replicator::with_counter(
            MemberId(id),
            gk.clone(),
            ReplicationConfig::default(),
            Counter::starting_at(1),
        );
        r.install_view(Instant::ZERO, view.clone());
        r
    };
    let (mut primary, mut backup) = (mk(1), mk(2));
    for i in 0..conns {
        let (held, edge) = (Seq(10_000), Seq(80_000));
        primary.local_progress(Instant::ZERO, key(i), Progress::in_order(held, edge, false));
        backup.local_progress(Instant::ZERO, key(i), Progress::in_order(held, edge, false));
    }
    (primary, backup)
}

/// Frames `from` has queued.
fn frames(from: &mut Replicator) -> Vec<Vec<u8>> {
    from.flush(Instant::ZERO);
    std::iter::from_fn(|| from.poll_transmit().map(|(_, f)| f)).collect()
}

fn gating(c: &mut Criterion) {
    const CONNS: u32 = 1000;
    let mut g = c.benchmark_group("ack_gating");
    g.throughput(Throughput::Elements(u64::from(CONNS)));
    g.bench_function("confirmations_for_1000_connections", |b| {
        b.iter_batched(
            || {
                let (primary, mut backup) = group(CONNS);
                let confirms = frames(&mut backup);
                (primary, confirms)
            },
            |(mut primary, confirms)| {
                for f in &confirms {
                    primary.handle_frame(Instant::ZERO, f).ok();
                }
                std::hint::black_box(primary.poll_action())
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn log(c: &mut Criterion) {
    const ENTRIES: u32 = 1000;
    let mut g = c.benchmark_group("delivery_log");
    g.throughput(Throughput::Elements(u64::from(ENTRIES)));
    let record = vec![0u8; 48];
    let opened = |primary: &mut Replicator| {
        for i in 0..ENTRIES {
            primary.opened(Instant::ZERO, key(i), record.clone());
        }
    };
    g.bench_function("encode_1000_entries", |b| {
        b.iter_batched(
            || {
                let (mut primary, mut backup) = group(0);
                // The backup confirms first, so appends carry no resend flag.
                for f in frames(&mut backup) {
                    primary.handle_frame(Instant::ZERO, &f).ok();
                }
                opened(&mut primary);
                primary
            },
            |mut primary| std::hint::black_box(frames(&mut primary)),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("decode_1000_entries", |b| {
        b.iter_batched(
            || {
                let (mut primary, backup) = group(0);
                opened(&mut primary);
                (frames(&mut primary), backup)
            },
            |(appends, mut backup)| {
                for f in &appends {
                    backup.handle_frame(Instant::ZERO, f).ok();
                }
                std::hint::black_box(backup.uncommitted())
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, segments, checksums, input, reassembly, gating, log);
criterion_main!(benches);
