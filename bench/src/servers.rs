//! Reference servers the harness runs in the server namespace: kernel TCP
//! (`hydra-bench kernel-server`) and smoltcp over TUN (`hydra-bench
//! smoltcp-server`), each serving discard on port 9 and echo on port 7 like
//! the replica's built-in apps.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};
use stack::phy::tun::Tun;
use stack::phy::Device;

pub const DISCARD: u16 = 9;
pub const ECHO: u16 = 7;
pub const SOURCE: u16 = 19;

/// Kernel TCP on `address` (IPv4 or IPv6): a thread per connection.
pub fn kernel(address: IpAddr) -> anyhow::Result<()> {
    let discard = TcpListener::bind((address, DISCARD))?;
    let echo = TcpListener::bind((address, ECHO))?;
    let source = TcpListener::bind((address, SOURCE))?;
    std::thread::spawn(move || serve_kernel(discard, DISCARD));
    std::thread::spawn(move || serve_kernel(source, SOURCE));
    serve_kernel(echo, ECHO);
    Ok(())
}

fn serve_kernel(listener: TcpListener, port: u16) {
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || {
            let _ = handle_kernel(stream, port);
        });
    }
}

fn handle_kernel(mut s: TcpStream, port: u16) -> std::io::Result<()> {
    s.set_nodelay(true)?;
    let mut buf = vec![0u8; 256 * 1024];
    if port == SOURCE {
        loop {
            s.write_all(&buf)?;
        }
    }
    let echo = port == ECHO;
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        if echo {
            s.write_all(&buf[..n])?;
        }
    }
}

// ---- smoltcp over TUN ----

struct TunDevice {
    tun: Tun,
    rx: Option<Vec<u8>>,
    mtu: usize,
}

struct Rx(Vec<u8>);
struct Tx<'a>(&'a mut Tun);

impl phy::RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0u8; len];
        let r = f(&mut buf);
        let _ = self.0.send(&buf);
        r
    }
}

impl phy::Device for TunDevice {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _t: smoltcp::time::Instant) -> Option<(Rx, Tx<'_>)> {
        let packet = match self.rx.take() {
            Some(p) => p,
            None => {
                let mut buf = vec![0u8; self.mtu];
                let n = self.tun.recv(&mut buf).ok()?;
                buf.truncate(n);
                buf
            }
        };
        Some((Rx(packet), Tx(&mut self.tun)))
    }

    fn transmit(&mut self, _t: smoltcp::time::Instant) -> Option<Tx<'_>> {
        Some(Tx(&mut self.tun))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = self.mtu;
        caps
    }
}

/// Listening sockets kept per port, so new connections find one.
const SPARE: usize = 4;

/// smoltcp's TCP on a TUN device: discard and echo, as fast as one thread allows.
pub fn smoltcp(tun_name: &str, address: Ipv4Addr, mtu: usize) -> anyhow::Result<()> {
    let tun = Tun::open(tun_name, mtu)?;
    // Non-blocking reads: the loop waits in poll(2) instead.
    let fd = tun.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
    let mut device = TunDevice { tun, rx: None, mtu };
    let clock = std::time::Instant::now();
    let now = || smoltcp::time::Instant::from_micros(clock.elapsed().as_micros() as i64);
    let mut iface = Interface::new(Config::new(HardwareAddress::Ip), &mut device, now());
    iface.update_ip_addrs(|a| {
        let _ = a.push(IpCidr::new(IpAddress::Ipv4(address), 32));
    });
    let mut sockets = SocketSet::new(Vec::new());
    let mut listening: Vec<(SocketHandle, u16)> = Vec::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        // Keep SPARE listeners per port; drop sockets that are done.
        for port in [DISCARD, ECHO, SOURCE] {
            let have = listening
                .iter()
                .filter(|(h, p)| {
                    *p == port && sockets.get::<tcp::Socket>(*h).state() == tcp::State::Listen
                })
                .count();
            for _ in have..SPARE {
                let mut s = tcp::Socket::new(
                    tcp::SocketBuffer::new(vec![0; 1 << 20]),
                    tcp::SocketBuffer::new(vec![0; 1 << 20]),
                );
                s.set_nagle_enabled(false);
                s.listen(port)?;
                listening.push((sockets.add(s), port));
            }
        }
        iface.poll(now(), &mut device, &mut sockets);
        listening.retain(|(h, port)| {
            let s = sockets.get_mut::<tcp::Socket>(*h);
            if *port == SOURCE && s.may_send() {
                while s.can_send() {
                    match s.send_slice(&buf) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
            }
            while s.can_recv() {
                // Echo takes only what it can send back: nothing is dropped.
                let room = if *port == ECHO {
                    s.send_capacity() - s.send_queue()
                } else {
                    buf.len()
                };
                if room == 0 {
                    break;
                }
                let take = room.min(buf.len());
                let Ok(n) = s.recv_slice(&mut buf[..take]) else {
                    break;
                };
                if n == 0 {
                    break;
                }
                if *port == ECHO {
                    let _ = s.send_slice(&buf[..n]);
                }
            }
            if !s.may_recv() && s.state() == tcp::State::CloseWait {
                s.close();
            }
            if s.state() == tcp::State::Closed {
                sockets.remove(*h);
                return false;
            }
            true
        });
        iface.poll(now(), &mut device, &mut sockets);
        let delay = iface
            .poll_delay(now(), &sockets)
            .map_or(100, |d| d.total_millis().min(100));
        let _ =
            hydra_base::poll::wait_readable(&[fd], Some(std::time::Duration::from_millis(delay)));
    }
}
