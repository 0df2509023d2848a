//! edge's real `/metrics` checked by Prometheus's own `promtool check
//! metrics` (Debian's `prometheus` package), and every metric name that the
//! alert rules (`deploy/prometheus`) and the Grafana dashboard
//! (`deploy/grafana`) use checked against what edge exports. edge runs in
//! a network-lab host of its own (root: VRRP needs an interface), with
//! pools, health checks, a passthrough, a file sink, VRRP, an anycast
//! address and an ACME manager, and real traffic, so every family has samples.

mod common;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// How long the test waits for edge's metrics to show the traffic.
const LIMIT: Duration = Duration::from_secs(30);

/// The workspace root (the deploy files are read from there).
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// `promtool check metrics` on `text`: what it said (stdout and stderr)
/// when it found problems, `None` when it found none.
fn promtool_check_metrics(text: &str) -> Option<String> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("promtool: {e} (Debian's prometheus package; .ci/test installs it)")
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (!out.status.success() || !said.trim().is_empty())
        .then(|| format!("exit {:?}: {said}", out.status.code()))
}

/// The metric name of a sample line.
fn sample_name(line: &str) -> &str {
    line.split(['{', ' ']).next().unwrap_or_default()
}

/// Whether `sample` belongs to family `family` of type `kind`.
fn belongs(sample: &str, family: &str, kind: &str) -> bool {
    sample == family
        || (kind == "histogram"
            && ["_bucket", "_sum", "_count"]
                .iter()
                .any(|s| sample.strip_suffix(s) == Some(family)))
}

/// Problems of structure promtool lets pass: every family's samples must
/// follow its own `# TYPE` line as one group, and every family must have
/// samples (here, where the config and traffic give each one some).
fn structure_problems(text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut current: Option<(&str, &str, usize)> = None;
    let finish = |cur: Option<(&str, &str, usize)>, problems: &mut Vec<String>| {
        if let Some((family, _, 0)) = cur {
            problems.push(format!("{family}: no samples after its TYPE line"));
        }
    };
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            finish(current, &mut problems);
            let mut w = rest.split_whitespace();
            current = Some((
                w.next().unwrap_or_default(),
                w.next().unwrap_or_default(),
                0,
            ));
        } else if !line.starts_with('#') && !line.is_empty() {
            let name = sample_name(line);
            match &mut current {
                Some((family, kind, n)) if belongs(name, family, kind) => *n += 1,
                Some((family, _, _)) => {
                    problems.push(format!("{name}: a sample inside family {family}"));
                }
                None => problems.push(format!("{name}: a sample before any TYPE line")),
            }
        }
    }
    finish(current, &mut problems);
    problems
}

/// Every name in the exposition: families and sample names.
fn exported_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| match l.strip_prefix("# TYPE ") {
            Some(rest) => rest.split_whitespace().next(),
            None => (!l.starts_with('#') && !l.is_empty()).then(|| sample_name(l)),
        })
        .map(str::to_owned)
        .collect()
}

/// The `edge_...` metric names in `text` (a word starting with `edge_`).
fn metric_names(text: &str) -> BTreeSet<String> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut names = BTreeSet::new();
    for (i, _) in text.match_indices("edge_") {
        if text[..i].chars().next_back().is_some_and(word) {
            continue;
        }
        let end = text[i..].find(|c| !word(c)).map_or(text.len(), |n| i + n);
        names.insert(text[i..end].to_owned());
    }
    names
}

/// Every `expr` of the dashboard's panels and variables.
fn dashboard_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr" | "query", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => dashboard_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| dashboard_exprs(v, out)),
        _ => {}
    }
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(format!("{ROOT}/{rel}")).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The dashboard: valid JSON, a Prometheus datasource variable, panels
/// with queries.
fn dashboard() -> serde_json::Value {
    let d: serde_json::Value = serde_json::from_str(&read("deploy/grafana/edge.json"))
        .unwrap_or_else(|e| panic!("deploy/grafana/edge.json: {e}"));
    assert!(
        d["schemaVersion"].as_u64().unwrap_or(0) >= 36,
        "schemaVersion"
    );
    assert!(d["title"].is_string() && d["uid"].is_string(), "title, uid");
    let vars = d["templating"]["list"].as_array().expect("templating.list");
    assert!(
        vars.iter()
            .any(|v| v["type"] == "datasource" && v["query"] == "prometheus"),
        "a Prometheus datasource variable"
    );
    let panels = d["panels"].as_array().expect("panels");
    assert!(panels.len() >= 8, "panels");
    d
}

/// The PromQL of the dashboard's panels.
fn panel_exprs(d: &serde_json::Value) -> Vec<String> {
    let mut exprs = Vec::new();
    dashboard_exprs(&d["panels"], &mut exprs);
    assert!(exprs.len() >= 8, "panels with queries");
    exprs
}

/// The metric names the dashboard's panels and variables use.
fn dashboard_names() -> BTreeSet<String> {
    let d = dashboard();
    let mut exprs = panel_exprs(&d);
    dashboard_exprs(&d["templating"], &mut exprs);
    metric_names(&exprs.join("\n"))
}

/// Starts edge in a lab host, makes traffic, and scrapes until every family
/// has the samples the traffic and the config make.
fn live_exposition() -> String {
    let mut lab = lab::Lab::new("ept");
    lab.host("r", 2);
    let conf = fixture("promtool.toml")
        .path("access_log", lab.dir.join("access.log"))
        .write(&lab.dir, "edge.toml");
    let _edge = lab.edge("r", EDGE, conf).start();
    let https = |host: &str, path: &str| {
        let url = format!("https://{host}:8443{path}");
        let resolve = format!("{host}:8443:127.0.0.1");
        lab.curl("r", &["-k", "--resolve", &resolve, &url])
    };
    assert_eq!(https("a.test", "/hello").as_deref(), Some("hello"));
    assert!(https("a.test", "/api/").is_some(), "the demo backend");
    assert!(https("a.test", "/nothing").is_some(), "a 404");
    // Passthrough to a plain-HTTP server: relayed, then the TLS fails.
    let _ = https("pt.test", "/");
    // Plain HTTP on the TLS port: a failed handshake.
    let _ = lab.curl("r", &["http://127.0.0.1:8443/"]);
    // The plain-HTTP port's redirect.
    let _ = lab.curl("r", &["-H", "Host: a.test", "http://127.0.0.1:8080/"]);
    wait_for("every family with the traffic's samples", LIMIT, || {
        let t = lab.curl("r", &["--max-time", "5", "http://127.0.0.1:9900/metrics"])?;
        let ready = [
            r#"edge_vrrp_state{interface="eth0",state="master",vrid="52"} 1"#,
            r#"edge_backend_up{pool="app",server="127.0.0.1:9"} 0"#,
            r#"edge_http_requests_total{class="2xx",route="hello"} 1"#,
            r#"edge_passthrough_connections_total{pool="relay"} 1"#,
            r#"edge_tls_handshake_failures_total{reason="client_hello"} 1"#,
            r#"edge_anycast_announced{address="198.18.0.101"} 1"#,
        ]
        .iter()
        .all(|l| t.lines().any(|x| x == *l))
            && t.lines().any(|l| {
                l.starts_with(r#"edge_acme_consecutive_failures{name="acme.test"} "#)
                    && !l.ends_with(" 0")
            });
        ready.then_some(t)
    })
}

/// The real exposition passes promtool (errors and lint), is grouped by
/// family with samples in each, and has every name the alert rules, their
/// tests and the dashboard use.
#[test]
fn promtool_accepts_the_exposition_and_deploy_files_use_its_names() {
    edge_testkit::needs_root!("promtool_accepts_the_exposition_and_deploy_files_use_its_names");
    let text = live_exposition();
    if let Some(said) = promtool_check_metrics(&text) {
        panic!("promtool check metrics: {said}\n--- the exposition:\n{text}");
    }
    let problems = structure_problems(&text);
    assert!(problems.is_empty(), "{problems:#?}\n{text}");

    let exported = exported_names(&text);
    let rules = metric_names(&read("deploy/prometheus/edge.rules.yml"));
    for needed in [
        "edge_pool_healthy_servers",
        "edge_certificate_expiry_seconds",
        "edge_acme_consecutive_failures",
        "edge_vrrp_state",
        "edge_access_log_dropped_total",
        "edge_anycast_announced",
    ] {
        assert!(rules.contains(needed), "the rules use {needed}: {rules:?}");
    }
    for (what, names) in [
        ("deploy/prometheus/edge.rules.yml", rules),
        (
            "deploy/prometheus/edge.rules.test.yml",
            metric_names(&read("deploy/prometheus/edge.rules.test.yml")),
        ),
        ("deploy/grafana/edge.json", dashboard_names()),
    ] {
        let unknown: Vec<_> = names.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "{what} uses names edge does not export: {unknown:?}\nexported: {exported:?}"
        );
    }
}

/// promtool does report a problem (a counter without `_total`): the check
/// above can fail.
#[test]
fn promtool_reports_a_bad_exposition() {
    let bad = "# HELP edge_things Things.\n# TYPE edge_things counter\nedge_things 1\n";
    let said = promtool_check_metrics(bad).expect("promtool finds the problem");
    assert!(said.contains("_total"), "{said}");
    let good =
        "# HELP edge_things_total Things.\n# TYPE edge_things_total counter\nedge_things_total 1\n";
    assert_eq!(promtool_check_metrics(good), None);
}

/// The structure check finds interleaved families (two TYPE lines, then
/// their samples) and a family without samples.
#[test]
fn structure_check_finds_interleaved_and_empty_families() {
    let interleaved = "# TYPE a gauge\n# TYPE b gauge\na 1\nb 2\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n# TYPE e counter\n";
    assert_eq!(
        structure_problems(interleaved),
        [
            "a: no samples after its TYPE line",
            "a: a sample inside family b",
            "e: no samples after its TYPE line",
        ]
    );
    assert_eq!(
        metric_names("sum(rate(edge_a_total[5m])) / xedge_b + edge_c_bucket"),
        BTreeSet::from(["edge_a_total".to_owned(), "edge_c_bucket".to_owned()])
    );
}

/// Every panel query of the dashboard is PromQL that promtool accepts
/// (Grafana's variables filled in), as a recording rule.
#[test]
fn dashboard_queries_parse_as_promql() {
    let exprs = panel_exprs(&dashboard());
    let rules: Vec<serde_json::Value> = exprs
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let e = e
                .replace("$__rate_interval", "5m")
                .replace("$job", ".*")
                .replace("$instance", ".*");
            assert!(!e.contains('$'), "a Grafana variable left in {e}");
            serde_json::json!({"record": format!("dashboard_query_{i}"), "expr": e})
        })
        .collect();
    let file = serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]});
    let dir = TempDir::new("promtool-dashboard");
    let path = dir.write("dashboard.rules.json", file.to_string());
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&path)
        .output()
        .expect("promtool (Debian's prometheus package)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
