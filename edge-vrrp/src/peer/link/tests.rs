//! Two links on loopback: messages both ways, the snapshot on every new
//! connection, reconnection, and a peer with another certificate refused.

use std::sync::Mutex;

use super::*;
use crate::peer::{PeerSender, channel, parse_credentials};

#[derive(Debug, Default)]
struct Node {
    name: &'static str,
    got: Mutex<Vec<String>>,
}

impl PeerHandler<String> for Node {
    fn on_connect(&self) -> Vec<String> {
        vec![format!("snapshot from {}", self.name)]
    }
    fn on_message(&self, msg: String) {
        self.got.lock().unwrap().push(msg);
    }
}

fn credentials() -> String {
    let c = rcgen::generate_simple_self_signed(vec!["edge-peer".into()]).unwrap();
    format!("{}{}", c.cert.pem(), c.signing_key.serialize_pem())
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Starts a node listening on `listen`, dialing `peer`, presenting `own`
/// and pinning `pin`.
async fn node(
    name: &'static str,
    listen: SocketAddr,
    peer: SocketAddr,
    own: &str,
    pin: &str,
) -> (PeerLink, PeerSender<String>, Arc<Node>) {
    let (chain, key) = parse_credentials(own.as_bytes()).unwrap();
    let (pinned, _) = parse_credentials(pin.as_bytes()).unwrap();
    let mut c = PeerConfig::new(listen, peer, chain, key, pinned);
    c.keepalive = Duration::from_millis(100);
    c.timeout = Duration::from_millis(1000);
    c.backoff = (Duration::from_millis(20), Duration::from_millis(100));
    let (tx, outbox) = channel(16);
    let h = Arc::new(Node {
        name,
        ..Node::default()
    });
    let link = PeerLink::start(c, outbox, h.clone()).await.unwrap();
    (link, tx, h)
}

async fn wait(what: impl Fn() -> bool) -> bool {
    for _ in 0..200 {
        if what() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

fn got(n: &Node) -> Vec<String> {
    n.got.lock().unwrap().clone()
}

#[tokio::test]
async fn messages_flow_both_ways_and_the_snapshot_follows_each_reconnect() {
    let creds = credentials();
    let (a_addr, b_addr) = (free_addr(), free_addr());
    let (a, a_tx, a_h) = node("a", a_addr, b_addr, &creds, &creds).await;
    let (b, b_tx, b_h) = node("b", b_addr, a_addr, &creds, &creds).await;
    assert!(wait(|| a.is_up() && b.is_up()).await);
    assert!(
        wait(|| got(&a_h) == ["snapshot from b"]).await,
        "{:?}",
        got(&a_h)
    );
    assert!(
        wait(|| got(&b_h) == ["snapshot from a"]).await,
        "{:?}",
        got(&b_h)
    );
    a_tx.send("drain x".into());
    b_tx.send("weight y".into());
    assert!(wait(|| got(&b_h).last().map(String::as_str) == Some("drain x")).await);
    assert!(wait(|| got(&a_h).last().map(String::as_str) == Some("weight y")).await);

    // b goes away: a sees the link down (pings unanswered), and when b
    // comes back both ends send their snapshots again.
    drop(b);
    assert!(wait(|| !a.is_up()).await, "a still thinks the link is up");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (b2, _b2_tx, b2_h) = node("b", b_addr, a_addr, &creds, &creds).await;
    assert!(wait(|| b2.is_up()).await);
    assert!(
        wait(|| got(&b2_h) == ["snapshot from a"]).await,
        "{:?}",
        got(&b2_h)
    );
    assert!(wait(|| got(&a_h).iter().filter(|m| *m == "snapshot from b").count() == 2).await);
}

#[tokio::test]
async fn a_peer_with_another_certificate_is_refused_and_nothing_is_applied() {
    let (ours, theirs) = (credentials(), credentials());
    let (a_addr, b_addr) = (free_addr(), free_addr());
    let (a, a_tx, a_h) = node("a", a_addr, b_addr, &ours, &ours).await;
    // b pins a's certificate but presents its own: a refuses it, and b
    // refuses a in turn only if it pins something else; both directions
    // must fail on a's side of the check.
    let (b, b_tx, b_h) = node("b", b_addr, a_addr, &theirs, &ours).await;
    a_tx.send("from a".into());
    b_tx.send("from b".into());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!a.is_up() && !b.is_up());
    assert!(got(&a_h).is_empty(), "{:?}", got(&a_h));
    assert!(got(&b_h).is_empty(), "{:?}", got(&b_h));
}
