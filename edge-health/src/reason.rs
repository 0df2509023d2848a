//! Why a target is (or is not) in rotation.

use std::fmt;
use std::time::Duration;

/// The reason attached to every state change and every probe failure. Its
/// [`Display`](fmt::Display) form is what the logs show.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// No probe has completed yet.
    NotChecked,
    /// The probe passed.
    Passed,
    /// The probe did not finish within the timeout.
    Timeout,
    /// The connection was refused (closed port).
    Refused,
    /// The peer reset the connection.
    Reset,
    /// The connection closed before a complete answer.
    Closed,
    /// Another connect or I/O error.
    Io(String),
    /// The HTTP status was not in the expected set.
    Status(u16),
    /// The body did not contain the expected text or match the regex.
    BodyMismatch,
    /// The answer was not valid HTTP.
    Protocol(String),
    /// The TLS handshake or certificate verification failed.
    Tls(String),
    /// The certificate expires sooner than allowed.
    CertificateExpiring {
        /// Time left until `notAfter` (zero when already expired).
        remaining: Duration,
    },
    /// Ejected by passive outlier detection.
    Ejected {
        /// Consecutive failures seen in live traffic.
        consecutive_failures: u32,
        /// How long the ejection lasts at least.
        duration: Duration,
    },
    /// A custom probe failed with this message.
    Custom(String),
}

impl Reason {
    /// A short stable code for metrics labels (`timeout`, `refused`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            Reason::NotChecked => "not_checked",
            Reason::Passed => "passed",
            Reason::Timeout => "timeout",
            Reason::Refused => "refused",
            Reason::Reset => "reset",
            Reason::Closed => "closed",
            Reason::Io(_) => "io",
            Reason::Status(_) => "status",
            Reason::BodyMismatch => "body_mismatch",
            Reason::Protocol(_) => "protocol",
            Reason::Tls(_) => "tls",
            Reason::CertificateExpiring { .. } => "cert_expiring",
            Reason::Ejected { .. } => "ejected",
            Reason::Custom(_) => "custom",
        }
    }

    /// Maps an I/O error from connecting or reading.
    pub(crate) fn from_io(e: &std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        match e.kind() {
            K::ConnectionRefused => Reason::Refused,
            K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => Reason::Reset,
            K::UnexpectedEof => Reason::Closed,
            K::TimedOut => Reason::Timeout,
            _ => Reason::Io(e.to_string()),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NotChecked => f.write_str("not checked yet"),
            Reason::Passed => f.write_str("check passed"),
            Reason::Timeout => f.write_str("timeout"),
            Reason::Refused => f.write_str("connection refused"),
            Reason::Reset => f.write_str("connection reset"),
            Reason::Closed => f.write_str("connection closed early"),
            Reason::Io(e) => write!(f, "i/o error: {e}"),
            Reason::Status(s) => write!(f, "status {s}"),
            Reason::BodyMismatch => f.write_str("body mismatch"),
            Reason::Protocol(e) => write!(f, "protocol error: {e}"),
            Reason::Tls(e) => write!(f, "TLS error: {e}"),
            Reason::CertificateExpiring { remaining } => {
                write!(f, "certificate expires in {}s", remaining.as_secs())
            }
            Reason::Ejected {
                consecutive_failures,
                duration,
            } => write!(
                f,
                "ejected for {}s after {consecutive_failures} consecutive failures in live traffic",
                duration.as_secs()
            ),
            Reason::Custom(m) => write!(f, "custom probe: {m}"),
        }
    }
}
