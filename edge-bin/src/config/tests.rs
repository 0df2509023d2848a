use std::path::Path;
use std::time::Duration;

use super::*;

fn check(text: &str) -> Result<Validated, ConfigErrors> {
    load_str(
        Source::new(Path::new("t.toml"), text.into()),
        Path::new("."),
    )
}

fn first_error(text: &str) -> String {
    match check(text) {
        Ok(_) => panic!("config unexpectedly valid:\n{text}"),
        Err(e) => e.0[0].to_string(),
    }
}

const GOOD: &str = r#"
[https]
listen = ["127.0.0.1:8443"]
default_certificate = "local"

[http]
listen = ["127.0.0.1:8080"]

[[certificate]]
name = "local"
names = ["localhost"]
self_signed = true

[[route]]
host = ["localhost"]
path_prefix = "/hello"
respond = { status = 200, body = "hi" }

[[route]]
pool = "app"

[[pool]]
name = "app"
[[pool.server]]
address = "127.0.0.1:9000"
weight = 2
"#;

#[test]
fn good_config_compiles() {
    let v = check(GOOD).unwrap();
    assert_eq!(v.https.listen, vec!["127.0.0.1:8443".parse().unwrap()]);
    assert_eq!(v.routes.len(), 2);
    assert_eq!(v.pools[0].servers[0].1, 2);
    assert_eq!(v.limits.max_headers, 100);
    assert_eq!(v.certificates[0].names[0].to_string(), "localhost");
}

#[test]
fn unknown_key_names_line_and_key() {
    let e = first_error(&GOOD.replace("weight = 2", "weight = 2\nwieght = 3"));
    assert!(e.starts_with("t.toml:"), "{e}");
    assert!(
        e.contains("pool[0].server[0].wieght")
            || e.contains("pool[0].wieght")
            || e.contains("wieght"),
        "{e}"
    );
    assert!(e.contains("unknown field"), "{e}");
}

#[test]
fn syntax_error_has_position() {
    let e = first_error("[https\nlisten = 1");
    assert!(e.starts_with("t.toml:1:"), "{e}");
}

#[test]
fn type_error_names_key() {
    let e = first_error("[limits]\nmax_headers = \"many\"\n");
    assert!(e.starts_with("t.toml:2:"), "{e}");
    assert!(e.contains("limits.max_headers"), "{e}");
}

#[test]
fn missing_pool_is_named() {
    let e = first_error(&GOOD.replace("pool = \"app\"", "pool = \"nope\""));
    assert!(
        e.contains("route[1].pool") && e.contains("no [[pool]] named \"nope\""),
        "{e}"
    );
    let line = GOOD.lines().position(|l| l == "pool = \"app\"").unwrap() + 1;
    assert!(e.starts_with(&format!("t.toml:{line}:")), "{e}");
}

#[test]
fn a_config_that_serves_nothing_is_refused() {
    // An empty (or truncated) file: defaults alone would bind :443 and :80
    // and answer nothing.
    for text in [
        "",
        "\n# only a comment\n",
        "[https]\nlisten = [\"127.0.0.1:8443\"]\n",
    ] {
        let e = first_error(text);
        assert!(e.contains("nothing to serve"), "{text:?}: {e}");
    }
    assert!(check("[[demo_backend]]\nlisten = \"127.0.0.1:9\"\n[https]\nlisten = []\n[http]\nlisten = []\n").is_ok());
}

#[test]
fn bad_values_are_refused() {
    let rate = format!("{GOOD}\n[client_limits]\nrequests_per_second = -1\n");
    assert!(first_error(&rate).contains("client_limits.requests_per_second"));
    let exempt = format!("{GOOD}\n[client_limits]\nexempt = [\"10.0.0.0/33\"]\n");
    assert!(first_error(&exempt).contains("client_limits.exempt[0]"));
    let zero = format!("{GOOD}\n[limits]\nbody_read_timeout = \"0s\"\n");
    assert!(first_error(&zero).contains("limits.body_read_timeout"));
    assert!(first_error(&GOOD.replace("127.0.0.1:9000", "localhost")).contains("invalid address"));
    assert!(first_error(&GOOD.replace("status = 200", "status = 700")).contains("respond.status"));
    assert!(
        first_error(&GOOD.replace(
            "default_certificate = \"local\"",
            "default_certificate = \"x\""
        ))
        .contains("https.default_certificate")
    );
    assert!(
        first_error(&GOOD.replace(
            "self_signed = true",
            "cert = \"/nonexistent.pem\"\nkey = \"/nonexistent.key\""
        ))
        .contains("cannot read certificate file")
    );
    assert!(
        first_error(&GOOD.replace("path_prefix = \"/hello\"", "path_prefix = \"hello\""))
            .contains("must start with '/'")
    );
    assert!(
        first_error(&GOOD.replace(
            "[http]\nlisten = [\"127.0.0.1:8080\"]",
            "[http]\nlisten = [\"127.0.0.1:8443\"]"
        ))
        .contains("already used")
    );
    assert!(
        first_error(&GOOD.replace(
            "[[route]]\npool = \"app\"",
            "[[route]]\npool = \"app\"\nrespond = {}"
        ))
        .contains("exactly one")
    );
    assert!(
        first_error("[limits]\nidle_timeout = \"5 parsecs\"\n").contains("limits.idle_timeout")
    );
}

pub(super) const VRRP: &str = r#"
[[vrrp]]
interface = "eth0"
vrid = 51
priority = 150
vips = ["198.18.0.100/24"]
"#;

#[test]
fn vrrp_defaults() {
    let v = check(&format!("{GOOD}{VRRP}")).unwrap();
    let r = &v.vrrp[0];
    let mut want = edge_vrrp::Config::default();
    want.interface("eth0")
        .vrid(51)
        .priority(150)
        .virtual_address("198.18.0.100/24".parse().unwrap());
    assert_eq!(r.config, want);
    assert_eq!(r.track_pools, vec!["app".to_string()]);
    assert_eq!(r.min_healthy_share, 0.5);
    assert_eq!(r.weight, 149);
}

#[test]
fn vrrp_all_keys() {
    let text = format!(
        "{GOOD}{}",
        r#"
[[vrrp]]
interface = "eth1"
vrid = 7
priority = 100
version = 2
advert_interval = "2s"
vips = ["198.18.0.100", "198.18.0.101/24"]
nopreempt = true
unicast_src = "198.18.0.1"
unicast_peers = ["198.18.0.2"]
two_node = true
use_vmac = true
vmac_interface = "vmac7"
auth_password = "s3cret"
track_pools = ["app"]
min_healthy_share = 0.75
weight = 30
"#
    );
    let v = check(&text).unwrap();
    let r = &v.vrrp[0];
    let mut want = edge_vrrp::Config::default();
    want.interface("eth1")
        .vrid(7)
        .priority(100)
        .version(edge_vrrp::Version::V2)
        .advert_interval(Duration::from_secs(2))
        .virtual_address("198.18.0.100/32".parse().unwrap())
        .virtual_address("198.18.0.101/24".parse().unwrap())
        .preempt(false)
        .unicast_source("198.18.0.1".parse().unwrap())
        .unicast_peer("198.18.0.2".parse().unwrap())
        .two_node(true)
        .use_vmac(true)
        .vmac_interface("vmac7")
        .auth_password("s3cret");
    assert_eq!(r.config, want);
    assert_eq!(r.min_healthy_share, 0.75);
    assert_eq!(r.weight, 30);
}

#[test]
fn vrrp_errors_name_file_line_and_key() {
    let cases = [
        ("vrid = 51", "vrid = 0", "vrrp[0].vrid"),
        ("vrid = 51", "vrid = 256", "vrrp[0].vrid"),
        ("priority = 150", "priority = 255", "vrrp[0].priority"),
        (
            "priority = 150",
            "priority = 150\nversion = 4",
            "vrrp[0].version",
        ),
        (
            "vips = [\"198.18.0.100/24\"]",
            "vips = [\"198.18.0.300\"]",
            "vrrp[0].vips[0]",
        ),
        ("vips = [\"198.18.0.100/24\"]", "vips = []", "vrrp[0].vips"),
        (
            "priority = 150",
            "priority = 150\nadvert_interval = \"1500ms\"\nversion = 2",
            "vrrp[0].advert_interval",
        ),
        (
            "priority = 150",
            "priority = 150\nadvert_interval = \"5ms\"",
            "vrrp[0].advert_interval",
        ),
        (
            "priority = 150",
            "priority = 150\nunicast_src = \"198.18.0.1\"",
            "vrrp[0].unicast_peers",
        ),
        (
            "priority = 150",
            "priority = 150\nunicast_peers = [\"2001:2::1\"]",
            "vrrp[0].unicast_peers",
        ),
        (
            "priority = 150",
            "priority = 150\ntrack_pools = [\"nope\"]",
            "vrrp[0].track_pools[0]",
        ),
        (
            "priority = 150",
            "priority = 150\nmin_healthy_share = 1.5",
            "vrrp[0].min_healthy_share",
        ),
        (
            "interface = \"eth0\"",
            "interface = \"an-interface-name-too-long\"",
            "vrrp[0].interface",
        ),
        (
            "priority = 150",
            "priority = 150\nvirtual_ip = 1",
            "virtual_ip",
        ),
        (
            "priority = 150",
            "priority = 150\nauth_password = \"pw\"",
            "vrrp[0].auth_password",
        ),
        (
            "priority = 150",
            "priority = 150\nversion = 2\nauth_password = \"longer-than-8\"",
            "vrrp[0].auth_password",
        ),
    ];
    for (from, to, key) in cases {
        let text = format!("{GOOD}{}", VRRP.replace(from, to));
        let e = first_error(&text);
        assert!(e.contains(key), "{to:?}: {e}");
        assert!(e.starts_with("t.toml:"), "{to:?}: {e}");
    }
    // Line numbers point into the [[vrrp]] table.
    let text = format!("{GOOD}{}", VRRP.replace("vrid = 51", "vrid = 0"));
    let e = first_error(&text);
    let line = text.lines().position(|l| l == "vrid = 0").unwrap() + 1;
    assert!(e.starts_with(&format!("t.toml:{line}:")), "{e}");
}

#[test]
fn vrrp_duplicate_vrid_on_one_interface() {
    let e = first_error(&format!("{GOOD}{VRRP}{VRRP}"));
    assert!(e.contains("vrrp[1].vrid"), "{e}");
}

#[test]
fn pool_defaults_are_the_libraries() {
    let text = GOOD.replace("weight = 2", "weight = 2\n[pool.health]\n");
    let v = check(&text).unwrap();
    let p = &v.pools[0];
    let h = p.health.as_ref().unwrap();
    let check = edge_health::CheckConfig::default();
    assert_eq!(
        (h.interval, h.timeout, h.rise, h.fall),
        (check.inter, check.timeout, check.rise, check.fall)
    );
    assert_eq!(h.path, edge_health::HttpProbe::default().path);
    let outlier = edge_health::OutlierConfig::default();
    assert_eq!(
        (
            p.outlier_consecutive_failures,
            p.outlier_ejection_time,
            p.outlier_max_ejection_percent
        ),
        (
            outlier.consecutive_failures,
            outlier.base_ejection_time,
            outlier.max_ejection_percent
        )
    );
    // What edge-health gets back is its own default, bar the initial state.
    let cfg = p.health_config();
    assert_eq!(cfg.outlier, outlier);
}

/// The config module is a leaf: it names no other module of the binary but
/// `crate::certs`, which names nothing of the config (no import circle).
#[test]
fn config_imports_no_module_that_imports_it() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let allowed = ["crate::config", "crate::certs"];
    for entry in std::fs::read_dir(dir.join("config")).unwrap() {
        let path = entry.unwrap().path();
        if path.ends_with("tests.rs") {
            continue; // this test's own text
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let code = text.lines().enumerate();
        for (i, line) in code.filter(|(_, l)| !l.trim_start().starts_with("//")) {
            let mut rest = line;
            while let Some(at) = rest.find("crate::") {
                let tail = &rest[at..];
                let ok = allowed.iter().any(|a| tail.starts_with(a));
                assert!(ok, "{}:{}: {line}", path.display(), i + 1);
                rest = &tail["crate::".len()..];
            }
        }
    }
    let certs = std::fs::read_to_string(dir.join("certs.rs")).unwrap();
    let mut code = certs.lines().filter(|l| !l.trim_start().starts_with("//"));
    assert!(
        !code.any(|l| l.contains("crate::")),
        "certs.rs imports from the crate"
    );
}

/// `[[route]]`, `[[passthrough]]`, `[[certificate]]` and `[acme]` names are
/// edge-sni's `HostPattern`: `*` is one whole left-most label, as in TLS.
#[test]
fn host_wildcards_cover_one_label_everywhere() {
    let text = GOOD
        .replace("host = [\"localhost\"]", "host = [\"*.Example.com\"]")
        .replace(
            "names = [\"localhost\"]",
            "names = [\"localhost\", \"*.example.com\"]",
        )
        + "[[passthrough]]\nsni = [\"*.pt.test\"]\npool = \"app\"\n";
    let v = check(&text).unwrap();
    let route = &v.routes[0].hosts[0];
    assert_eq!(route.to_string(), "*.example.com");
    assert!(route.matches("a.example.com"));
    assert!(
        !route.matches("a.b.example.com"),
        "was matched at any depth"
    );
    assert!(!route.matches("example.com"));
    let sni = &v.passthrough[0].sni[0];
    assert!(sni.matches("x.pt.test") && !sni.matches("y.x.pt.test"));
    assert!(v.certificates[0].names[1].matches("www.example.com"));
    // Routes and certificates may also name an IP address (no SNI carries one).
    let text = GOOD
        .replace("host = [\"localhost\"]", "host = [\"127.0.0.1\"]")
        .replace(
            "names = [\"localhost\"]",
            "names = [\"localhost\", \"127.0.0.1\"]",
        );
    let v = check(&text).unwrap();
    assert!(v.routes[0].hosts[0].matches("127.0.0.1"));
    assert_eq!(v.certificates[0].names[1].to_string(), "127.0.0.1");
    assert!(v.warnings.is_empty(), "{:?}", v.warnings);
}

#[test]
fn bad_host_names_say_why() {
    let cases = [
        ("a.*.example.com", "route[0].host[0]", "'*' is only allowed"),
        ("-a.example.com", "route[0].host[0]", "hyphen"),
        ("a..example.com", "route[0].host[0]", "empty label"),
    ];
    for (host, key, why) in cases {
        let e = first_error(&GOOD.replace("host = [\"localhost\"]", &format!("host = [{host:?}]")));
        assert!(e.contains(key) && e.contains(why), "{host}: {e}");
        assert!(e.contains(&format!("invalid host name {host:?}")), "{e}");
        let line = GOOD.lines().position(|l| l.starts_with("host = ")).unwrap() + 1;
        assert!(e.starts_with(&format!("t.toml:{line}:")), "{e}");
    }
    let pt = "[[passthrough]]\nsni = [\"10.0.0.1\"]\npool = \"app\"\n";
    let e = first_error(&format!("{GOOD}{pt}"));
    assert!(e.contains("passthrough[0].sni[0]"), "{e}");
    assert!(e.contains("an IP address is not a host name"), "{e}");
    let e = first_error(&GOOD.replace("names = [\"localhost\"]", "names = [\"*\"]"));
    assert!(e.contains("certificate[0].names[0]"), "{e}");
    let acme = "[acme]\nstorage = \"/tmp/acme\"\ncertificates = [[\"*.example.com\"]]\n";
    let e = first_error(&format!("{GOOD}{acme}"));
    assert!(
        e.contains("acme.certificates[0]") && e.contains("wildcard"),
        "{e}"
    );
}

/// What `edge check` warns about: a terminated route's host that no
/// certificate name covers.
#[test]
fn route_host_without_a_certificate_is_a_warning() {
    let with_hosts = |hosts: &str| {
        GOOD.replace("host = [\"localhost\"]", &format!("host = [{hosts}]"))
            .replace(
                "names = [\"localhost\"]",
                "names = [\"localhost\", \"*.example.com\"]",
            )
    };
    let v = check(&with_hosts(
        "\"localhost\", \"a.example.com\", \"*.example.com\"",
    ))
    .unwrap();
    assert!(v.warnings.is_empty(), "{:?}", v.warnings);

    let text = with_hosts("\"a.example.com\", \"a.b.example.com\", \"other.test\"");
    let v = check(&text).unwrap();
    let w: Vec<String> = v.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(w.len(), 2, "{w:?}");
    let line = text.lines().position(|l| l.starts_with("host = ")).unwrap() + 1;
    assert!(w[0].starts_with(&format!("t.toml:{line}:")), "{}", w[0]);
    assert!(w[0].contains("route[0].host[1]"), "{}", w[0]);
    assert!(w[0].contains("\"a.b.example.com\""), "{}", w[0]);
    assert!(
        w[0].contains("\"*.example.com\" covers one label only"),
        "{}",
        w[0]
    );
    assert!(w[1].contains("route[0].host[2]") && w[1].contains("other.test"));

    // An [acme] certificate covers its names too.
    let acme = "[acme]\nstorage = \"/tmp/acme\"\ncertificates = [[\"other.test\"]]\n";
    let v = check(&format!("{}{acme}", with_hosts("\"other.test\""))).unwrap();
    assert!(v.warnings.is_empty(), "{:?}", v.warnings);
    // Without an HTTPS listener no route is terminated.
    let text = with_hosts("\"other.test\"").replace("listen = [\"127.0.0.1:8443\"]", "listen = []");
    assert!(check(&text).unwrap().warnings.is_empty());
}
