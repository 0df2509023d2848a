//! Record formats: JSON (one object per record), RFC 3339 timestamps and
//! RFC 5424 syslog messages with RFC 6587 octet-counting framing.

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::AccessRecord;

/// Writes `t` as RFC 3339 UTC with milliseconds: `2026-11-25T11:08:27.123Z`.
pub fn rfc3339(t: SystemTime, out: &mut Vec<u8>) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = i64::try_from(d.as_secs()).unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    );
}

/// The JSON shape of a record (the order of the keys is the documented one).
#[derive(Serialize)]
struct View<'a> {
    time: &'a str,
    kind: &'a str,
    client: Option<SocketAddr>,
    sni: Option<&'a str>,
    ja4: Option<&'a str>,
    host: Option<&'a str>,
    method: Option<&'a str>,
    path: Option<&'a str>,
    status: u16,
    bytes_in: u64,
    bytes_out: u64,
    duration_ms: f64,
    route: Option<&'a str>,
    backend: Option<SocketAddr>,
    backend_ms: Option<f64>,
    request_id: Option<&'a str>,
    tls_version: Option<&'a str>,
    tls_cipher: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_cert_subject: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_cert_fingerprint: Option<&'a str>,
    attempts: u32,
    error: Option<&'a str>,
    tunnel_ms: Option<f64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    protocol: Option<&'a str>,
}

fn ms(d: std::time::Duration) -> f64 {
    // Microsecond resolution; f64 is exact for any realistic duration.
    (d.as_micros() as f64) / 1000.0
}

fn json(rec: &AccessRecord, path: Option<&str>, truncated: bool, out: &mut Vec<u8>) {
    let mut time = Vec::with_capacity(24);
    rfc3339(rec.time.unwrap_or_else(SystemTime::now), &mut time);
    let view = View {
        time: std::str::from_utf8(&time).unwrap_or("-"),
        kind: rec.kind,
        client: rec.client,
        sni: rec.sni.as_deref(),
        ja4: rec.ja4.as_deref(),
        host: rec.host.as_deref(),
        method: rec.method.as_deref(),
        path,
        status: rec.status,
        bytes_in: rec.bytes_in,
        bytes_out: rec.bytes_out,
        duration_ms: ms(rec.duration),
        route: rec.route.as_deref(),
        backend: rec.backend,
        backend_ms: rec.backend_time.map(ms),
        request_id: rec.request_id.as_deref(),
        tls_version: rec.tls_version,
        tls_cipher: rec.tls_cipher,
        client_cert_subject: rec.client_cert.as_ref().map(|c| c.subject.as_str()),
        client_cert_fingerprint: rec.client_cert.as_ref().map(|c| c.fingerprint.as_str()),
        attempts: rec.attempts,
        error: rec.error.as_deref(),
        tunnel_ms: rec.tunnel_time.map(ms),
        truncated,
        protocol: rec.protocol,
    };
    // Serializing plain strings and numbers into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &view);
}

/// Appends the record as one JSON object and a newline.
pub fn json_line(rec: &AccessRecord, out: &mut Vec<u8>) {
    json(rec, rec.path.as_deref(), false, out);
    out.push(b'\n');
}

/// The fixed parts of a sink's syslog header.
#[derive(Debug, Clone)]
pub struct SyslogHeader {
    /// `facility * 8 + severity`.
    pub pri: u8,
    pub hostname: String,
    pub app_name: String,
    pub procid: u32,
}

impl SyslogHeader {
    fn write(&self, rec: &AccessRecord, out: &mut Vec<u8>) {
        let _ = write!(out, "<{}>1 ", self.pri);
        rfc3339(rec.time.unwrap_or_else(SystemTime::now), out);
        // MSGID "access", no STRUCTURED-DATA; the MSG is the JSON record.
        let _ = write!(
            out,
            " {} {} {} access - ",
            self.hostname, self.app_name, self.procid
        );
    }
}

/// Appends an RFC 5424 message for `rec`.
pub fn syslog(h: &SyslogHeader, rec: &AccessRecord, out: &mut Vec<u8>) {
    h.write(rec, out);
    json(rec, rec.path.as_deref(), false, out);
}

/// An RFC 5424 message of at most `max` bytes: when the record is larger,
/// its path is cut (and `"truncated": true` added); `None` when even that
/// does not fit.
pub fn syslog_datagram(
    h: &SyslogHeader,
    rec: &AccessRecord,
    max: usize,
    out: &mut Vec<u8>,
) -> bool {
    out.clear();
    syslog(h, rec, out);
    let mut path = rec.path.as_deref().unwrap_or("");
    for _ in 0..3 {
        let Some(over) = out.len().checked_sub(max).filter(|o| *o > 0) else {
            return true;
        };
        // Cut at least `over` bytes plus room for the added key.
        let mut keep = path.len().saturating_sub(over + 20);
        while keep > 0 && !path.is_char_boundary(keep) {
            keep -= 1;
        }
        path = path.get(..keep).unwrap_or("");
        out.clear();
        h.write(rec, out);
        json(rec, Some(path), true, out);
    }
    out.len() <= max
}

/// Appends `msg` framed by octet counting (RFC 6587 §3.4.1): `LEN SP MSG`.
pub fn octet_counted(msg: &[u8], out: &mut Vec<u8>) {
    let _ = write!(out, "{} ", msg.len());
    out.extend_from_slice(msg);
}

/// The system host name for syslog's HOSTNAME (`-` when unknown).
pub fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| super::super::config::observability::header_field_ok(h, 255))
        .unwrap_or_else(|| "-".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_dates() {
        let mut o = Vec::new();
        rfc3339(UNIX_EPOCH, &mut o);
        assert_eq!(o, b"1970-01-01T00:00:00.000Z");
        for (secs, want) in [
            (951_782_400u64, "2000-02-29T00:00:00.000Z"),
            (1_795_000_000, "2026-11-18T11:06:40.000Z"),
            (4_102_444_799, "2099-12-31T23:59:59.000Z"),
        ] {
            o.clear();
            rfc3339(UNIX_EPOCH + Duration::from_secs(secs), &mut o);
            assert_eq!(String::from_utf8_lossy(&o), want);
        }
        o.clear();
        rfc3339(UNIX_EPOCH + Duration::from_millis(1_500), &mut o);
        assert_eq!(o, b"1970-01-01T00:00:01.500Z");
    }

    fn header() -> SyslogHeader {
        SyslogHeader {
            pri: 190,
            hostname: "h1".into(),
            app_name: "edge".into(),
            procid: 42,
        }
    }

    #[test]
    fn syslog_message_and_framing() {
        let rec = AccessRecord {
            time: Some(UNIX_EPOCH),
            kind: "http",
            path: Some("/a \"q\"".into()),
            status: 200,
            ..Default::default()
        };
        let mut m = Vec::new();
        syslog(&header(), &rec, &mut m);
        let s = String::from_utf8(m.clone()).unwrap();
        let json = s
            .strip_prefix("<190>1 1970-01-01T00:00:00.000Z h1 edge 42 access - ")
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(v["path"], "/a \"q\"");
        let mut f = Vec::new();
        octet_counted(&m, &mut f);
        assert_eq!(f, [format!("{} ", m.len()).as_bytes(), &m].concat());
    }

    #[test]
    fn oversize_datagrams_cut_the_path_or_give_up() {
        let mut rec = AccessRecord {
            kind: "http",
            path: Some(format!("/{}", "é".repeat(2000))),
            ..Default::default()
        };
        let mut out = Vec::new();
        assert!(syslog_datagram(&header(), &rec, 1024, &mut out));
        assert!(out.len() <= 1024, "{}", out.len());
        let s = String::from_utf8(out.clone()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&s[s.find('{').unwrap()..]).unwrap();
        assert_eq!(v["truncated"], true);
        assert!(v["path"].as_str().unwrap().starts_with("/éé"));
        // Nothing else to cut: refused.
        rec.path = None;
        rec.host = Some("h".repeat(2000));
        assert!(!syslog_datagram(&header(), &rec, 1024, &mut out));
        // A small record is untouched.
        rec.host = None;
        assert!(syslog_datagram(&header(), &rec, 1024, &mut out));
        assert!(!String::from_utf8_lossy(&out).contains("truncated"));
    }
}
