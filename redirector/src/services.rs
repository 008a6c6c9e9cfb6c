//! Which group a client packet belongs to: by destination VIP and TCP port.

use std::net::Ipv4Addr;

/// Where a packet read from the VIP device goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Copy it to every live member of this group (index into the groups).
    Group(usize),
    NotIpv4,
    Malformed,
    NoService,
}

#[derive(Debug, Clone)]
struct Service {
    vip: Ipv4Addr,
    /// Empty: every port.
    ports: Vec<u16>,
    group: usize,
}

#[derive(Debug, Clone, Default)]
pub struct ServiceMap {
    services: Vec<Service>,
}

const TCP: u8 = 6;

impl ServiceMap {
    pub fn add(&mut self, vip: Ipv4Addr, ports: Vec<u16>, group: usize) {
        self.services.push(Service { vip, ports, group });
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
        let port = if protocol == TCP && fragment_offset == 0 {
            match packet.get(header_len + 2..header_len + 4) {
                Some(p) => Some(u16::from_be_bytes([p[0], p[1]])),
                None => return Verdict::Malformed,
            }
        } else {
            None
        };
        let mut on_vip = self.services.iter().filter(|s| s.vip == dst);
        let found = match port {
            Some(port) => on_vip.find(|s| s.ports.is_empty() || s.ports.contains(&port)),
            None => on_vip.next(),
        };
        found.map_or(Verdict::NoService, |s| Verdict::Group(s.group))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(dst: [u8; 4], protocol: u8, port: u16) -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x45;
        p[9] = protocol;
        p[16..20].copy_from_slice(&dst);
        p[22..24].copy_from_slice(&port.to_be_bytes());
        p
    }

    #[test]
    fn packets_go_to_the_group_of_their_vip_and_port() {
        let mut m = ServiceMap::default();
        m.add(Ipv4Addr::new(198, 18, 100, 1), vec![80], 0);
        m.add(Ipv4Addr::new(198, 18, 100, 1), vec![7, 9], 1);
        m.add(Ipv4Addr::new(198, 18, 100, 2), vec![], 2);
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
    fn malformed_and_foreign_packets_are_named_not_panicked_on() {
        let m = ServiceMap::default();
        assert_eq!(m.classify(&[]), Verdict::Malformed);
        assert_eq!(m.classify(&[0x60; 40]), Verdict::NotIpv4);
        assert_eq!(m.classify(&[0x4f; 20]), Verdict::Malformed);
        let mut short = packet([198, 18, 100, 1], TCP, 80);
        short.truncate(21);
        assert_eq!(m.classify(&short), Verdict::Malformed);
        for n in 0..40 {
            let _ = m.classify(&packet([1, 2, 3, 4], TCP, 80)[..n]);
        }
    }
}
