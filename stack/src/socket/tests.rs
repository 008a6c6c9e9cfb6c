//! The socket API over an in-memory link: two stacks, real threads.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr};
use std::time::Duration;

use super::*;
use crate::iface::Event;
use crate::phy::pipe;

const SERVER: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));
const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));
const SERVER6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1));
const CLIENT6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2));

fn pair() -> (NetStack, NetStack) {
    let (a, b) = pipe::pair(1500).expect("socketpair");
    let server = NetStack::spawn(Config::default(), &[SERVER], a).expect("server stack");
    let client = NetStack::spawn(Config::default(), &[CLIENT], b).expect("client stack");
    (server, client)
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[test]
fn echo_round_trip_and_orderly_close() {
    let (server, client) = pair();
    let listener = TcpListener::bind(&server, SocketAddr::new(SERVER, 7)).unwrap();
    let echo = std::thread::spawn(move || {
        let (mut s, peer) = listener.accept().unwrap();
        assert_eq!(peer, s.key().remote);
        let mut buf = [0u8; 4096];
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            s.write_all(&buf[..n]).unwrap();
        }
        s.shutdown(Shutdown::Write).unwrap();
    });
    let mut c = TcpStream::connect(&client, SocketAddr::new(SERVER, 7)).unwrap();
    c.set_nodelay(true).unwrap();
    let data = pattern(300_000);
    let writer = {
        let mut w = c.try_clone().unwrap();
        let data = data.clone();
        std::thread::spawn(move || {
            w.write_all(&data).unwrap();
            w.shutdown(Shutdown::Write).unwrap();
        })
    };
    let mut got = Vec::new();
    c.read_to_end(&mut got).unwrap();
    writer.join().unwrap();
    echo.join().unwrap();
    assert_eq!(got.len(), data.len());
    assert!(got == data, "echoed bytes differ");
}

#[test]
fn bulk_transfer_is_byte_exact() {
    let (server, client) = pair();
    let listener =
        TcpListener::bind(&server, SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 19)).unwrap();
    let data = pattern(8 << 20);
    let sent = data.clone();
    let source = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.write_all(&sent).unwrap();
    });
    let mut c = TcpStream::connect(&client, SocketAddr::new(SERVER, 19)).unwrap();
    let mut got = Vec::new();
    c.read_to_end(&mut got).unwrap();
    source.join().unwrap();
    assert_eq!(got.len(), data.len());
    assert!(got == data);
}

#[test]
fn connect_to_closed_port_is_refused() {
    let (_server, client) = pair();
    let err = TcpStream::connect(&client, SocketAddr::new(SERVER, 1)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
}

#[test]
fn connect_to_silent_host_times_out() {
    // The other end of the link exists but nobody answers on it.
    let (a, _silent) = pipe::pair(1500).unwrap();
    let client = NetStack::spawn(Config::default(), &[CLIENT], a).unwrap();
    let nowhere = SocketAddr::new(SERVER, 80);
    let t = std::time::Instant::now();
    let err = TcpStream::connect_timeout(&client, nowhere, Duration::from_millis(200)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut);
    assert!(t.elapsed() >= Duration::from_millis(200));
}

#[test]
fn read_timeout_and_nonblocking_report_would_block() {
    let (server, client) = pair();
    let listener = TcpListener::bind(&server, SocketAddr::new(SERVER, 80)).unwrap();
    let c = TcpStream::connect(&client, SocketAddr::new(SERVER, 80)).unwrap();
    let (_s, _) = listener.accept().unwrap();
    c.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(
        (&c).read(&mut buf).unwrap_err().kind(),
        ErrorKind::WouldBlock
    );
    c.set_nonblocking(true).unwrap();
    assert_eq!(
        (&c).read(&mut buf).unwrap_err().kind(),
        ErrorKind::WouldBlock
    );
    assert_eq!(
        c.set_read_timeout(Some(Duration::ZERO)).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
}

#[test]
fn dropping_with_unread_data_resets_the_peer() {
    let (server, client) = pair();
    let listener = TcpListener::bind(&server, SocketAddr::new(SERVER, 80)).unwrap();
    let mut c = TcpStream::connect(&client, SocketAddr::new(SERVER, 80)).unwrap();
    let (mut s, _) = listener.accept().unwrap();
    c.write_all(b"never read").unwrap();
    // Wait until the bytes are at the server, then drop it unread: RST.
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut one = [0u8; 1];
    s.read_exact(&mut one).unwrap();
    drop(s);
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(
        c.read(&mut buf).unwrap_err().kind(),
        ErrorKind::ConnectionReset
    );
}

#[test]
fn poller_reports_acceptable_and_readable() {
    let (server, client) = pair();
    let poller = Poller::new(&server);
    let listener = TcpListener::bind(&server, SocketAddr::new(SERVER, 80)).unwrap();
    listener.set_nonblocking(true).unwrap();
    assert_eq!(listener.accept().unwrap_err().kind(), ErrorKind::WouldBlock);
    let mut c = TcpStream::connect(&client, SocketAddr::new(SERVER, 80)).unwrap();
    let mut events = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !events.iter().any(|e| matches!(e, Event::Acceptable { .. })) {
        assert!(std::time::Instant::now() < deadline, "no Acceptable event");
        poller.wait(&mut events, Some(Duration::from_millis(100)));
    }
    let (s, _) = listener.accept().unwrap();
    s.set_nonblocking(true).unwrap();
    c.write_all(b"ping").unwrap();
    events.clear();
    while !events.contains(&Event::Readable(s.key())) {
        assert!(std::time::Instant::now() < deadline, "no Readable event");
        poller.wait(&mut events, Some(Duration::from_millis(100)));
    }
    let mut buf = [0u8; 4];
    assert_eq!((&s).read(&mut buf).unwrap(), 4);
    assert_eq!(&buf, b"ping");
}

#[test]
fn stopped_stack_fails_handles_cleanly() {
    let (server, client) = pair();
    let listener = TcpListener::bind(&server, SocketAddr::new(SERVER, 80)).unwrap();
    let c = TcpStream::connect(&client, SocketAddr::new(SERVER, 80)).unwrap();
    let _s = listener.accept().unwrap();
    client.stop();
    let mut buf = [0u8; 4];
    assert_eq!(
        (&c).read(&mut buf).unwrap_err().kind(),
        ErrorKind::NotConnected
    );
}

/// A passive listener on a stack that is not replicated: the state store
/// works, reads free their bytes at once (300 KB through a 256 KiB
/// buffer), and a non-passive connection refuses the store clearly.
#[test]
fn passive_listener_alone_keeps_state_and_streams() {
    let (server, client) = pair();
    let listener = TcpListener::bind_passive(&server, SocketAddr::new(SERVER, 7)).unwrap();
    let echo = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        assert_eq!(s.state_lookup("n").unwrap(), None);
        s.state_allocate("n", 8).unwrap();
        let mut total = 0u64;
        let mut buf = [0u8; 4096];
        loop {
            let n = (&s).read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            let step = s.atomic().unwrap();
            total += n as u64;
            s.state_push("n", 0, &total.to_be_bytes()).unwrap();
            (&s).write_all(&buf[..n]).unwrap();
            drop(step);
        }
        let err = s.state_push("n", 4, &[0u8; 8]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert_eq!(
            s.state_lookup("missing").unwrap(),
            None,
            "an unknown block is absent"
        );
        let saved = s.state_lookup("n").unwrap().unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        u64::from_be_bytes(saved.try_into().unwrap())
    });
    let mut c = TcpStream::connect(&client, SocketAddr::new(SERVER, 7)).unwrap();
    let err = c.state_put("x", b"y").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    let data = pattern(300_000);
    let writer = {
        let mut w = c.try_clone().unwrap();
        let data = data.clone();
        std::thread::spawn(move || {
            w.write_all(&data).unwrap();
            w.shutdown(Shutdown::Write).unwrap();
        })
    };
    let mut got = Vec::new();
    c.read_to_end(&mut got).unwrap();
    writer.join().unwrap();
    assert_eq!(echo.join().unwrap(), data.len() as u64);
    assert!(got == data, "echoed bytes differ");
}

#[test]
fn an_ordered_listener_gives_every_connections_bytes_to_one_thread() {
    let (server, client) = pair();
    let mut listener =
        OrderedListener::bind(&server, SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 6379))
            .unwrap();
    // A stack has one ordered listener.
    let again = OrderedListener::bind(&server, SocketAddr::new(SERVER, 6380));
    assert_eq!(again.err().map(|e| e.kind()), Some(ErrorKind::AddrInUse));
    let clients: Vec<_> = (0..3u8)
        .map(|i| {
            let client = client.clone();
            std::thread::spawn(move || {
                let mut c = TcpStream::connect(&client, SocketAddr::new(SERVER, 6379)).unwrap();
                let data = vec![b'a' + i; 10_000 * (usize::from(i) + 1)];
                c.write_all(&data).unwrap();
                c.shutdown(Shutdown::Write).unwrap();
                let mut back = Vec::new();
                c.read_to_end(&mut back).unwrap();
                back
            })
        })
        .collect();
    let mut seen: std::collections::HashMap<crate::ConnKey, (bool, usize, bool)> =
        Default::default();
    let mut fins = 0;
    while fins < 3 {
        let ev = listener
            .next(Some(Duration::from_secs(10)))
            .unwrap()
            .expect("an event within 10 s");
        match ev {
            OrderedEvent::Opened(k) => {
                assert!(seen.insert(k, (true, 0, false)).is_none(), "opened twice");
            }
            OrderedEvent::Data(k, bytes) => {
                let e = seen.get_mut(&k).expect("data before Opened");
                assert!(!e.2, "data after FIN");
                assert!(!bytes.is_empty());
                e.1 += bytes.len();
                // Echo the count back at the end: one write per event here.
                listener.write_all(k, &bytes[..1]).unwrap();
            }
            OrderedEvent::PeerFin(k) => {
                let e = seen.get_mut(&k).expect("FIN before Opened");
                e.2 = true;
                fins += 1;
                listener.shutdown(k).unwrap();
            }
            OrderedEvent::Closed(k) => panic!("{k:?} reset"),
        }
    }
    let mut totals: Vec<usize> = seen.values().map(|e| e.1).collect();
    totals.sort_unstable();
    assert_eq!(totals, vec![10_000, 20_000, 30_000]);
    for c in clients {
        let back = c.join().unwrap();
        assert!(!back.is_empty() && back.iter().all(|b| *b == back[0]));
    }
}

/// Two dual-stack hosts on one link.
fn dual_pair() -> (NetStack, NetStack) {
    let (a, b) = pipe::pair(1500).expect("socketpair");
    let server = NetStack::spawn(Config::default(), &[SERVER, SERVER6], a).expect("server");
    let client = NetStack::spawn(Config::default(), &[CLIENT, CLIENT6], b).expect("client");
    (server, client)
}

/// Connect to `to`, send `data`, and return what the echo sent back and
/// the local address the connection had.
fn echo_through(client: &NetStack, to: SocketAddr, data: &[u8]) -> (Vec<u8>, SocketAddr) {
    let mut c = TcpStream::connect(client, to).unwrap();
    c.write_all(data).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let mut back = Vec::new();
    c.read_to_end(&mut back).unwrap();
    (back, c.local_addr().unwrap())
}

#[test]
fn an_ipv6_listener_on_the_wildcard_takes_both_families_as_linux_does() {
    let (server, client) = dual_pair();
    let listener =
        TcpListener::bind(&server, SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 7)).unwrap();
    let echo = std::thread::spawn(move || {
        let mut peers = Vec::new();
        for _ in 0..2 {
            let (mut s, peer) = listener.accept().unwrap();
            assert_eq!(s.peer_addr().unwrap(), peer);
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).unwrap();
            s.write_all(&buf).unwrap();
            peers.push((peer, s.local_addr().unwrap()));
        }
        peers
    });
    let data = pattern(300_000);
    let (back6, from6) = echo_through(&client, SocketAddr::new(SERVER6, 7), &data);
    assert_eq!(back6, data);
    assert_eq!(
        from6.ip(),
        CLIENT6,
        "a v6 connection starts from the v6 address"
    );
    let (back4, from4) = echo_through(&client, SocketAddr::new(SERVER, 7), b"four");
    assert_eq!(back4, b"four");
    assert_eq!(from4.ip(), CLIENT);
    let peers = echo.join().unwrap();
    assert_eq!(peers[0], (from6, SocketAddr::new(SERVER6, 7)));
    // An IPv4 client of `[::]` is reported with its IPv4 address.
    assert_eq!(peers[1], (from4, SocketAddr::new(SERVER, 7)));
}

#[test]
fn an_ipv4_wildcard_does_not_take_ipv6_and_a_missing_family_is_an_error() {
    let (server, client) = dual_pair();
    let _v4_only =
        TcpListener::bind(&server, SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 9)).unwrap();
    let err = TcpStream::connect(&client, SocketAddr::new(SERVER6, 9)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);

    let (a, _b) = pipe::pair(1500).expect("socketpair");
    let v4_host = NetStack::spawn(Config::default(), &[CLIENT], a).unwrap();
    let err = TcpStream::connect(&v4_host, SocketAddr::new(SERVER6, 9)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AddrNotAvailable);
    assert!(err.to_string().contains("no IPv6 address"), "{err}");
    let (c, _d) = pipe::pair(1500).expect("socketpair");
    let err = NetStack::spawn(Config::default(), &[], c).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}
