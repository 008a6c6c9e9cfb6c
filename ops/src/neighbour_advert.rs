//! Unsolicited neighbour advertisements (RFC 4861 section 7.2.6) for an
//! IPv6 floating address: what gratuitous ARP is to IPv4. Each tells the
//! link's nodes that the address now lives at this link's hardware
//! address, with the override flag, so a client's cached entry for it
//! moves to the redirector that took it over, and with the router flag, as
//! the address is the clients' next hop.
//!
//! Sent from a raw ICMPv6 socket bound to the address: the kernel fills
//! the IPv6 header and the ICMPv6 checksum; the hop limit is 255, as
//! receivers require of neighbour discovery.

use std::net::Ipv6Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// ICMPv6 type of a neighbour advertisement.
const NEIGHBOR_ADVERTISEMENT: u8 = 136;
/// The router flag: the sender forwards packets (a floating address is a
/// next hop).
const ROUTER: u8 = 0x80;
/// The override flag: replace the cached link-layer address.
const OVERRIDE: u8 = 0x20;
/// Option type "target link-layer address".
const TARGET_LINK_LAYER: u8 = 2;
/// Every node on the link (ff02::1).
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// Announce `ip` on `link` `count` times: the first now (its failure is
/// returned), the others a second apart from a thread of their own, which
/// stops early once the address is no longer on the link.
pub fn announce(link: &str, ip: Ipv6Addr, count: u32) -> Result<(), String> {
    let sender = Sender::open(link, ip)?;
    sender.send()?;
    if count > 1 {
        let link = link.to_string();
        std::thread::Builder::new()
            .name("advertise".into())
            .spawn(move || {
                for _ in 1..count {
                    std::thread::sleep(Duration::from_secs(1));
                    // Released (or the link gone): nothing more to claim.
                    if let Err(e) = Sender::open(&link, ip).and_then(|s| s.send()) {
                        tracing::debug!("neighbour advertisements for {ip} stop: {e}");
                        return;
                    }
                }
            })
            .map_err(|e| format!("cannot start the advertisement thread: {e}"))?;
    }
    Ok(())
}

/// The advertisement's ICMPv6 message (checksum left zero for the kernel).
pub fn message(target: Ipv6Addr, mac: [u8; 6]) -> [u8; 32] {
    let mut m = [0u8; 32];
    m[0] = NEIGHBOR_ADVERTISEMENT;
    // Bytes 2-3: checksum; 4-7: flags (solicited clear: nobody asked).
    m[4] = ROUTER | OVERRIDE;
    m[8..24].copy_from_slice(&target.octets());
    m[24] = TARGET_LINK_LAYER;
    m[25] = 1; // the option's length in units of 8 bytes
    m[26..32].copy_from_slice(&mac);
    m
}

/// A raw ICMPv6 socket bound to the address on the link.
struct Sender {
    fd: OwnedFd,
    message: [u8; 32],
    scope: u32,
    link: String,
}

impl Sender {
    fn open(link: &str, ip: Ipv6Addr) -> Result<Sender, String> {
        let name = std::ffi::CString::new(link)
            .map_err(|_| format!("link name {link:?} holds a NUL byte"))?;
        // SAFETY: a NUL-terminated name.
        let scope = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if scope == 0 {
            return Err(format!(
                "no link {link}: {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: plain socket(2); the result is checked and owned below.
        let raw = unsafe { libc::socket(libc::AF_INET6, libc::SOCK_RAW, libc::IPPROTO_ICMPV6) };
        if raw < 0 {
            return Err(os_error("a raw ICMPv6 socket (needs CAP_NET_RAW)"));
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mac = link_mac(&fd, link)?;
        let sender = Sender {
            fd,
            message: message(ip, mac),
            scope,
            link: link.to_string(),
        };
        let hops: libc::c_int = 255;
        sender.set(libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_HOPS, hops)?;
        sender.set(
            libc::IPPROTO_IPV6,
            libc::IPV6_MULTICAST_IF,
            scope as libc::c_int,
        )?;
        let local = sockaddr(ip, scope);
        // SAFETY: a valid sockaddr_in6 and its size.
        let bound = unsafe {
            libc::bind(
                raw,
                (&local as *const libc::sockaddr_in6).cast(),
                std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            )
        };
        if bound < 0 {
            return Err(os_error(&format!("binding to {ip} on {link}")));
        }
        Ok(sender)
    }

    fn set(
        &self,
        level: libc::c_int,
        option: libc::c_int,
        value: libc::c_int,
    ) -> Result<(), String> {
        // SAFETY: an int option with its size, on our descriptor.
        let r = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                option,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(os_error("setting the advertisement socket's hop limit"));
        }
        Ok(())
    }

    fn send(&self) -> Result<(), String> {
        let to = sockaddr(ALL_NODES, self.scope);
        // SAFETY: the message buffer and a valid sockaddr_in6, with sizes.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                self.message.as_ptr().cast(),
                self.message.len(),
                0,
                (&to as *const libc::sockaddr_in6).cast(),
                std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(os_error(&format!(
                "sending a neighbour advertisement on {}",
                self.link
            )));
        }
        Ok(())
    }
}

fn sockaddr(ip: Ipv6Addr, scope: u32) -> libc::sockaddr_in6 {
    // SAFETY: sockaddr_in6 is plain data; all zero is a valid value.
    let mut a: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    a.sin6_family = libc::AF_INET6 as libc::sa_family_t;
    a.sin6_addr.s6_addr = ip.octets();
    // Only link-scoped addresses need it; the kernel ignores it otherwise.
    a.sin6_scope_id = scope;
    a
}

/// `struct ifreq` as `SIOCGIFHWADDR` fills it: the name, then a
/// `struct sockaddr` whose data starts with the hardware address.
#[repr(C)]
struct HardwareAddressRequest {
    name: [u8; 16],
    family: u16,
    data: [u8; 14],
    /// The rest of the kernel's union.
    pad: [u8; 8],
}

/// The link's hardware address, asked of the kernel on `fd` (in the
/// calling thread's network namespace, as the link's index is).
fn link_mac(fd: &OwnedFd, link: &str) -> Result<[u8; 6], String> {
    let mut req = HardwareAddressRequest {
        name: [0; 16],
        family: 0,
        data: [0; 14],
        pad: [0; 8],
    };
    if link.len() >= req.name.len() {
        return Err(format!("link name {link:?} is too long"));
    }
    req.name[..link.len()].copy_from_slice(link.as_bytes());
    // SAFETY: SIOCGIFHWADDR reads the name and writes the address within
    // the 40 bytes of a struct ifreq, which the request spans.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFHWADDR, &mut req) };
    if r < 0 {
        return Err(os_error(&format!("reading the hardware address of {link}")));
    }
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&req.data[..6]);
    if mac == [0; 6] {
        return Err(format!("{link} has no Ethernet address"));
    }
    Ok(mac)
}

fn os_error(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_the_target_and_its_link_address_with_override() {
        let target: Ipv6Addr = "fd00::fe".parse().unwrap();
        let m = message(target, [2, 0, 0, 0, 0, 0x42]);
        assert_eq!(m[0], 136, "neighbour advertisement");
        assert_eq!(m[1], 0, "code");
        assert_eq!(&m[4..8], &[0xa0, 0, 0, 0], "router and override");
        assert_eq!(&m[8..24], &target.octets());
        assert_eq!(&m[24..26], &[2, 1], "target link-layer address, 8 bytes");
        assert_eq!(&m[26..32], &[2, 0, 0, 0, 0, 0x42]);
    }
}
