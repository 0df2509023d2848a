//! The admin line protocol's commands: parsing only (no I/O), so every
//! input can be tested directly.
//!
//! One command per line, words separated by spaces. A server is named by
//! its address as written in the config (`127.0.0.1:8080`).

use std::net::SocketAddr;
use std::time::Duration;

/// Longest accepted command line, in bytes (without the newline).
pub const MAX_LINE: usize = 1024;
/// `drain` waits this long for the server to go idle unless told otherwise.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest `drain --timeout`.
pub const MAX_DRAIN_TIMEOUT: Duration = Duration::from_secs(3600);
/// Highest weight (as in the config file).
pub const MAX_WEIGHT: u32 = 10_000;

/// A parsed admin command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    ShowInfo,
    ShowPools,
    /// `show servers [POOL]`
    ShowServers(Option<String>),
    /// `drain POOL SERVER [--timeout D]`: no new traffic, wait for idle.
    Drain {
        server: ServerRef,
        timeout: Duration,
    },
    /// `enable POOL SERVER`: back to ready.
    Enable(ServerRef),
    /// `maint POOL SERVER`: out of rotation at once.
    Maint(ServerRef),
    /// `set weight POOL SERVER N[%]`
    SetWeight {
        server: ServerRef,
        weight: Weight,
    },
    /// `reload`: re-read the config file.
    Reload,
    /// `show certs`: the certificates in service.
    ShowCerts,
    /// `acme status`: the ACME-managed certificates.
    AcmeStatus,
    /// `acme renew NAME`: renew that ACME certificate now.
    AcmeRenew(String),
}

/// A server of a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerRef {
    pub pool: String,
    pub addr: SocketAddr,
}

/// A weight to set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weight {
    /// An absolute weight, `0..=MAX_WEIGHT` (0: no new traffic).
    Absolute(u32),
    /// A share of the server's configured weight (HAProxy's `N%`).
    Percent(u32),
}

impl Weight {
    /// The absolute weight for a server configured with `configured`.
    pub fn resolve(self, configured: u32) -> u32 {
        match self {
            Weight::Absolute(w) => w,
            Weight::Percent(p) => {
                let w = u64::from(configured) * u64::from(p) / 100;
                u32::try_from(w.min(u64::from(MAX_WEIGHT))).unwrap_or(MAX_WEIGHT)
            }
        }
    }
}

/// Help text for `help`.
pub const HELP: &str = "\
commands:
  help                                this text
  show info                           version, pid, uptime, config file, state generation
  show pools                          pools with their servers' states
  show servers [POOL]                 per server: address, admin state, health, last check,
                                      weight, in flight, queue, requests, failures
  drain POOL SERVER [--timeout 30s]   no new traffic; answers when idle or at the timeout
  maint POOL SERVER                   out of rotation at once (existing traffic finishes)
  enable POOL SERVER                  back to ready (in rotation while healthy)
  set weight POOL SERVER N[%]         balancing weight 0-10000, or % of the configured one
  set server POOL/SERVER state ready|drain|maint
  set server POOL/SERVER weight N[%]  (HAProxy's spellings; drain does not wait)
  reload                              re-read and apply the config file
  show certs                          certificates in service: names, served for, source
                                      (file, self-signed, acme), issuer, validity, serial
  acme status                         per ACME certificate: expiry, renewal due, order in
                                      progress, consecutive failures, last error
  acme renew NAME                     renew the ACME certificate with that name now
                                      (answers at once; follow it with acme status)
";

/// Parses one command line (trailing `\r\n` allowed). The error is the
/// message for the operator.
pub fn parse(line: &str) -> Result<Command, String> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.len() > MAX_LINE {
        return Err(format!("command longer than {MAX_LINE} bytes"));
    }
    let words: Vec<&str> = line.split_ascii_whitespace().collect();
    let usage = |u: &str| Err(format!("usage: {u}"));
    match words.as_slice() {
        [] => Err("empty command; try \"help\"".into()),
        ["help"] => Ok(Command::Help),
        ["show", "info"] => Ok(Command::ShowInfo),
        ["show", "pools"] => Ok(Command::ShowPools),
        ["show", "servers"] => Ok(Command::ShowServers(None)),
        ["show", "servers", pool] => Ok(Command::ShowServers(Some(pool.to_string()))),
        ["show", "certs"] => Ok(Command::ShowCerts),
        ["show", ..] => usage("show info | show pools | show servers [POOL] | show certs"),
        ["acme", "status"] => Ok(Command::AcmeStatus),
        ["acme", "renew", name] => Ok(Command::AcmeRenew(name.to_string())),
        ["acme", ..] => usage("acme status | acme renew NAME"),
        ["drain", pool, server, rest @ ..] => {
            let server = server_ref(pool, server)?;
            let timeout = match rest {
                [] => DEFAULT_DRAIN_TIMEOUT,
                ["--timeout", d] => timeout(d)?,
                [w] if w.starts_with("--timeout=") => {
                    timeout(w.strip_prefix("--timeout=").unwrap_or_default())?
                }
                _ => return usage("drain POOL SERVER [--timeout 30s]"),
            };
            Ok(Command::Drain { server, timeout })
        }
        ["drain", ..] => usage("drain POOL SERVER [--timeout 30s]"),
        ["enable", pool, server] => Ok(Command::Enable(server_ref(pool, server)?)),
        ["enable", ..] => usage("enable POOL SERVER"),
        ["maint", pool, server] => Ok(Command::Maint(server_ref(pool, server)?)),
        ["maint", ..] => usage("maint POOL SERVER"),
        ["set", "weight", pool, server, w] => Ok(Command::SetWeight {
            server: server_ref(pool, server)?,
            weight: weight(w)?,
        }),
        ["set", "weight", ..] => usage("set weight POOL SERVER N[%]"),
        ["set", "server", ps, what, value] => {
            let (pool, server) = ps
                .split_once('/')
                .ok_or("usage: set server POOL/SERVER state ready|drain|maint")?;
            let server = server_ref(pool, server)?;
            match (*what, *value) {
                ("state", "ready") => Ok(Command::Enable(server)),
                ("state", "maint") => Ok(Command::Maint(server)),
                ("state", "drain") => Ok(Command::Drain {
                    server,
                    timeout: Duration::ZERO,
                }),
                ("state", other) => Err(format!(
                    "unknown state {other:?}: expected ready, drain or maint"
                )),
                ("weight", w) => Ok(Command::SetWeight {
                    server,
                    weight: weight(w)?,
                }),
                _ => usage("set server POOL/SERVER state ready|drain|maint | weight N[%]"),
            }
        }
        ["set", ..] => usage("set weight POOL SERVER N[%]"),
        ["reload"] => Ok(Command::Reload),
        ["reload", ..] => usage("reload"),
        [cmd, ..] => Err(format!(
            "unknown command {:?}; try \"help\"",
            cmd.chars().take(64).collect::<String>()
        )),
    }
}

fn server_ref(pool: &str, server: &str) -> Result<ServerRef, String> {
    let addr = server.parse().map_err(|_| {
        format!(
            "invalid server {server:?}: expected its address as in the config, e.g. 127.0.0.1:8080"
        )
    })?;
    Ok(ServerRef {
        pool: pool.to_string(),
        addr,
    })
}

fn timeout(s: &str) -> Result<Duration, String> {
    let d = crate::config::duration::parse_duration(s)?;
    if d > MAX_DRAIN_TIMEOUT {
        return Err(format!("drain timeout {s:?} is longer than 1h"));
    }
    Ok(d)
}

fn weight(s: &str) -> Result<Weight, String> {
    let bad =
        || format!("invalid weight {s:?}: expected 0-{MAX_WEIGHT} or a percentage such as 50%");
    if let Some(p) = s.strip_suffix('%') {
        let p: u32 = p.parse().map_err(|_| bad())?;
        if p > 100_000 {
            return Err(bad());
        }
        return Ok(Weight::Percent(p));
    }
    let w: u32 = s.parse().map_err(|_| bad())?;
    if w > MAX_WEIGHT {
        return Err(bad());
    }
    Ok(Weight::Absolute(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sr(pool: &str, port: u16) -> ServerRef {
        ServerRef {
            pool: pool.into(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    #[test]
    fn commands() {
        assert_eq!(parse("help\r\n"), Ok(Command::Help));
        assert_eq!(parse("  show   info "), Ok(Command::ShowInfo));
        assert_eq!(parse("show pools"), Ok(Command::ShowPools));
        assert_eq!(parse("show servers"), Ok(Command::ShowServers(None)));
        assert_eq!(
            parse("show servers app\n"),
            Ok(Command::ShowServers(Some("app".into())))
        );
        assert_eq!(
            parse("drain app 127.0.0.1:81"),
            Ok(Command::Drain {
                server: sr("app", 81),
                timeout: DEFAULT_DRAIN_TIMEOUT
            })
        );
        assert_eq!(
            parse("drain app 127.0.0.1:81 --timeout 250ms"),
            Ok(Command::Drain {
                server: sr("app", 81),
                timeout: Duration::from_millis(250)
            })
        );
        assert_eq!(
            parse("drain app 127.0.0.1:81 --timeout=0"),
            Ok(Command::Drain {
                server: sr("app", 81),
                timeout: Duration::ZERO
            })
        );
        assert_eq!(
            parse("enable app 127.0.0.1:81"),
            Ok(Command::Enable(sr("app", 81)))
        );
        assert_eq!(
            parse("maint app 127.0.0.1:81"),
            Ok(Command::Maint(sr("app", 81)))
        );
        assert_eq!(
            parse("set weight app 127.0.0.1:81 7"),
            Ok(Command::SetWeight {
                server: sr("app", 81),
                weight: Weight::Absolute(7)
            })
        );
        assert_eq!(
            parse("set weight app [::1]:81 50%").map(|c| matches!(
                c,
                Command::SetWeight {
                    weight: Weight::Percent(50),
                    ..
                }
            )),
            Ok(true)
        );
        assert_eq!(
            parse("set server app/127.0.0.1:81 state maint"),
            Ok(Command::Maint(sr("app", 81)))
        );
        assert_eq!(
            parse("set server app/127.0.0.1:81 state drain"),
            Ok(Command::Drain {
                server: sr("app", 81),
                timeout: Duration::ZERO
            })
        );
        assert_eq!(
            parse("set server app/127.0.0.1:81 weight 0"),
            Ok(Command::SetWeight {
                server: sr("app", 81),
                weight: Weight::Absolute(0)
            })
        );
        assert_eq!(parse("reload"), Ok(Command::Reload));
        assert_eq!(parse("show certs"), Ok(Command::ShowCerts));
        assert_eq!(parse("acme status\r\n"), Ok(Command::AcmeStatus));
        assert_eq!(
            parse("acme renew example.com"),
            Ok(Command::AcmeRenew("example.com".into()))
        );
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        for (line, want) in [
            ("", "empty command"),
            ("   ", "empty command"),
            ("frobnicate", "unknown command \"frobnicate\""),
            ("show", "usage: show"),
            ("show servers a b", "usage: show"),
            ("drain app", "usage: drain"),
            ("drain app nothere", "invalid server"),
            ("drain app 127.0.0.1:81 --timeout", "usage: drain"),
            ("drain app 127.0.0.1:81 --timeout 5x", "invalid duration"),
            ("drain app 127.0.0.1:81 --timeout 2h", "longer than 1h"),
            (
                "drain app 127.0.0.1:81 --timeout 99999999999999999h",
                "too large",
            ),
            ("set weight app 127.0.0.1:81 10001", "invalid weight"),
            ("set weight app 127.0.0.1:81 -1", "invalid weight"),
            ("set weight app 127.0.0.1:81 x%", "invalid weight"),
            ("set weight app 127.0.0.1:81", "usage: set weight"),
            ("set server app state ready", "usage: set server"),
            ("set server app/127.0.0.1:81 state up", "unknown state"),
            ("reload now", "usage: reload"),
            ("show cert", "usage: show"),
            ("show certs x", "usage: show"),
            ("acme", "usage: acme status | acme renew NAME"),
            ("acme renew", "usage: acme"),
            ("acme renew a b", "usage: acme"),
            ("acme frob", "usage: acme"),
        ] {
            let e = parse(line).unwrap_err();
            assert!(e.contains(want), "{line:?}: {e}");
        }
        assert!(
            parse(&"x".repeat(MAX_LINE + 1))
                .unwrap_err()
                .contains("longer")
        );
        // Unicode and control bytes are just unknown words.
        assert!(parse("ßhow\u{0} servers").is_err());
        assert!(parse(&"é".repeat(500)).is_err());
    }

    #[test]
    fn percent_weights() {
        assert_eq!(Weight::Percent(50).resolve(10), 5);
        assert_eq!(Weight::Percent(0).resolve(10), 0);
        assert_eq!(Weight::Percent(100_000).resolve(10_000), MAX_WEIGHT);
        assert_eq!(Weight::Absolute(3).resolve(10), 3);
    }
}
