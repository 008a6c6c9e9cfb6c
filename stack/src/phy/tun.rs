//! Linux TUN device, opened with `ioctl(TUNSETIFF)` on `/dev/net/tun`.
//!
//! Why our own 150 lines and not a crate: we need exactly one thing (a
//! non-blocking IFF_TUN|IFF_NO_PI fd, later IFF_VNET_HDR for offloads), with no
//! async runtime and no extra dependency tree on a 2-core build machine; the
//! maintained crates (tun-rs, tun) wrap the same ioctl behind a larger API.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use super::Device;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;

#[repr(C)]
struct IfReqFlags {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Packets the kernel queues toward us (the device's transmit queue).
/// The kernel's default of 500 overflows when a burst of a full TCP window
/// arrives while our reader is descheduled; each drop costs the sender a
/// retransmission. TCP windows bound what can ever be queued.
const QUEUE_LEN: libc::c_int = 8192;

/// ifreq with an int in its union (MTU, queue length).
#[repr(C)]
struct IfReqMtu {
    name: [libc::c_char; libc::IFNAMSIZ],
    mtu: libc::c_int,
    _pad: [u8; 20],
}

/// An open TUN interface carrying bare IPv4 packets.
pub struct Tun {
    file: File,
    name: String,
    mtu: usize,
}

fn ifname(name: &str) -> io::Result<[libc::c_char; libc::IFNAMSIZ]> {
    let c = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in name"))?;
    let bytes = c.as_bytes_with_nul();
    if bytes.len() > libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "interface name {name:?} longer than {} bytes",
                libc::IFNAMSIZ - 1
            ),
        ));
    }
    let mut out = [0 as libc::c_char; libc::IFNAMSIZ];
    for (o, b) in out.iter_mut().zip(bytes) {
        *o = *b as libc::c_char;
    }
    Ok(out)
}

impl Tun {
    /// Create (or attach to) TUN interface `name`, non-blocking, and bring it up
    /// with the given MTU.
    pub fn open(name: &str, mtu: usize) -> io::Result<Tun> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(|e| io::Error::new(e.kind(), format!("open /dev/net/tun: {e}")))?;
        let mut req = IfReqFlags {
            name: ifname(name)?,
            flags: IFF_TUN | IFF_NO_PI,
            _pad: [0; 22],
        };
        // SAFETY: TUNSETIFF reads and writes an ifreq of the size we pass.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF as _, &mut req) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("TUNSETIFF {name}: {e}")));
        }
        let tun = Tun {
            file,
            name: name.to_string(),
            mtu,
        };
        tun.configure_link(mtu)?;
        Ok(tun)
    }

    /// Set MTU and IFF_UP through an ordinary socket's interface ioctls.
    fn configure_link(&self, mtu: usize) -> io::Result<()> {
        // SAFETY: plain socket(2) call; the fd is closed below.
        let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if sock < 0 {
            return Err(io::Error::last_os_error());
        }
        let result = (|| {
            let mut mtu_req = IfReqMtu {
                name: ifname(&self.name)?,
                mtu: mtu as libc::c_int,
                _pad: [0; 20],
            };
            // SAFETY: SIOCSIFMTU takes an ifreq with the MTU in the union.
            if unsafe { libc::ioctl(sock, libc::SIOCSIFMTU as _, &mut mtu_req) } < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut qlen_req = IfReqMtu {
                name: ifname(&self.name)?,
                mtu: QUEUE_LEN,
                _pad: [0; 20],
            };
            // SAFETY: SIOCSIFTXQLEN takes an ifreq with ifr_qlen in the union.
            if unsafe { libc::ioctl(sock, libc::SIOCSIFTXQLEN as _, &mut qlen_req) } < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut flags = IfReqFlags {
                name: ifname(&self.name)?,
                flags: 0,
                _pad: [0; 22],
            };
            // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write ifr_flags.
            if unsafe { libc::ioctl(sock, libc::SIOCGIFFLAGS as _, &mut flags) } < 0 {
                return Err(io::Error::last_os_error());
            }
            flags.flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            if unsafe { libc::ioctl(sock, libc::SIOCSIFFLAGS as _, &mut flags) } < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        })();
        // SAFETY: sock is a valid fd we own.
        unsafe { libc::close(sock) };
        result.map_err(|e| io::Error::new(e.kind(), format!("configure {}: {e}", self.name)))
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl AsRawFd for Tun {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

impl Device for Tun {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read(buf)
    }

    fn send(&mut self, packet: &[u8]) -> io::Result<()> {
        let n = self.file.write(packet)?;
        if n != packet.len() {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "short TUN write"));
        }
        Ok(())
    }

    fn raw_fd(&self) -> Option<RawFd> {
        Some(self.file.as_raw_fd())
    }

    fn mtu(&self) -> usize {
        self.mtu
    }
}
