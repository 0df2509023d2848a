//! What a reload would change: a summary by section (listeners, routes,
//! pools and their servers, certificates, passthrough rules, VRRP
//! instances, limits, ...) and a unified text diff of the two files, for
//! `edge check --diff-against OLD` and for the reload log.
//!
//! The summary compares the parsed TOML, not the validated config, so it
//! works on an old file whose certificates are gone; [`summarize`] needs
//! both files to parse.

use std::collections::BTreeSet;
use std::fmt;

use toml::{Table, Value};

/// One change, as a line of the summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Added, removed, changed, or applied only by a restart.
    pub kind: ChangeKind,
    /// What changed, e.g. `pool "web": server 10.0.0.3:80 added`.
    pub what: String,
}

/// The kind of a [`Change`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Removed,
    Changed,
    /// A setting a running edge cannot change: it needs a restart.
    NeedsRestart,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = match self.kind {
            ChangeKind::Added => '+',
            ChangeKind::Removed => '-',
            ChangeKind::Changed => '~',
            ChangeKind::NeedsRestart => '!',
        };
        write!(f, "{mark} {}", self.what)?;
        if self.kind == ChangeKind::NeedsRestart {
            f.write_str(" (needs a restart: a reload keeps the running value)")?;
        }
        Ok(())
    }
}

/// Keys only a restart applies.
const RESTART_ONLY: &[&str] = &[
    "runtime.worker_threads",
    "runtime.log_level",
    "admin.socket",
    "admin.mode",
    "admin.group",
    "management.listen",
    "management.allow_non_loopback",
    "peer.listen",
    "peer.address",
    "peer.credentials",
    "peer.peer_certificate",
    "peer.keepalive",
    "peer.timeout",
    "tickets.keys_file",
];

/// The changes from `old` to `new` (both config file texts).
pub fn summarize(old: &str, new: &str) -> Result<Vec<Change>, String> {
    let old: Table = old
        .parse()
        .map_err(|e| format!("the old config does not parse: {e}"))?;
    let new: Table = new
        .parse()
        .map_err(|e| format!("the new config does not parse: {e}"))?;
    let mut out = Diff::default();
    out.listeners(&old, &new);
    for section in [
        "runtime",
        "https",
        "http",
        "limits",
        "acme",
        "admin",
        "management",
        "peer",
        "tickets",
    ] {
        let skip: &[&str] = if section == "https" || section == "http" {
            &["listen"]
        } else {
            &[]
        };
        out.table(
            &format!("[{section}]"),
            section,
            old.get(section).and_then(Value::as_table),
            new.get(section).and_then(Value::as_table),
            skip,
        );
    }
    out.keyed(&old, &new, "certificate", "certificate", &|t, _| {
        str_key(t, "name")
    });
    out.keyed(&old, &new, "client_auth", "client_auth", &|t, i| {
        t.get("hosts")
            .map(|v| v.to_string())
            .unwrap_or_else(|| format!("#{i}"))
    });
    out.keyed(&old, &new, "passthrough", "passthrough", &|t, i| {
        t.get("sni")
            .map(|v| v.to_string())
            .unwrap_or_else(|| format!("#{i}"))
    });
    out.keyed(&old, &new, "route", "route", &|t, i| {
        t.get("name")
            .and_then(Value::as_str)
            .map(|s| format!("{s:?}"))
            .unwrap_or_else(|| format!("route{i}"))
    });
    out.keyed(&old, &new, "pool", "pool", &|t, _| str_key(t, "name"));
    out.keyed(&old, &new, "vrrp", "vrrp", &|t, _| {
        format!(
            "vrid {} on {}",
            t.get("vrid").map_or_else(|| "?".into(), |v| v.to_string()),
            t.get("interface").and_then(Value::as_str).unwrap_or("?")
        )
    });
    out.keyed(&old, &new, "demo_backend", "demo_backend", &|t, _| {
        str_key(t, "listen")
    });
    out.keyed(&old, &new, "access_log", "access_log", &|t, i| {
        t.get("name")
            .or_else(|| t.get("path"))
            .or_else(|| t.get("address"))
            .and_then(Value::as_str)
            .map(|s| format!("{s:?}"))
            .unwrap_or_else(|| format!("#{i}"))
    });
    let known: BTreeSet<&str> = [
        "runtime",
        "https",
        "http",
        "limits",
        "acme",
        "admin",
        "management",
        "peer",
        "tickets",
        "access_log",
        "certificate",
        "client_auth",
        "passthrough",
        "route",
        "pool",
        "vrrp",
        "demo_backend",
    ]
    .into();
    let rest = |t: &Table| -> Table {
        t.iter()
            .filter(|(k, _)| !known.contains(k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    out.table("", "", Some(&rest(&old)), Some(&rest(&new)), &[]);
    Ok(out.changes)
}

fn str_key(t: &Table, key: &str) -> String {
    t.get(key)
        .and_then(Value::as_str)
        .map_or_else(|| "?".into(), |s| format!("{s:?}"))
}

#[derive(Default)]
struct Diff {
    changes: Vec<Change>,
}

impl Diff {
    fn push(&mut self, kind: ChangeKind, what: String) {
        self.changes.push(Change { kind, what });
    }

    fn listeners(&mut self, old: &Table, new: &Table) {
        let list = |t: &Table, section: &str| -> Vec<String> {
            match t.get(section).and_then(Value::as_table) {
                // The defaults when the section or key is absent.
                None => vec![
                    if section == "https" {
                        "0.0.0.0:443"
                    } else {
                        "0.0.0.0:80"
                    }
                    .into(),
                ],
                Some(s) => match s.get("listen").and_then(Value::as_array) {
                    None => vec![
                        if section == "https" {
                            "0.0.0.0:443"
                        } else {
                            "0.0.0.0:80"
                        }
                        .into(),
                    ],
                    Some(a) => a
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect(),
                },
            }
        };
        for section in ["https", "http"] {
            let (o, n) = (list(old, section), list(new, section));
            for a in &n {
                if !o.contains(a) {
                    self.push(ChangeKind::Added, format!("listener {a} ({section})"));
                }
            }
            for a in &o {
                if !n.contains(a) {
                    self.push(ChangeKind::Removed, format!("listener {a} ({section})"));
                }
            }
        }
    }

    /// Key-by-key changes of one table; `path` prefixes keys (`limits`),
    /// `label` names the table in the output.
    fn table(
        &mut self,
        label: &str,
        path: &str,
        old: Option<&Table>,
        new: Option<&Table>,
        skip: &[&str],
    ) {
        self.table_at(label, "", path, old, new, skip);
    }

    /// `rel` is the key path inside the labelled table (`health.`).
    fn table_at(
        &mut self,
        label: &str,
        rel: &str,
        path: &str,
        old: Option<&Table>,
        new: Option<&Table>,
        skip: &[&str],
    ) {
        let empty = Table::new();
        let (o, n) = (old.unwrap_or(&empty), new.unwrap_or(&empty));
        let keys: BTreeSet<&String> = o.keys().chain(n.keys()).collect();
        for k in keys {
            if skip.contains(&k.as_str()) {
                continue;
            }
            let full = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            let name = if label.is_empty() {
                format!("{rel}{k}")
            } else {
                format!("{label} {rel}{k}")
            };
            let kind = if RESTART_ONLY.contains(&full.as_str()) {
                Some(ChangeKind::NeedsRestart)
            } else {
                None
            };
            match (o.get(k), n.get(k)) {
                (Some(Value::Table(a)), Some(Value::Table(b))) => {
                    self.table_at(label, &format!("{rel}{k}."), &full, Some(a), Some(b), &[]);
                }
                (Some(a), Some(b)) if a != b => self.push(
                    kind.unwrap_or(ChangeKind::Changed),
                    format!("{name}: {} -> {}", show(a), show(b)),
                ),
                (Some(a), None) => self.push(
                    kind.unwrap_or(ChangeKind::Removed),
                    format!("{name} = {} removed (default applies)", show(a)),
                ),
                (None, Some(b)) => self.push(
                    kind.unwrap_or(ChangeKind::Added),
                    format!("{name} = {}", show(b)),
                ),
                _ => {}
            }
        }
    }

    /// An array of tables matched by a key (`name`, ...): added, removed,
    /// changed items. Pools compare their servers by address.
    fn keyed(
        &mut self,
        old: &Table,
        new: &Table,
        section: &str,
        what: &str,
        key: &dyn Fn(&Table, usize) -> String,
    ) {
        let items = |t: &Table| -> Vec<(String, Table)> {
            t.get(section)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .enumerate()
                        .filter_map(|(i, v)| v.as_table().map(|t| (key(t, i), t.clone())))
                        .collect()
                })
                .unwrap_or_default()
        };
        let (o, n) = (items(old), items(new));
        let restart = section == "demo_backend";
        for (k, t) in &n {
            match o.iter().find(|(ok, _)| ok == k) {
                None => self.push(
                    if restart {
                        ChangeKind::NeedsRestart
                    } else {
                        ChangeKind::Added
                    },
                    format!("{what} {k} added"),
                ),
                Some((_, ot)) => {
                    let label = format!("{what} {k}:");
                    if section == "pool" {
                        self.servers(&label, ot, t);
                        self.table(&label, section, Some(ot), Some(t), &["server", "name"]);
                    } else {
                        self.table(&label, section, Some(ot), Some(t), &[]);
                    }
                }
            }
        }
        for (k, _) in &o {
            if !n.iter().any(|(nk, _)| nk == k) {
                self.push(
                    if restart {
                        ChangeKind::NeedsRestart
                    } else {
                        ChangeKind::Removed
                    },
                    format!("{what} {k} removed"),
                );
            }
        }
        // Routes are matched in file order: say when the order changed.
        if section == "route" {
            let order = |v: &[(String, Table)]| -> Vec<String> {
                v.iter()
                    .map(|(k, _)| k.clone())
                    .filter(|k| o.iter().any(|(x, _)| x == k) && n.iter().any(|(x, _)| x == k))
                    .collect()
            };
            if order(&o) != order(&n) {
                self.push(ChangeKind::Changed, "route order (first match wins)".into());
            }
        }
    }

    fn servers(&mut self, label: &str, old: &Table, new: &Table) {
        let list = |t: &Table| -> Vec<(String, Value)> {
            t.get("server")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_table)
                        .map(|s| {
                            (
                                s.get("address")
                                    .and_then(Value::as_str)
                                    .unwrap_or("?")
                                    .to_owned(),
                                s.get("weight").cloned().unwrap_or(Value::Integer(1)),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let (o, n) = (list(old), list(new));
        for (a, w) in &n {
            match o.iter().find(|(x, _)| x == a) {
                None => self.push(ChangeKind::Added, format!("{label} server {a}")),
                Some((_, ow)) if ow != w => self.push(
                    ChangeKind::Changed,
                    format!("{label} server {a} weight {ow} -> {w}"),
                ),
                _ => {}
            }
        }
        for (a, _) in &o {
            if !n.iter().any(|(x, _)| x == a) {
                self.push(ChangeKind::Removed, format!("{label} server {a}"));
            }
        }
    }
}

/// A value on one line, long ones cut.
fn show(v: &Value) -> String {
    let s = match v {
        Value::Table(t) => format!("{{ {} keys }}", t.len()),
        other => other.to_string(),
    };
    if s.chars().count() > 120 {
        let cut: String = s.chars().take(117).collect();
        format!("{cut}...")
    } else {
        s
    }
}

/// A unified diff (`diff -u` style, 3 lines of context) of two texts;
/// empty when they are equal.
pub fn unified(old_name: &str, new_name: &str, old: &str, new: &str) -> String {
    const CONTEXT: usize = 3;
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let ops = edit_script(&a, &b);
    if ops.iter().all(|o| matches!(o, Op::Equal(..))) {
        return String::new();
    }
    let mut out = format!("--- {old_name}\n+++ {new_name}\n");
    // Indices of ops that are changes.
    let changed: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, o)| !matches!(o, Op::Equal(..)))
        .map(|(i, _)| i)
        .collect();
    let mut i = 0;
    while i < changed.len() {
        let start = changed[i].saturating_sub(CONTEXT);
        let mut end = changed[i];
        while i < changed.len() && changed[i] <= end + 2 * CONTEXT {
            end = changed[i];
            i += 1;
        }
        let end = (end + CONTEXT + 1).min(ops.len());
        let hunk = &ops[start..end];
        let (mut a0, mut b0) = (None, None);
        let (mut na, mut nb) = (0, 0);
        for o in hunk {
            match *o {
                Op::Equal(x, y) => {
                    a0.get_or_insert(x);
                    b0.get_or_insert(y);
                    na += 1;
                    nb += 1;
                }
                Op::Delete(x, y) => {
                    a0.get_or_insert(x);
                    b0.get_or_insert(y);
                    na += 1;
                }
                Op::Insert(x, y) => {
                    a0.get_or_insert(x);
                    b0.get_or_insert(y);
                    nb += 1;
                }
            }
        }
        let start_of = |first: Option<usize>, n: usize| match (first, n) {
            (_, 0) => first.unwrap_or(0),
            (f, _) => f.unwrap_or(0) + 1,
        };
        out.push_str(&format!(
            "@@ -{},{na} +{},{nb} @@\n",
            start_of(a0, na),
            start_of(b0, nb)
        ));
        for o in hunk {
            let line = match *o {
                Op::Equal(x, _) => format!(" {}", a.get(x).copied().unwrap_or("")),
                Op::Delete(x, _) => format!("-{}", a.get(x).copied().unwrap_or("")),
                Op::Insert(_, y) => format!("+{}", b.get(y).copied().unwrap_or("")),
            };
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

/// One step of an edit script; both indices are where the step stands in
/// the old and the new text.
#[derive(Debug, Clone, Copy)]
enum Op {
    Equal(usize, usize),
    Delete(usize, usize),
    Insert(usize, usize),
}

/// A shortest edit script by longest common subsequence, after trimming
/// the common head and tail. Past 4 million cells the middle is shown as
/// replaced whole (config files are far smaller).
fn edit_script(a: &[&str], b: &[&str]) -> Vec<Op> {
    let head = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let tail = a[head..]
        .iter()
        .rev()
        .zip(b[head..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (am, bm) = (&a[head..a.len() - tail], &b[head..b.len() - tail]);
    let mut ops: Vec<Op> = (0..head).map(|i| Op::Equal(i, i)).collect();
    let (n, m) = (am.len(), bm.len());
    if n.saturating_mul(m) > 4_000_000 {
        ops.extend((0..n).map(|i| Op::Delete(head + i, head)));
        ops.extend((0..m).map(|j| Op::Insert(head + n, head + j)));
    } else {
        // lcs[i][j]: LCS length of am[i..] and bm[j..].
        let w = m + 1;
        let mut lcs = vec![0u32; (n + 1) * w];
        for i in (0..n).rev() {
            for j in (0..m).rev() {
                lcs[i * w + j] = if am[i] == bm[j] {
                    lcs[(i + 1) * w + j + 1] + 1
                } else {
                    lcs[(i + 1) * w + j].max(lcs[i * w + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < n || j < m {
            if i < n && j < m && am[i] == bm[j] {
                ops.push(Op::Equal(head + i, head + j));
                i += 1;
                j += 1;
            } else if i < n && (j == m || lcs[(i + 1) * w + j] >= lcs[i * w + j + 1]) {
                ops.push(Op::Delete(head + i, head + j));
                i += 1;
            } else {
                ops.push(Op::Insert(head + i, head + j));
                j += 1;
            }
        }
    }
    let (ea, eb) = (a.len() - tail, b.len() - tail);
    ops.extend((0..tail).map(|k| Op::Equal(ea + k, eb + k)));
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = r#"
[https]
listen = ["127.0.0.1:8443"]

[limits]
idle_timeout = "60s"

[[route]]
name = "api"
pool = "api"

[[route]]
name = "hello"
respond = { status = 200, body = "v1" }

[[pool]]
name = "api"
server = [{ address = "127.0.0.1:9001" }, { address = "127.0.0.1:9002" }]
"#;

    const NEW: &str = r#"
[runtime]
worker_threads = 4

[https]
listen = ["127.0.0.1:8443", "127.0.0.1:9443"]

[limits]
idle_timeout = "30s"

[[route]]
name = "api"
pool = "api"

[[route]]
name = "hello"
respond = { status = 200, body = "v2" }

[[route]]
name = "new"
redirect = { location = "https://example.com" }

[[pool]]
name = "api"
server = [{ address = "127.0.0.1:9002", weight = 3 }, { address = "127.0.0.1:9003" }]
"#;

    #[test]
    fn summary_names_each_change() {
        let got: Vec<String> = summarize(OLD, NEW)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        let want = [
            "+ listener 127.0.0.1:9443 (https)",
            "! [runtime] worker_threads = 4 (needs a restart: a reload keeps the running value)",
            "~ [limits] idle_timeout: \"60s\" -> \"30s\"",
            "~ route \"hello\": respond.body: \"v1\" -> \"v2\"",
            "+ route \"new\" added",
            "~ pool \"api\": server 127.0.0.1:9002 weight 1 -> 3",
            "+ pool \"api\": server 127.0.0.1:9003",
            "- pool \"api\": server 127.0.0.1:9001",
        ];
        for w in want {
            assert!(got.iter().any(|g| g == w), "missing {w:?} in {got:#?}");
        }
        assert_eq!(got.len(), want.len(), "{got:#?}");
        assert!(summarize(OLD, OLD).unwrap().is_empty());
        assert!(summarize(OLD, "[[route]\n").is_err());
    }

    #[test]
    fn unified_diff_has_hunks_with_context() {
        let old = "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n";
        let new = "a\nb\nc\nD\ne\nf\ng\nh\ni\nj\nk\n";
        let d = unified("old", "new", old, new);
        assert_eq!(
            d,
            "--- old\n+++ new\n@@ -1,7 +1,7 @@\n a\n b\n c\n-d\n+D\n e\n f\n g\n@@ -8,3 +8,4 @@\n h\n i\n j\n+k\n"
        );
        assert_eq!(unified("o", "n", old, old), "");
        assert_eq!(
            unified("o", "n", "", "x\n"),
            "--- o\n+++ n\n@@ -0,0 +1,1 @@\n+x\n"
        );
    }
}
