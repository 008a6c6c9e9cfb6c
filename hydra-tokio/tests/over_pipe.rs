//! The tokio integration over two stacks linked in memory (no privileges):
//! many concurrent connections on one runtime over IPv4 and IPv6,
//! byte-exact both ways, FIN as end of stream, and axum serving unchanged
//! on a Hydra listener.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hydra_tokio::{TcpListener, TcpStream};
use stack::phy::pipe;
use stack::socket::NetStack;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SERVER: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));
const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));
const SERVER6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1));
const CLIENT6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2));

/// Two dual-stack hosts on one link.
fn pair() -> (NetStack, NetStack) {
    let (a, b) = pipe::pair(1500).expect("socketpair");
    let server = NetStack::spawn(stack::Config::default(), &[SERVER, SERVER6], a).expect("server");
    let client = NetStack::spawn(stack::Config::default(), &[CLIENT, CLIENT6], b).expect("client");
    (server, client)
}

fn pattern(seed: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i * 31 + seed * 7 + i / 253) as u8)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_connections_echo_byte_exact_on_one_runtime_over_both_families() {
    let (server, client) = pair();
    // `[::]` takes IPv4 and IPv6 connections alike.
    let listener =
        TcpListener::bind(&server, SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 7)).unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    let n = s.read(&mut buf).await.unwrap();
                    if n == 0 {
                        s.shutdown().await.unwrap();
                        return;
                    }
                    s.write_all(&buf[..n]).await.unwrap();
                }
            });
        }
    });
    let mut tasks = Vec::new();
    for i in 0..40 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let to = if i % 2 == 0 { SERVER6 } else { SERVER };
            let s = TcpStream::connect(&client, SocketAddr::new(to, 7))
                .await
                .unwrap();
            assert_eq!(s.peer_addr().unwrap().ip(), to);
            let data = pattern(i, 20_000 + i * 1000);
            let (mut r, mut w) = tokio::io::split(s);
            let sent = data.clone();
            let writer = tokio::spawn(async move {
                w.write_all(&sent).await.unwrap();
                w.shutdown().await.unwrap();
            });
            let mut got = Vec::new();
            r.read_to_end(&mut got).await.unwrap();
            writer.await.unwrap();
            assert!(got == data, "connection {i}: echoed bytes differ");
        }));
    }
    let all = async {
        for t in tasks {
            t.await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(60), all)
        .await
        .expect("40 echo connections within 60 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_serves_unchanged_on_a_hydra_listener() {
    use axum::routing::get;
    let (server, client) = pair();
    let listener = TcpListener::bind(&server, SocketAddr::new(SERVER, 80)).unwrap();
    let app = axum::Router::new()
        .route("/", get(|| async { "hello from hydra\n" }))
        .route(
            "/echo/{word}",
            get(|axum::extract::Path(w): axum::extract::Path<String>| async move { w }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    for (path, want) in [
        ("/", "hello from hydra\n"),
        ("/echo/replicated", "replicated"),
    ] {
        let mut s = TcpStream::connect(&client, SocketAddr::new(SERVER, 80))
            .await
            .unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut response))
            .await
            .expect("a response within 10 s")
            .unwrap();
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(response.ends_with(want), "{path}: {response}");
    }
}
