//! `[[access_log]]` and `[management]`: where access records go and where
//! metrics are served. The file model, the validated settings and the checks.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::Validator;

/// `[[access_log]]`: one sink for access records.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLog {
    /// Label in metrics and logs; default `<type>` or `<type>N` when repeated.
    pub name: Option<Spanned<String>>,
    /// `stdout`, `file` or `syslog`.
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    /// `file`: the file (appended to, reopened on SIGUSR1).
    pub path: Option<Spanned<String>>,
    /// `syslog`: the collector, `IP:PORT`.
    pub address: Option<Spanned<String>>,
    /// `syslog`: `udp` (default) or `tcp` (RFC 6587 octet counting).
    pub transport: Option<Spanned<String>>,
    /// `syslog`: facility name; default `local7` (as nginx).
    pub facility: Option<Spanned<String>>,
    /// `syslog`: severity of access records; default `info`.
    pub severity: Option<Spanned<String>>,
    /// `syslog`: APP-NAME; default `edge`.
    pub app_name: Option<Spanned<String>>,
    /// `syslog`: HOSTNAME; default the system host name.
    pub hostname: Option<Spanned<String>>,
    /// `syslog` over UDP: largest datagram; default 2048 (RFC 5426 §3.2).
    pub max_datagram: Option<Spanned<i64>>,
    /// Records waiting for the writer before new ones are dropped; default 8192.
    pub queue: Option<Spanned<i64>>,
}

/// `[management]`: the metrics listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Management {
    /// Default `127.0.0.1:9900`.
    pub listen: Option<Spanned<String>>,
    /// Allow a non-loopback `listen` (refused otherwise).
    #[serde(default)]
    pub allow_non_loopback: bool,
}

/// Where one sink writes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AccessLogTarget {
    /// JSON lines on standard output.
    Stdout,
    /// JSON lines appended to a file.
    File(PathBuf),
    /// RFC 5424 syslog with a JSON message.
    Syslog(SyslogSettings),
}

/// Syslog transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SyslogTransport {
    /// One datagram per record (RFC 5426).
    Udp,
    /// Octet-counting framing (RFC 6587 §3.4.1).
    Tcp,
}

/// `type = "syslog"`, validated.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SyslogSettings {
    pub address: SocketAddr,
    pub transport: SyslogTransport,
    /// 0-23.
    pub facility: u8,
    /// 0-7.
    pub severity: u8,
    pub app_name: String,
    /// `None`: the system host name at start.
    pub hostname: Option<String>,
    pub max_datagram: usize,
}

/// `[[access_log]]`, validated.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AccessLogSettings {
    pub name: String,
    pub target: AccessLogTarget,
    pub queue: usize,
}

/// `[management]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagementSettings {
    pub listen: SocketAddr,
}

const FACILITIES: [&str; 24] = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
    "ftp", "ntp", "audit", "alert", "clock", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
];
const SEVERITIES: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

/// RFC 5424 header fields are printable US-ASCII without spaces, bounded.
pub(crate) fn header_field_ok(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| (33..=126).contains(&b))
}

impl Validator<'_> {
    fn name_of(&mut self, list: &[&str], s: &Spanned<String>, key: &str) -> u8 {
        match list.iter().position(|f| *f == s.get_ref()) {
            Some(i) => u8::try_from(i).unwrap_or(0),
            None => {
                self.err(
                    s,
                    key,
                    format!(
                        "unknown value {:?}: expected one of {}",
                        s.get_ref(),
                        list.join(", ")
                    ),
                );
                0
            }
        }
    }

    fn bounded(
        &mut self,
        v: &Option<Spanned<i64>>,
        key: &str,
        default: usize,
        min: i64,
        max: i64,
    ) -> usize {
        match v {
            None => default,
            Some(s) if (min..=max).contains(s.get_ref()) => {
                usize::try_from(*s.get_ref()).unwrap_or(default)
            }
            Some(s) => {
                self.err(s, key, format!("must be {min}..={max}"));
                default
            }
        }
    }

    pub(super) fn access_logs(&mut self, list: &[AccessLog]) -> Vec<AccessLogSettings> {
        let mut out: Vec<AccessLogSettings> = Vec::new();
        for (i, a) in list.iter().enumerate() {
            let key = format!("access_log[{i}]");
            let kind = a.kind.get_ref().as_str();
            let queue = self.bounded(&a.queue, &format!("{key}.queue"), 8192, 1, 1 << 20);
            let syslog_only = [
                ("address", a.address.is_some()),
                ("transport", a.transport.is_some()),
                ("facility", a.facility.is_some()),
                ("severity", a.severity.is_some()),
                ("app_name", a.app_name.is_some()),
                ("hostname", a.hostname.is_some()),
                ("max_datagram", a.max_datagram.is_some()),
            ];
            if kind != "syslog" {
                for (k, set) in syslog_only {
                    if set {
                        self.err(
                            &a.kind,
                            format!("{key}.{k}"),
                            format!("{k} only applies to type = \"syslog\""),
                        );
                    }
                }
            }
            if kind != "file" && a.path.is_some() {
                self.err(
                    &a.kind,
                    format!("{key}.path"),
                    "path only applies to type = \"file\"",
                );
            }
            let target = match kind {
                "stdout" => AccessLogTarget::Stdout,
                "file" => match &a.path {
                    Some(p) if !p.get_ref().is_empty() => {
                        let path = self.path(p.get_ref());
                        if !path.parent().is_some_and(std::path::Path::is_dir) {
                            self.err(
                                p,
                                format!("{key}.path"),
                                format!("the directory of {} does not exist", path.display()),
                            );
                        }
                        AccessLogTarget::File(path)
                    }
                    _ => {
                        self.err(
                            &a.kind,
                            format!("{key}.path"),
                            "type = \"file\" needs a path",
                        );
                        continue;
                    }
                },
                "syslog" => {
                    let Some(addr) = a.address.as_ref() else {
                        self.err(
                            &a.kind,
                            format!("{key}.address"),
                            "type = \"syslog\" needs an address (IP:PORT)",
                        );
                        continue;
                    };
                    let Some(address) = self.addr(addr, &format!("{key}.address")) else {
                        continue;
                    };
                    let transport = match a.transport.as_ref().map(|t| t.get_ref().as_str()) {
                        None | Some("udp") => SyslogTransport::Udp,
                        Some("tcp") => SyslogTransport::Tcp,
                        Some(other) => {
                            if let Some(t) = &a.transport {
                                self.err(
                                    t,
                                    format!("{key}.transport"),
                                    format!(
                                        "unknown transport {other:?}: expected \"udp\" or \"tcp\""
                                    ),
                                );
                            }
                            SyslogTransport::Udp
                        }
                    };
                    let facility = match &a.facility {
                        Some(f) => self.name_of(&FACILITIES, f, &format!("{key}.facility")),
                        None => 23,
                    };
                    let severity = match &a.severity {
                        Some(s) => self.name_of(&SEVERITIES, s, &format!("{key}.severity")),
                        None => 6,
                    };
                    let mut field = |v: &Option<Spanned<String>>, k: &str, max: usize| {
                        let s = v.as_ref()?;
                        if !header_field_ok(s.get_ref(), max) {
                            self.err(s, format!("{key}.{k}"), format!("must be 1-{max} printable ASCII characters without spaces (RFC 5424)"));
                        }
                        Some(s.get_ref().clone())
                    };
                    let app_name =
                        field(&a.app_name, "app_name", 48).unwrap_or_else(|| "edge".into());
                    let hostname = field(&a.hostname, "hostname", 255);
                    let max_datagram = self.bounded(
                        &a.max_datagram,
                        &format!("{key}.max_datagram"),
                        2048,
                        480,
                        65_000,
                    );
                    AccessLogTarget::Syslog(SyslogSettings {
                        address,
                        transport,
                        facility,
                        severity,
                        app_name,
                        hostname,
                        max_datagram,
                    })
                }
                other => {
                    self.err(&a.kind, format!("{key}.type"), format!("unknown access log type {other:?}: expected \"stdout\", \"file\" or \"syslog\""));
                    continue;
                }
            };
            let name = match &a.name {
                Some(n) => {
                    if !header_field_ok(n.get_ref(), 64) {
                        self.err(
                            n,
                            format!("{key}.name"),
                            "must be 1-64 printable ASCII characters without spaces",
                        );
                    }
                    n.get_ref().clone()
                }
                None => {
                    let same = list[..i]
                        .iter()
                        .filter(|b| b.kind.get_ref() == kind)
                        .count();
                    if same == 0 {
                        kind.to_string()
                    } else {
                        format!("{kind}{same}")
                    }
                }
            };
            if out.iter().any(|o| o.name == name) {
                let span = a.name.as_ref().unwrap_or(&a.kind);
                self.err(
                    span,
                    format!("{key}.name"),
                    format!("duplicate access log name {name:?}"),
                );
            }
            if out.iter().any(|o| o.target == target) {
                self.err(
                    &a.kind,
                    key.clone(),
                    "the same destination is configured twice",
                );
            }
            out.push(AccessLogSettings {
                name,
                target,
                queue,
            });
        }
        out
    }

    pub(super) fn management(&mut self, m: Option<&Management>) -> Option<ManagementSettings> {
        let m = m?;
        let listen = match &m.listen {
            None => SocketAddr::from(([127, 0, 0, 1], 9900)),
            Some(s) => self.addr(s, "management.listen")?,
        };
        if !listen.ip().is_loopback() && !m.allow_non_loopback {
            let span = m.listen.as_ref().map_or(0..0, |s| s.span());
            self.errors.push(self.src.error(
                span,
                "management.listen",
                format!("{listen} is not a loopback address: metrics would be reachable from the network; set allow_non_loopback = true if that is what you want"),
            ));
        }
        Some(ManagementSettings { listen })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Something to serve: a config without it is refused.
    const ROUTE: &str = "[[route]]\nrespond = { status = 200 }\n";
    use crate::config::{Source, load_str};

    fn check(text: &str) -> Result<crate::config::Validated, String> {
        load_str(
            Source::new(std::path::Path::new("t.toml"), format!("{text}\n{ROUTE}")),
            std::path::Path::new("/"),
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn sinks_with_defaults() {
        let v = check(
            r#"
[[access_log]]
type = "stdout"
[[access_log]]
type = "file"
path = "tmp/access.log"
[[access_log]]
type = "syslog"
address = "127.0.0.1:514"
[[access_log]]
type = "syslog"
transport = "tcp"
address = "[::1]:601"
facility = "local0"
severity = "notice"
app_name = "edge-a"
hostname = "node1"
queue = 100
"#,
        )
        .unwrap();
        let names: Vec<&str> = v.access_logs.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["stdout", "file", "syslog", "syslog1"]);
        assert_eq!(
            v.access_logs[1].target,
            AccessLogTarget::File("/tmp/access.log".into())
        );
        let AccessLogTarget::Syslog(udp) = &v.access_logs[2].target else {
            panic!()
        };
        assert_eq!(
            (udp.transport, udp.facility, udp.severity, udp.max_datagram),
            (SyslogTransport::Udp, 23, 6, 2048)
        );
        assert_eq!(
            (udp.app_name.as_str(), udp.hostname.as_deref()),
            ("edge", None)
        );
        let AccessLogTarget::Syslog(tcp) = &v.access_logs[3].target else {
            panic!()
        };
        assert_eq!(
            (tcp.transport, tcp.facility, tcp.severity),
            (SyslogTransport::Tcp, 16, 5)
        );
        assert_eq!(v.access_logs[3].queue, 100);
        assert_eq!(v.access_logs[0].queue, 8192);
        assert!(
            v.management.is_none(),
            "no management listener unless configured"
        );
    }

    #[test]
    fn bad_sinks_are_refused_with_the_key() {
        for (text, key, what) in [
            (
                "[[access_log]]\ntype = \"kafka\"",
                "access_log[0].type",
                "unknown access log type",
            ),
            (
                "[[access_log]]\ntype = \"file\"",
                "access_log[0].path",
                "needs a path",
            ),
            (
                "[[access_log]]\ntype = \"file\"\npath = \"/nonexistent-dir/a.log\"",
                "access_log[0].path",
                "does not exist",
            ),
            (
                "[[access_log]]\ntype = \"syslog\"",
                "access_log[0].address",
                "needs an address",
            ),
            (
                "[[access_log]]\ntype = \"syslog\"\naddress = \"localhost:514\"",
                "access_log[0].address",
                "invalid address",
            ),
            (
                "[[access_log]]\ntype = \"syslog\"\naddress = \"127.0.0.1:514\"\nfacility = \"local9\"",
                "access_log[0].facility",
                "local7",
            ),
            (
                "[[access_log]]\ntype = \"syslog\"\naddress = \"127.0.0.1:514\"\ntransport = \"tls\"",
                "access_log[0].transport",
                "unknown transport",
            ),
            (
                "[[access_log]]\ntype = \"syslog\"\naddress = \"127.0.0.1:514\"\nhostname = \"a b\"",
                "access_log[0].hostname",
                "RFC 5424",
            ),
            (
                "[[access_log]]\ntype = \"syslog\"\naddress = \"127.0.0.1:514\"\nmax_datagram = 100",
                "access_log[0].max_datagram",
                "480",
            ),
            (
                "[[access_log]]\ntype = \"stdout\"\naddress = \"127.0.0.1:514\"",
                "access_log[0].address",
                "only applies",
            ),
            (
                "[[access_log]]\ntype = \"stdout\"\nqueue = 0",
                "access_log[0].queue",
                "must be",
            ),
            (
                "[[access_log]]\ntype = \"stdout\"\n[[access_log]]\ntype = \"stdout\"",
                "access_log[1]",
                "twice",
            ),
            (
                "[[access_log]]\ntype = \"stdout\"\nname = \"x\"\n[[access_log]]\ntype = \"file\"\npath = \"a\"\nname = \"x\"",
                "access_log[1].name",
                "duplicate",
            ),
            (
                "[management]\nlisten = \"0.0.0.0:9900\"",
                "management.listen",
                "not a loopback address",
            ),
        ] {
            let e = check(text).unwrap_err();
            assert!(e.contains(key) && e.contains(what), "{text}: {e}");
        }
    }

    #[test]
    fn management_defaults_to_loopback() {
        let v = check("[management]").unwrap();
        assert_eq!(
            v.management.unwrap().listen,
            SocketAddr::from(([127, 0, 0, 1], 9900))
        );
        let v = check("[management]\nlisten = \"[::1]:9100\"").unwrap();
        assert!(v.management.unwrap().listen.ip().is_loopback());
        let v =
            check("[management]\nlisten = \"198.18.0.1:9900\"\nallow_non_loopback = true").unwrap();
        assert_eq!(v.management.unwrap().listen.port(), 9900);
    }
}
