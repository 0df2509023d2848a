//! Servers found by DNS: `[[pool.server]] address = "NAME:PORT"`, `srv`,
//! and `[resolvers]`.

use std::path::Path;
use std::time::Duration;

use edge_balance::discovery::Source as Dns;

use super::*;

fn check(text: &str) -> Result<Validated, ConfigErrors> {
    load_str(
        Source::new(Path::new("t.toml"), text.into()),
        Path::new("/etc/edge"),
    )
}

/// A route to pool `app` whose servers are `servers` (`[[pool.server]]`
/// bodies), then `tail`.
fn file(servers: &[&str], tail: &str) -> String {
    let mut t = String::from("[[route]]\npool = \"app\"\n\n[[pool]]\nname = \"app\"\n");
    for s in servers {
        t.push_str(&format!("[[pool.server]]\n{s}\n"));
    }
    t + tail
}

fn errors(text: &str) -> String {
    match check(text) {
        Ok(_) => panic!("config unexpectedly valid:\n{text}"),
        Err(e) => e.0.iter().map(|e| format!("{e}\n")).collect(),
    }
}

#[test]
fn names_srv_and_literals_side_by_side() {
    let v = check(&file(
        &[
            "address = \"10.0.0.2:8080\"\nweight = 2",
            "address = \"app.internal:8080\"\nweight = 3",
            "srv = \"_http._tcp.app.internal\"",
            "srv = \"_http._tcp.other.internal\"\nweight = 5",
        ],
        "",
    ))
    .unwrap();
    let p = &v.pools[0];
    assert_eq!(p.servers, [("10.0.0.2:8080".parse().unwrap(), 2)]);
    let found: Vec<(Dns, Option<u32>)> = p
        .discover
        .iter()
        .map(|d| (d.source.clone(), d.weight))
        .collect();
    assert_eq!(
        found,
        [
            (
                Dns::Host {
                    name: "app.internal".into(),
                    port: 8080
                },
                Some(3)
            ),
            (
                Dns::Srv {
                    name: "_http._tcp.app.internal".into()
                },
                None
            ),
            (
                Dns::Srv {
                    name: "_http._tcp.other.internal".into()
                },
                Some(5)
            ),
        ],
        "an SRV server takes the records' weights unless one is set"
    );
    // No [resolvers]: /etc/resolv.conf and the library's timing.
    assert!(v.resolvers.nameservers.is_empty());
    assert_eq!(
        v.resolvers.discovery,
        edge_balance::discovery::DiscoveryConfig::default()
    );
}

#[test]
fn resolvers_table() {
    let v = check(&file(
        &["address = \"app.internal:80\""],
        "[resolvers]\nnameservers = [\"10.0.0.53\", \"[2001:db8::53]:5353\"]\nmin_ttl = \"5s\"\nmax_ttl = \"1m\"\nhold = \"2m\"\nretry = \"1s\"\ntimeout = \"1s\"\n",
    ))
    .unwrap();
    let r = &v.resolvers;
    assert_eq!(
        r.nameservers,
        [
            "10.0.0.53:53".parse().unwrap(),
            "[2001:db8::53]:5353".parse().unwrap()
        ]
    );
    assert_eq!(
        (
            r.discovery.min_ttl,
            r.discovery.max_ttl,
            r.discovery.hold,
            r.discovery.retry,
            r.timeout
        ),
        (
            Duration::from_secs(5),
            Duration::from_secs(60),
            Duration::from_secs(120),
            Duration::from_secs(1),
            Duration::from_secs(1)
        )
    );
}

#[test]
fn bad_servers_and_resolvers_are_named_with_their_line() {
    let e = errors(&file(&["address = \"app internal:80\""], ""));
    assert!(
        e.contains("t.toml:7:")
            && e.contains("pool[0].server[0].address")
            && e.contains("NAME:PORT"),
        "{e}"
    );
    let e = errors(&file(&["address = \"app.internal:0\""], ""));
    assert!(e.contains("invalid address"), "{e}");
    let e = errors(&file(&["address = \"app.internal\""], ""));
    assert!(e.contains("invalid address"), "a name without a port: {e}");
    let e = errors(&file(&["srv = \"_http._tcp..x\""], ""));
    assert!(
        e.contains("pool[0].server[0].srv") && e.contains("invalid SRV name"),
        "{e}"
    );
    let e = errors(&file(&["address = \"a.b:1\"\nsrv = \"_x._tcp.a.b\""], ""));
    assert!(e.contains("either address or srv"), "{e}");
    let e = errors(&file(&["weight = 2"], ""));
    assert!(e.contains("needs address"), "{e}");
    let e = errors(&file(
        &["address = \"a.b:1\""],
        "[resolvers]\nnameservers = [\"ns1.example\"]\nmin_ttl = \"10m\"\nmax_ttl = \"1m\"\n",
    ));
    assert!(
        e.contains("resolvers.nameservers[0]") && e.contains("invalid name server"),
        "{e}"
    );
    assert!(
        e.contains("resolvers.min_ttl") && e.contains("max_ttl"),
        "{e}"
    );
}
