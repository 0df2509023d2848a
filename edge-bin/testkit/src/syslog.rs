//! Collectors for edge's access records: a real rsyslogd on loopback,
//! JSON-lines files, and the Prometheus endpoint.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::{Proc, TempDir, free_port, free_udp_port, wait_port};

/// rsyslogd (Debian package rsyslog) in the foreground with its own
/// config, listening on 127.0.0.1 over UDP and TCP and writing each
/// message as one line of its parsed RFC 5424 fields and its MSG; killed
/// on drop.
#[derive(Debug)]
pub struct Rsyslog {
    _proc: Proc,
    out: PathBuf,
    /// Its UDP port.
    pub udp: u16,
    /// Its TCP port.
    pub tcp: u16,
}

impl Rsyslog {
    /// Starts rsyslogd with its files in `dir`; ready (TCP accepts, a UDP
    /// probe arrived) when this returns.
    pub fn start(dir: &TempDir) -> Self {
        let (udp, tcp) = (free_udp_port(), free_port());
        let work = dir.path("rsyslog");
        std::fs::create_dir_all(&work).unwrap();
        let out = dir.path("rsyslog.out");
        // One line per message: the parsed RFC 5424 fields, then the MSG.
        let conf = format!(
            r#"global(workDirectory="{work}" maxMessageSize="64k")
module(load="imudp")
module(load="imtcp")
template(name="edge" type="string" string="%inputname%|%pri%|%protocol-version%|%timereported:::date-rfc3339%|%hostname%|%app-name%|%procid%|%msgid%|%structured-data%|%msg%\n")
input(type="imudp" address="127.0.0.1" port="{udp}")
input(type="imtcp" address="127.0.0.1" port="{tcp}")
action(type="omfile" file="{out}" template="edge")
"#,
            work = work.display(),
            out = out.display(),
        );
        let conf_path = dir.write("rsyslog.conf", conf);
        let mut cmd = Command::new("rsyslogd");
        cmd.arg("-n")
            .arg("-f")
            .arg(&conf_path)
            .arg("-i")
            .arg(dir.path("rsyslogd.pid"));
        let p = Proc::spawn(
            cmd,
            "rsyslogd (Debian package rsyslog)",
            dir.path("rsyslogd.log"),
        );
        assert!(
            wait_port(tcp, Duration::from_secs(15)),
            "rsyslogd did not listen: {}",
            std::fs::read_to_string(dir.path("rsyslogd.log")).unwrap_or_default()
        );
        // UDP is ready once a probe arrives.
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let end = Instant::now() + Duration::from_secs(15);
        loop {
            sock.send_to(b"<14>1 - probe probe - probe - ready", ("127.0.0.1", udp))
                .unwrap();
            if std::fs::read_to_string(&out).is_ok_and(|s| s.contains("ready")) {
                break;
            }
            assert!(
                Instant::now() < end,
                "rsyslogd's UDP input never got a probe"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Self {
            _proc: p,
            out,
            udp,
            tcp,
        }
    }

    /// Lines from edge (`app-name` edge), split into their fields.
    pub fn records(&self) -> Vec<Vec<String>> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| l.splitn(10, '|').map(str::to_string).collect::<Vec<_>>())
            .filter(|f| f.len() == 10 && f[5] == "edge")
            .collect()
    }
}

/// The JSON record in the MSG of a line of [`Rsyslog::records`].
pub fn record_json(fields: &[String]) -> serde_json::Value {
    serde_json::from_str(fields[9].trim()).unwrap_or_else(|e| panic!("{e}: {:?}", fields[9]))
}

/// A JSON-lines file (edge's file sink), parsed; empty when missing.
pub fn json_lines(p: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect()
}

/// Scrapes `http://127.0.0.1:PORT/metrics`: the text, and sample (name
/// with labels) -> value.
pub fn scrape(port: u16) -> (String, HashMap<String, f64>) {
    let (code, text) = crate::curl(&[&format!("http://127.0.0.1:{port}/metrics")]);
    assert_eq!(code, 0, "{text}");
    (text.clone(), samples(&text))
}

/// The samples of a Prometheus text exposition.
pub fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// The sample `key`; panics listing the samples there are.
pub fn metric(m: &HashMap<String, f64>, key: &str) -> f64 {
    *m.get(key)
        .unwrap_or_else(|| panic!("no sample {key} in {:#?}", m.keys()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_keep_their_labels() {
        let m = samples("# HELP x y\n# TYPE x counter\nx_total{a=\"b c\"} 3\nup 1\nbad line\n");
        assert_eq!(metric(&m, r#"x_total{a="b c"}"#), 3.0);
        assert_eq!(metric(&m, "up"), 1.0);
        assert_eq!(m.len(), 2);
    }
}
