//! Which group or pool a client packet belongs to: by destination VIP and
//! TCP port.

use std::net::Ipv4Addr;

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
    NotIpv4,
    Malformed,
    NoService,
}

#[derive(Debug, Clone)]
struct Service {
    vip: Ipv4Addr,
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
    pub fn add(&mut self, vip: Ipv4Addr, ports: Vec<u16>, target: Target) {
        self.services.push(Service { vip, ports, target });
    }

    /// Classify one IPv4 packet. Non-TCP packets to a VIP (ICMP echo, for
    /// example) go to the VIP's first service, so the group answers them.
    pub fn classify(&self, packet: &[u8]) -> Verdict {
        let Some(&first) = packet.first() else {
            return Verdict::Malformed;
        };
        if first >> 4 != 4 {
            return Verdict::NotIpv4;
        }
        let header_len = usize::from(first & 0x0f) * 4;
        if header_len < 20 || packet.len() < header_len {
            return Verdict::Malformed;
        }
        let dst = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
        let protocol = packet[9];
        let fragment_offset = u16::from_be_bytes([packet[6], packet[7]]) & 0x1fff;
        let flow = if protocol == TCP && fragment_offset == 0 {
            let Some(tcp) = packet.get(header_len..header_len + 14) else {
                return Verdict::Malformed;
            };
            let flags = tcp[13];
            Some(FlowPacket {
                key: FlowKey {
                    client: Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]),
                    client_port: u16::from_be_bytes([tcp[0], tcp[1]]),
                    service: dst,
                    service_port: u16::from_be_bytes([tcp[2], tcp[3]]),
                },
                syn: flags & SYN != 0 && flags & ACK == 0,
                fin: flags & FIN != 0,
                rst: flags & RST != 0,
            })
        } else {
            None
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
        m.add(Ipv4Addr::new(198, 18, 100, 1), vec![80], Target::Group(0));
        m.add(Ipv4Addr::new(198, 18, 100, 1), vec![7, 9], Target::Group(1));
        m.add(Ipv4Addr::new(198, 18, 100, 2), vec![], Target::Group(2));
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
        m.add(Ipv4Addr::new(198, 18, 100, 1), vec![7], Target::Pool(3));
        let Verdict::Pool(3, Some(f)) = m.classify(&packet([198, 18, 100, 1], TCP, 7)) else {
            panic!("not pooled");
        };
        assert_eq!(f.key.client, Ipv4Addr::new(198, 18, 0, 1));
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

    #[test]
    fn malformed_and_foreign_packets_are_named_not_panicked_on() {
        let m = ServiceMap::default();
        assert_eq!(m.classify(&[]), Verdict::Malformed);
        assert_eq!(m.classify(&[0x60; 40]), Verdict::NotIpv4);
        assert_eq!(m.classify(&[0x4f; 20]), Verdict::Malformed);
        let mut short = packet([198, 18, 100, 1], TCP, 80);
        short.truncate(33);
        assert_eq!(m.classify(&short), Verdict::Malformed);
        for n in 0..40 {
            let _ = m.classify(&packet([1, 2, 3, 4], TCP, 80)[..n]);
        }
    }
}
