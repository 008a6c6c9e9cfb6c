//! Where the measurements run: one client and one server namespace joined
//! by a veth pair (kernel TCP answers on the server's own address, a
//! userspace stack on a TUN device behind it), or a group of 3 behind the
//! redirector (the scenario cluster topology).

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use scenarios::cluster::{Binaries, Cluster, ClusterSpec, MemberProgram};
use testnet::netns::Topology;

/// The server namespace's own address (kernel TCP).
pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// The address a stack on the server's TUN device answers for.
pub const TUN_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 200, 1);

/// A client and a server namespace on one veth pair (198.18.0.1 and
/// 198.18.0.2), and the name of the TUN device a userspace stack in the
/// server namespace creates.
pub struct SingleHost {
    pub topo: Topology,
    pub client: String,
    pub server: String,
    pub tun: String,
}

impl SingleHost {
    pub fn new(tag: &str) -> anyhow::Result<SingleHost> {
        let mut topo = Topology::new(tag);
        let client = topo.namespace("c")?;
        let server = topo.namespace("s")?;
        topo.veth((&client, "198.18.0.1/24"), (&server, "198.18.0.2/24"), 1500)?;
        let tun = topo.name("t");
        Ok(SingleHost {
            topo,
            client,
            server,
            tun,
        })
    }

    /// `program` in the server namespace.
    pub fn server_command(&self, program: &Path) -> Command {
        self.topo.command(&self.server, &program.to_string_lossy())
    }

    /// `program subcommand --tun <tun> --address TUN_IP` in the server
    /// namespace: a stack of ours (or smoltcp) on the TUN device.
    pub fn tun_command(&self, program: &Path, subcommand: &str) -> Command {
        let mut cmd = self.server_command(program);
        cmd.args([
            subcommand,
            "--tun",
            &self.tun,
            "--address",
            &TUN_IP.to_string(),
        ]);
        cmd
    }

    /// Once the stack started by a [`SingleHost::tun_command`] has created
    /// its TUN device: route TUN_IP to it, and the client there through
    /// the server.
    pub fn route_tun(&self) -> anyhow::Result<()> {
        let topo = &self.topo;
        topo.wait_link(&self.server, &self.tun, Duration::from_secs(10))?;
        topo.ip(
            &self.server,
            &["route", "add", &format!("{TUN_IP}/32"), "dev", &self.tun],
        )?;
        topo.router(&self.server)?;
        topo.ip(
            &self.client,
            &["route", "add", "198.18.200.0/24", "via", "198.18.0.2"],
        )?;
        Ok(())
    }
}

/// An example's binary (`hydra-kv`, `hydra-axum`) as a group of 3 serving
/// `port` on the VIP.
pub fn example_group(
    tag: &str,
    bins: &Binaries,
    example: &str,
    port: u16,
) -> anyhow::Result<Cluster> {
    let spec = ClusterSpec {
        replicas: 3,
        program: Some(MemberProgram::example(bins, example, port)),
        ..ClusterSpec::default()
    };
    Cluster::start(tag, spec, bins.clone())
}
