//! `hydra-sim`: runs many seeds of the whole-group simulation and prints
//! each failure with its seed and a one-line repro command.

#![forbid(unsafe_code)]

use clap::Parser;
use sim::groupsim::{run_seed, ClientKind, CoordinationBug, SimConfig, Verdict};

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Client {
    /// Our own stack.
    Hydra,
    /// smoltcp's TCP (no SACK, no timestamps, its own timers).
    Smoltcp,
}

#[derive(Parser)]
#[command(
    name = "hydra-sim",
    version,
    about = "Deterministic simulation of Hydra replica groups with crashes, pauses, partitions and lossy links"
)]
struct Cli {
    /// How many seeds to run.
    #[arg(long, default_value_t = 1000)]
    seeds: u64,
    /// First seed.
    #[arg(long, default_value_t = 1)]
    from: u64,
    /// Replicas per group.
    #[arg(long, default_value_t = 3)]
    replicas: usize,
    /// Run one seed with a readable trace of every fault and view change.
    #[arg(long)]
    trace: Option<u64>,
    /// Inject a known bug (ACKs without gating) to see the checker catch it.
    #[arg(long)]
    inject_no_gating: bool,
    /// Passive replication (the application runs on the primary only).
    #[arg(long)]
    passive: bool,
    /// Client connections per run (opened 150 ms apart).
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Bytes each connection sends (and gets back).
    #[arg(long, default_value_t = 48 * 1024)]
    bytes: usize,
    /// The client's TCP.
    #[arg(long, value_enum, default_value_t = Client::Hydra)]
    client: Client,
    /// Request/response: send requests of this many bytes, each after the
    /// last came back whole (default: stream).
    #[arg(long)]
    request: Option<usize>,
    /// Replicas write segments of up to 64 KiB that the simulated device
    /// cuts (segmentation offload).
    #[arg(long)]
    offload: bool,
    /// An ordered listener with an application whose state all connections
    /// share: every replica must build the same state.
    #[arg(long)]
    ordered: bool,
    /// With --ordered: plant a bug (the application reads past its
    /// deliveries) to see the check catch it.
    #[arg(long)]
    inject_overread: bool,
    /// The group's preferred primary (a member id): the primary hands the
    /// role back to it once it is live again.
    #[arg(long)]
    preferred_primary: Option<u8>,
    /// The client and the service talk IPv6.
    #[arg(long)]
    ipv6: bool,
    /// Redirectors: two or more coordinate through a simulated store, and
    /// the faults kill and cut off the acting one and slow the store.
    #[arg(long, default_value_t = 1)]
    redirectors: usize,
    /// With --redirectors 2 or more: break a coordination rule to see the
    /// checker catch what it lets through.
    #[arg(long, value_enum)]
    inject_coordination: Option<Bug>,
    /// With --redirectors 2 or more: the acting redirector writes a
    /// heartbeat to the store every N milliseconds of virtual time, and a
    /// standby revokes it once its heartbeat stopped (the store's lease is
    /// 150 ms; 0 or none: no heartbeat).
    #[arg(long)]
    heartbeat_ms: Option<u64>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Bug {
    /// View writes not fenced by the authority key's create_revision.
    NoFence,
    /// View writes compare nothing (no create_revision fence, no
    /// compare-and-swap on the view's mod_revision).
    NoCompare,
    /// The lease counted from the renewal's reply, acted on to its end.
    LeaseFromReply,
    /// Replies carry views the store does not hold yet.
    NoAnnounceLimit,
    /// With --heartbeat-ms: the authority acts until its lease runs out,
    /// not only a few heartbeats after its last one.
    NoBeatDeadline,
}

fn main() {
    let cli = Cli::parse();
    let config = |seed| SimConfig {
        replicas: cli.replicas,
        inject_no_gating: cli.inject_no_gating,
        trace: cli.trace.is_some(),
        passive: cli.passive,
        connections: cli.connections,
        bytes_per_connection: cli.bytes,
        client: match cli.client {
            Client::Hydra => ClientKind::Hydra,
            Client::Smoltcp => ClientKind::Smoltcp,
        },
        request: cli.request,
        segmentation_offload: cli.offload,
        ordered: cli.ordered,
        inject_overread: cli.inject_overread,
        preferred_primary: cli.preferred_primary,
        ipv6: cli.ipv6,
        redirectors: cli.redirectors,
        inject_coordination: cli.inject_coordination.map(|b| match b {
            Bug::NoFence => CoordinationBug::NoFence,
            Bug::NoCompare => CoordinationBug::NoCompare,
            Bug::LeaseFromReply => CoordinationBug::LeaseFromReply,
            Bug::NoAnnounceLimit => CoordinationBug::NoAnnounceLimit,
            Bug::NoBeatDeadline => CoordinationBug::NoBeatDeadline,
        }),
        heartbeat_ms: cli.heartbeat_ms.filter(|ms| *ms > 0),
        ..SimConfig::new(seed)
    };
    if let Some(seed) = cli.trace {
        println!("seed {seed}: {:?}", run_seed(config(seed)));
        return;
    }
    let mut failures = 0u64;
    let mut lost = 0u64;
    let (mut crashes, mut failovers, mut handovers) = (0usize, 0u64, 0usize);
    let (mut restarts, mut rejoins, mut handbacks) = (0usize, 0u64, 0u64);
    let mut gate_deliveries = 0u64;
    let (mut elections, mut deposed_writes, mut depositions) = (0u64, 0u64, 0u64);
    for (done, seed) in (cli.from..cli.from + cli.seeds).enumerate() {
        // A long sweep says where it is (stderr, so stdout stays the report).
        if done > 0 && done % 1000 == 0 {
            eprintln!(
                "hydra-sim: {done} of {} seeds run, {failures} failed",
                cli.seeds
            );
        }
        match run_seed(config(seed)) {
            Verdict::Pass {
                crashes: c,
                failovers: f,
                handovers: h,
                restarts: r,
                rejoins: j,
                handbacks: b,
                elections: e,
                deposed_writes: w,
                heartbeat_depositions: d,
                gate_deliveries: g,
                ..
            } => {
                gate_deliveries += g;
                depositions += d;
                elections += e;
                deposed_writes += w;
                handbacks += b;
                crashes += c;
                failovers += f;
                handovers += h;
                restarts += r;
                rejoins += j;
            }
            Verdict::GroupLost { .. } => lost += 1,
            Verdict::Violation { at_ms, what } => {
                failures += 1;
                println!("FAIL seed {seed} at {at_ms} ms: {what}");
                let mut bug = String::new();
                if cli.inject_no_gating {
                    bug.push_str(" --inject-no-gating");
                }
                if cli.passive {
                    bug.push_str(" --passive");
                }
                if cli.client == Client::Smoltcp {
                    bug.push_str(" --client smoltcp");
                }
                if cli.offload {
                    bug.push_str(" --offload");
                }
                if cli.ipv6 {
                    bug.push_str(" --ipv6");
                }
                if cli.redirectors != 1 {
                    bug.push_str(&format!(" --redirectors {}", cli.redirectors));
                }
                if let Some(b) = cli.inject_coordination {
                    let name = match b {
                        Bug::NoFence => "no-fence",
                        Bug::NoCompare => "no-compare",
                        Bug::LeaseFromReply => "lease-from-reply",
                        Bug::NoAnnounceLimit => "no-announce-limit",
                        Bug::NoBeatDeadline => "no-beat-deadline",
                    };
                    bug.push_str(&format!(" --inject-coordination {name}"));
                }
                if let Some(ms) = cli.heartbeat_ms.filter(|ms| *ms > 0) {
                    bug.push_str(&format!(" --heartbeat-ms {ms}"));
                }
                if let Some(p) = cli.preferred_primary {
                    bug.push_str(&format!(" --preferred-primary {p}"));
                }
                if let Some(r) = cli.request {
                    bug.push_str(&format!(" --request {r}"));
                }
                if (cli.connections, cli.bytes) != (4, 48 * 1024) {
                    bug.push_str(&format!(
                        " --connections {} --bytes {}",
                        cli.connections, cli.bytes
                    ));
                }
                println!(
                    "  repro: hydra-sim --replicas {} --trace {seed}{bug}",
                    cli.replicas
                );
            }
        }
    }
    println!(
        "{} seeds, {} failed, {lost} lost every replica (no liveness owed); {crashes} crashes, {handovers} handovers, {failovers} failovers, {restarts} restarts ({rejoins} rejoined), {handbacks} handbacks survived, {gate_deliveries} deliveries at the gate in the passing seeds",
        cli.seeds, failures
    );
    if cli.redirectors > 1 {
        println!(
            "redirectors: {elections} elections won, {depositions} authorities deposed by a standby when their heartbeat stopped, {deposed_writes} view writes from a deposed authority reached the store, in the passing seeds"
        );
    }
    if failures > 0 {
        std::process::exit(1);
    }
}
