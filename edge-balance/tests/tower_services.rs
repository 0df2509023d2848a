//! The tower services over real TCP connections (passthrough pools) and
//! HTTP requests.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use edge_balance::{
    Balance, BalanceLayer, Balancer, BalancerConfig, EndpointSet, Error, HashKey, HashSource,
    MaglevConfig, NoEndpoint, PeakEwmaConfig, Policy, hash_bytes,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tower::{Layer, Service, ServiceExt, service_fn};

const WAIT: Duration = Duration::from_secs(10);

/// A backend that greets with its name, then echoes.
async fn backend(name: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let _ = s.write_all(name.as_bytes()).await;
                let mut buf = [0u8; 256];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// A front listener relaying each accepted connection to a balanced
/// backend through `BalanceLayer` (endpoints are backend addresses).
async fn front(balancer: Balancer<&'static str, SocketAddr>) -> SocketAddr {
    let relay = service_fn(
        |(backend, (mut client, _peer)): (SocketAddr, (TcpStream, SocketAddr))| async move {
            let mut upstream = TcpStream::connect(backend).await?;
            tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
            Ok::<_, io::Error>(())
        },
    );
    let svc = BalanceLayer::new(balancer).layer(relay);
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind front");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((s, peer)) = l.accept().await {
            let svc = svc.clone();
            tokio::spawn(async move {
                // NoEndpoint: dropping the client's socket closes it.
                let _ = svc.oneshot((s, peer)).await;
            });
        }
    });
    addr
}

async fn connect_from(front: SocketAddr, ip: Ipv4Addr) -> (TcpStream, String) {
    let sock = TcpSocket::new_v4().expect("socket");
    sock.bind(SocketAddr::new(IpAddr::V4(ip), 0))
        .expect("bind client");
    let mut s = tokio::time::timeout(WAIT, sock.connect(front))
        .await
        .expect("connect in time")
        .expect("connect");
    let mut name = [0u8; 1];
    tokio::time::timeout(WAIT, s.read_exact(&mut name))
        .await
        .expect("greeting in time")
        .expect("greeting");
    (s, String::from_utf8_lossy(&name).into_owned())
}

async fn wait_in_flight(set: &EndpointSet<&'static str, SocketAddr>, key: &'static str, n: u64) {
    let stats = set.stats(&key).expect("endpoint");
    tokio::time::timeout(WAIT, async {
        while stats.in_flight() != n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{key}: {} in flight, expected {n}", stats.in_flight()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_least_connections_spreads_open_connections_and_drains() {
    let set = EndpointSet::new();
    for name in ["a", "b", "c"] {
        set.insert(name, backend(name).await, 1);
    }
    let lb = Balancer::new(set.clone(), Policy::LeastRequest, BalancerConfig::default());
    let front = front(lb).await;

    // Six long-lived connections: least-connections gives two to each.
    let mut conns = Vec::new();
    for _ in 0..6 {
        conns.push(connect_from(front, Ipv4Addr::LOCALHOST).await);
    }
    let mut per: HashMap<String, usize> = HashMap::new();
    for (_, name) in &conns {
        *per.entry(name.clone()).or_default() += 1;
    }
    assert_eq!(
        per.values().copied().collect::<Vec<_>>(),
        vec![2, 2, 2],
        "{per:?}"
    );
    for k in ["a", "b", "c"] {
        wait_in_flight(&set, k, 2).await;
    }

    // Drain a: its open connections keep working, new ones avoid it.
    set.drain(&"a");
    for (s, name) in conns.iter_mut().filter(|(_, n)| n == "a") {
        s.write_all(b"ping").await.expect("write");
        let mut buf = [0u8; 4];
        tokio::time::timeout(WAIT, s.read_exact(&mut buf))
            .await
            .expect("echo in time")
            .expect("echo");
        assert_eq!(&buf, b"ping", "drained {name} still relays");
    }
    for _ in 0..4 {
        let (s, name) = connect_from(front, Ipv4Addr::LOCALHOST).await;
        assert_ne!(name, "a");
        conns.push((s, name));
    }
    // Closing the clients ends the in-flight count: a can be removed.
    conns.retain(|(_, n)| n != "a");
    wait_in_flight(&set, "a", 0).await;
    assert!(set.remove(&"a"));
    drop(conns);
    wait_in_flight(&set, "b", 0).await;
    wait_in_flight(&set, "c", 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_maglev_keeps_each_client_ip_on_one_backend() {
    let set = EndpointSet::new();
    for name in ["a", "b", "c", "d"] {
        set.insert(name, backend(name).await, 1);
    }
    let lb = Balancer::new(
        set.clone(),
        Policy::Maglev(MaglevConfig::default()),
        BalancerConfig::default(),
    );
    let front = front(lb).await;
    let mut first: HashMap<u8, String> = HashMap::new();
    for round in 0..3 {
        for host in 2..18u8 {
            let (_s, name) = connect_from(front, Ipv4Addr::new(127, 0, 0, host)).await;
            let seen = first.entry(host).or_insert_with(|| name.clone());
            assert_eq!(*seen, name, "127.0.0.{host} moved in round {round}");
        }
    }
    let distinct: std::collections::HashSet<_> = first.values().collect();
    assert!(distinct.len() >= 3, "16 client IPs on {distinct:?}");

    // A backend going down moves only its own clients.
    let victim = first.get(&2).cloned().expect("host 2");
    let victim: &'static str = ["a", "b", "c", "d"]
        .into_iter()
        .find(|n| *n == victim)
        .expect("name");
    set.set_healthy(&victim, false);
    for host in 2..18u8 {
        let (_s, name) = connect_from(front, Ipv4Addr::new(127, 0, 0, host)).await;
        let before = &first[&host];
        if before == victim {
            assert_ne!(name, victim);
        } else {
            assert_eq!(
                &name, before,
                "127.0.0.{host} moved though its backend is up"
            );
        }
    }
}

#[tokio::test]
async fn passthrough_without_endpoints_closes_the_client() {
    let set: EndpointSet<&'static str, SocketAddr> = EndpointSet::new();
    set.insert("a", backend("a").await, 1);
    set.set_healthy(&"a", false);
    let front = front(Balancer::new(set, Policy::P2c, BalancerConfig::default())).await;
    let mut s = TcpStream::connect(front).await.expect("connect");
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(WAIT, s.read(&mut buf))
        .await
        .expect("closed in time");
    assert!(
        matches!(n, Ok(0) | Err(_)),
        "no backend, yet the client got {n:?}"
    );
}

fn http_endpoint(
    name: &'static str,
) -> impl Service<http::Request<()>, Response = String, Error = Infallible, Future: Send> + Clone {
    service_fn(move |req: http::Request<()>| async move {
        Ok::<_, Infallible>(format!("{name}{}", req.uri()))
    })
}

#[tokio::test]
async fn http_cookie_stickiness_and_typed_no_endpoint() {
    let set = EndpointSet::new();
    for name in ["a", "b", "c"] {
        set.insert(name, http_endpoint(name), 1);
    }
    let policy = Policy::Maglev(MaglevConfig::default().hash(HashSource::Cookie("SRV".into())));
    let mut lb = Balance::new(Balancer::new(
        set.clone(),
        policy,
        BalancerConfig::default(),
    ));
    let mut seen: HashMap<String, String> = HashMap::new();
    for round in 0..3 {
        for sid in 0..30 {
            let req = http::Request::builder()
                .uri("/x")
                .header("cookie", format!("theme=dark; SRV=s{sid}"))
                .body(())
                .expect("request");
            let rsp = lb
                .ready()
                .await
                .expect("ready")
                .call(req)
                .await
                .expect("response");
            let was = seen.entry(format!("s{sid}")).or_insert_with(|| rsp.clone());
            assert_eq!(*was, rsp, "session s{sid} moved in round {round}");
        }
    }
    assert!(
        seen.values()
            .collect::<std::collections::HashSet<_>>()
            .len()
            == 3
    );

    // A new session: edge-bin picks the cookie value and passes its hash.
    let mut req = http::Request::new(());
    req.extensions_mut().insert(HashKey(hash_bytes(b"s7")));
    let rsp = lb
        .ready()
        .await
        .expect("ready")
        .call(req)
        .await
        .expect("response");
    assert_eq!(
        Some(&rsp),
        seen.get("s7").map(|s| s.replace("/x", "/")).as_ref()
    );

    for name in ["a", "b", "c"] {
        set.set_healthy(&name, false);
    }
    let err = lb
        .ready()
        .await
        .expect("ready")
        .call(http::Request::new(()))
        .await
        .err();
    assert!(
        matches!(
            err,
            Some(Error::NoEndpoint(NoEndpoint::Unavailable { down: 3, .. }))
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn http_endpoint_errors_are_counted_and_returned() {
    let set = EndpointSet::new();
    let failing = service_fn(|_: http::Request<()>| async {
        Err::<String, _>(io::Error::other("backend reset"))
    });
    set.insert("only", failing, 1);
    let mut lb = Balance::new(Balancer::new(
        set.clone(),
        Policy::PeakEwma(PeakEwmaConfig::default()),
        BalancerConfig::default(),
    ));
    let err = lb
        .ready()
        .await
        .expect("ready")
        .call(http::Request::new(()))
        .await
        .err();
    assert!(
        matches!(&err, Some(Error::Endpoint(e)) if e.to_string() == "backend reset"),
        "{err:?}"
    );
    let s = set.stats(&"only").expect("stats").snapshot();
    assert_eq!((s.picks, s.in_flight, s.errors, s.successes), (1, 0, 1, 0));
}
