//! Where the measurements run: one client and one server namespace joined
//! by a dual-stack veth pair (kernel TCP answers on the server's own
//! address, a userspace stack on a TUN device behind it), or a group of 3
//! behind the redirector (the scenario cluster topology).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use scenarios::cluster::{Binaries, Cluster, ClusterSpec, MemberProgram};
use testnet::netns::Topology;

/// The server namespace's own address (kernel TCP).
pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// The address a stack on the server's TUN device answers for.
pub const TUN_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 200, 1);
/// The server namespace's own IPv6 address (kernel TCP over IPv6).
pub const SERVER_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x18, 0, 0, 0, 0, 0, 2);
/// The IPv6 address a stack on the server's TUN device answers for.
pub const TUN_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x200, 0, 0, 0, 0, 0, 1);

/// A client and a server namespace on one veth pair (198.18.0.1 and
/// 198.18.0.2, fd00:18::1 and fd00:18::2), and the name of the TUN device
/// a userspace stack in the server namespace creates.
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
        let (client_link, server_link) =
            topo.veth((&client, "198.18.0.1/24"), (&server, "198.18.0.2/24"), 1500)?;
        topo.add_ipv6(&client, &client_link, "fd00:18::1/64")?;
        topo.add_ipv6(&server, &server_link, &format!("{SERVER_IP6}/64"))?;
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
        self.tun_command_at(program, subcommand, TUN_IP.into())
    }

    /// `program subcommand --tun <tun> --address <address>` in the server
    /// namespace: [`SingleHost::tun_command`] answering for `address`
    /// ([`TUN_IP`] or [`TUN_IP6`]).
    pub fn tun_command_at(&self, program: &Path, subcommand: &str, address: IpAddr) -> Command {
        let mut cmd = self.server_command(program);
        cmd.args([
            subcommand,
            "--tun",
            &self.tun,
            "--address",
            &address.to_string(),
        ]);
        cmd
    }

    /// Once the stack started by a [`SingleHost::tun_command`] has created
    /// its TUN device: route [`TUN_IP`] and [`TUN_IP6`] to it, and the
    /// client there through the server.
    pub fn route_tun(&self) -> anyhow::Result<()> {
        let topo = &self.topo;
        topo.wait_link(&self.server, &self.tun, Duration::from_secs(10))?;
        topo.ip(
            &self.server,
            &["route", "add", &format!("{TUN_IP}/32"), "dev", &self.tun],
        )?;
        topo.ip(
            &self.server,
            &[
                "-6",
                "route",
                "add",
                &format!("{TUN_IP6}/128"),
                "dev",
                &self.tun,
            ],
        )?;
        topo.router(&self.server)?;
        topo.ip(
            &self.client,
            &["route", "add", "198.18.200.0/24", "via", "198.18.0.2"],
        )?;
        topo.ip(
            &self.client,
            &[
                "-6",
                "route",
                "add",
                "fd00:200::/64",
                "via",
                &SERVER_IP6.to_string(),
            ],
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
