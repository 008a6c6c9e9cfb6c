//! Which group or pool a client packet belongs to: by destination VIP and
//! TCP port.

use std::net::{IpAddr, Ipv4Addr};

use stack::wire::{ipv6, ParseError};

use crate::pool::{FlowKey, FlowPacket};

/// Where a service's packets go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// One group (index into the groups).
    Group(usize),
    /// A pool of groups (index into the pools).
    Pool(usize),
}

/// Where a packet read from the VIP device goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Copy it to every live member of this group (index into the groups).
    Group(usize),
    /// The pool decides the group; `None` for packets that are not TCP
    /// (ICMP to the VIP), which go to the pool's first available group.
    Pool(usize, Option<FlowPacket>),
    NotIp,
    Malformed,
    NoService,
}

#[derive(Debug, Clone)]
struct Service {
    vip: IpAddr,
    /// Empty: every port.
    ports: Vec<u16>,
    target: Target,
}

#[derive(Debug, Clone, Default)]
pub struct ServiceMap {
    services: Vec<Service>,
}

const TCP: u8 = 6;
const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

impl ServiceMap {
    pub fn add(&mut self, vip: IpAddr, ports: Vec<u16>, target: Target) {
        self.services.push(Service { vip, ports, target });
    }

    /// Classify one IPv4 or IPv6 packet. Non-TCP packets to a VIP (ICMP
    /// echo, for example) go to the VIP's first service, so the group
    /// answers them; so do fragments after the first, which carry no ports.
    pub fn classify(&self, packet: &[u8]) -> Verdict {
        let Some(&first) = packet.first() else {
            return Verdict::Malformed;
        };
        let (client, dst, tcp) = match first >> 4 {
            4 => {
                let header_len = usize::from(first & 0x0f) * 4;
                if header_len < 20 || packet.len() < header_len {
                    return Verdict::Malformed;
                }
                let address = |at: usize| {
                    IpAddr::V4(Ipv4Addr::new(
                        packet[at],
                        packet[at + 1],
                        packet[at + 2],
                        packet[at + 3],
                    ))
                };
                let fragment_offset = u16::from_be_bytes([packet[6], packet[7]]) & 0x1fff;
                let tcp = (packet[9] == TCP && fragment_offset == 0).then_some(header_len);
                (address(12), address(16), tcp)
            }
            6 => match ipv6::parse(packet) {
                Ok(h) => (
                    h.src.into(),
                    h.dst.into(),
                    (h.protocol == TCP).then_some(h.upper),
                ),
                Err(ParseError::Fragment) if packet.len() >= ipv6::IPV6_HEADER_LEN => {
                    let mut dst = [0u8; 16];
                    dst.copy_from_slice(&packet[24..40]);
                    let mut src = [0u8; 16];
                    src.copy_from_slice(&packet[8..24]);
                    (IpAddr::from(src), IpAddr::from(dst), None)
                }
                Err(_) => return Verdict::Malformed,
            },
            _ => return Verdict::NotIp,
        };
        let flow = match tcp {
            Some(at) => {
                let Some(tcp) = packet.get(at..at + 14) else {
                    return Verdict::Malformed;
                };
                let flags = tcp[13];
                Some(FlowPacket {
                    key: FlowKey {
                        client,
                        client_port: u16::from_be_bytes([tcp[0], tcp[1]]),
                        service: dst,
                        service_port: u16::from_be_bytes([tcp[2], tcp[3]]),
                    },
                    syn: flags & SYN != 0 && flags & ACK == 0,
                    fin: flags & FIN != 0,
                    rst: flags & RST != 0,
                })
            }
            None => None,
        };
        let mut on_vip = self.services.iter().filter(|s| s.vip == dst);
        let found = match flow {
            Some(f) => on_vip.find(|s| s.ports.is_empty() || s.ports.contains(&f.key.service_port)),
            None => on_vip.next(),
        };
        match found.map(|s| s.target) {
            Some(Target::Group(g)) => Verdict::Group(g),
            Some(Target::Pool(p)) => Verdict::Pool(p, flow),
            None => Verdict::NoService,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(dst: [u8; 4], protocol: u8, port: u16) -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x45;
        p[9] = protocol;
        p[12..16].copy_from_slice(&[198, 18, 0, 1]);
        p[16..20].copy_from_slice(&dst);
        p[20..22].copy_from_slice(&40000u16.to_be_bytes());
        p[22..24].copy_from_slice(&port.to_be_bytes());
        p[33] = SYN;
        p
    }

    #[test]
    fn packets_go_to_the_group_of_their_vip_and_port() {
        let mut m = ServiceMap::default();
        m.add(
            Ipv4Addr::new(198, 18, 100, 1).into(),
            vec![80],
            Target::Group(0),
        );
        m.add(
            Ipv4Addr::new(198, 18, 100, 1).into(),
            vec![7, 9],
            Target::Group(1),
        );
        m.add(
            Ipv4Addr::new(198, 18, 100, 2).into(),
            vec![],
            Target::Group(2),
        );
        assert_eq!(
            m.classify(&packet([198, 18, 100, 1], TCP, 80)),
            Verdict::Group(0)
        );
        assert_eq!(
            m.classify(&packet([198, 18, 100, 1], TCP, 9)),
            Verdict::Group(1)
        );
        assert_eq!(
            m.classify(&packet([198, 18, 100, 1], TCP, 22)),
            Verdict::NoService
        );
        assert_eq!(
            m.classify(&packet([198, 18, 100, 2], TCP, 22)),
            Verdict::Group(2)
        );
        assert_eq!(
            m.classify(&packet([198, 18, 100, 1], 1, 0)),
            Verdict::Group(0),
            "ICMP to the VIP"
        );
        assert_eq!(
            m.classify(&packet([198, 18, 100, 3], TCP, 80)),
            Verdict::NoService
        );
    }

    #[test]
    fn pooled_services_carry_the_flow_and_its_flags() {
        let mut m = ServiceMap::default();
        m.add(
            Ipv4Addr::new(198, 18, 100, 1).into(),
            vec![7],
            Target::Pool(3),
        );
        let Verdict::Pool(3, Some(f)) = m.classify(&packet([198, 18, 100, 1], TCP, 7)) else {
            panic!("not pooled");
        };
        assert_eq!(f.key.client, IpAddr::from([198, 18, 0, 1]));
        assert_eq!((f.key.client_port, f.key.service_port), (40000, 7));
        assert!(f.syn && !f.fin && !f.rst);
        let mut synack_like = packet([198, 18, 100, 1], TCP, 7);
        synack_like[33] = SYN | ACK | FIN;
        let Verdict::Pool(_, Some(f)) = m.classify(&synack_like) else {
            panic!("not pooled");
        };
        assert!(!f.syn && f.fin, "SYN with ACK is no connection attempt");
        assert_eq!(
            m.classify(&packet([198, 18, 100, 1], 1, 0)),
            Verdict::Pool(3, None)
        );
    }

    /// An IPv6 TCP segment from fd00::9 to `dst`, port `port`, behind
    /// `extension` (a chain of extension headers whose first is named by
    /// `first`; empty: none).
    fn packet6(dst: &str, port: u16, first: u8, extension: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&((extension.len() + 20) as u16).to_be_bytes());
        p.extend_from_slice(&[if extension.is_empty() { TCP } else { first }, 64]);
        p.extend_from_slice(&"fd00::9".parse::<std::net::Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(&dst.parse::<std::net::Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(extension);
        let mut tcp = [0u8; 20];
        tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&port.to_be_bytes());
        tcp[13] = SYN;
        p.extend_from_slice(&tcp);
        p
    }

    #[test]
    fn ipv6_packets_go_to_their_vip_and_port_behind_extension_headers() {
        let mut m = ServiceMap::default();
        let vip6: IpAddr = "fd00:100::1".parse().unwrap();
        m.add(vip6, vec![80], Target::Group(4));
        m.add(vip6, vec![7], Target::Pool(1));
        m.add(
            Ipv4Addr::new(198, 18, 100, 1).into(),
            vec![80],
            Target::Group(0),
        );
        assert_eq!(
            m.classify(&packet6("fd00:100::1", 80, 0, &[])),
            Verdict::Group(4)
        );
        assert_eq!(
            m.classify(&packet6("fd00:100::2", 80, 0, &[])),
            Verdict::NoService
        );
        let options = [TCP, 0, 1, 4, 0, 0, 0, 0];
        let Verdict::Pool(1, Some(f)) = m.classify(&packet6("fd00:100::1", 7, 60, &options)) else {
            panic!("not pooled behind a destination options header");
        };
        assert_eq!(f.key.client, "fd00::9".parse::<IpAddr>().unwrap());
        assert_eq!((f.key.service, f.key.service_port), (vip6, 7));
        // A later fragment carries no ports: the VIP's first service.
        let fragment = [TCP, 0, 0, 0x09, 0, 0, 0, 1];
        assert_eq!(
            m.classify(&packet6("fd00:100::1", 7, 44, &fragment)),
            Verdict::Group(4)
        );
        assert_eq!(
            m.classify(&packet6("fd00:100::1", 80, 0, &[])[..45]),
            Verdict::Malformed
        );
    }

    #[test]
    fn malformed_and_foreign_packets_are_named_not_panicked_on() {
        let m = ServiceMap::default();
        assert_eq!(m.classify(&[]), Verdict::Malformed);
        assert_eq!(m.classify(&[0x50; 40]), Verdict::NotIp);
        assert_eq!(m.classify(&[0x60; 40]), Verdict::Malformed);
        assert_eq!(m.classify(&[0x4f; 20]), Verdict::Malformed);
        let mut short = packet([198, 18, 100, 1], TCP, 80);
        short.truncate(33);
        assert_eq!(m.classify(&short), Verdict::Malformed);
        for n in 0..40 {
            let _ = m.classify(&packet([1, 2, 3, 4], TCP, 80)[..n]);
        }
    }
}
