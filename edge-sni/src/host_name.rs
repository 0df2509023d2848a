//! Host names and host-name patterns: SNI validation and normalisation
//! (RFC 6066 §3, RFC 1123 §2.1) and the one wildcard meaning of TLS
//! certificates (RFC 6125 §6.4.3), shared by the SNI router, edge-acme's
//! certificate resolver and edge's routes.

use crate::error::{HostNameError, HostPatternError};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::str::FromStr;

/// Longest DNS name in presentation form, without the trailing dot.
pub const MAX_HOST_NAME_LEN: usize = 253;

/// A validated, lower-cased DNS host name held inline (no heap allocation).
///
/// Accepts letters, digits, hyphens and underscores (seen in real
/// deployments) in dot-separated labels of 1 to 63 bytes; strips one
/// trailing dot; rejects IP literals and all-numeric top-level labels.
#[derive(Clone, Copy)]
pub struct HostName {
    buf: [u8; MAX_HOST_NAME_LEN],
    len: u8,
}

impl HostName {
    /// Validates `raw` and returns it lower-cased, without a trailing dot.
    ///
    /// ```
    /// let name = edge_sni::HostName::parse(b"WWW.Example.COM.").unwrap();
    /// assert_eq!(name.as_str(), "www.example.com");
    /// assert!(edge_sni::HostName::parse(b"192.0.2.1").is_err());
    /// ```
    pub fn parse(raw: &[u8]) -> Result<Self, HostNameError> {
        let name = raw.strip_suffix(b".").unwrap_or(raw);
        if name.is_empty() {
            return Err(HostNameError::Empty);
        }
        if looks_like_ip(name) {
            return Err(HostNameError::IpLiteral);
        }
        if name.len() > MAX_HOST_NAME_LEN {
            return Err(HostNameError::TooLong { len: name.len() });
        }
        let mut buf = [0u8; MAX_HOST_NAME_LEN];
        let mut label_len = 0usize;
        let mut label_numeric = true;
        let mut prev = b'.';
        for (offset, (&byte, slot)) in name.iter().zip(buf.iter_mut()).enumerate() {
            let lower = byte.to_ascii_lowercase();
            match lower {
                b'.' => {
                    check_label_end(label_len, prev)?;
                    label_len = 0;
                    label_numeric = true;
                }
                b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => {
                    if lower == b'-' && label_len == 0 {
                        return Err(HostNameError::HyphenAtLabelEdge);
                    }
                    label_numeric &= lower.is_ascii_digit();
                    label_len += 1;
                }
                _ => return Err(HostNameError::InvalidByte { byte, offset }),
            }
            *slot = lower;
            prev = lower;
        }
        check_label_end(label_len, prev)?;
        if label_numeric {
            return Err(HostNameError::NumericTopLevel);
        }
        let len =
            u8::try_from(name.len()).map_err(|_| HostNameError::TooLong { len: name.len() })?;
        Ok(Self { buf, len })
    }

    /// The normalised name.
    pub fn as_str(&self) -> &str {
        let bytes = self.buf.get(..usize::from(self.len)).unwrap_or_default();
        // Only ASCII letters, digits, '-', '_' and '.' were stored.
        std::str::from_utf8(bytes).unwrap_or_default()
    }
}

fn check_label_end(label_len: usize, last: u8) -> Result<(), HostNameError> {
    if label_len == 0 {
        return Err(HostNameError::EmptyLabel);
    }
    if label_len > 63 {
        return Err(HostNameError::LabelTooLong { len: label_len });
    }
    if last == b'-' {
        return Err(HostNameError::HyphenAtLabelEdge);
    }
    Ok(())
}

fn looks_like_ip(name: &[u8]) -> bool {
    let Ok(s) = std::str::from_utf8(name) else {
        return false;
    };
    let s = s
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(s);
    s.parse::<IpAddr>().is_ok()
}

impl fmt::Debug for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq for HostName {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for HostName {}

/// Compares with a name that is already normalised (lower case, no
/// trailing dot), such as a parsed SNI.
impl PartialEq<str> for HostName {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl Hash for HostName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl AsRef<str> for HostName {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

/// The name a wildcard pattern must have as its parent to match `name`:
/// `name` without its left-most label (`a.example.com` → `example.com`).
/// `None` when there is no left-most label to stand for (`example`,
/// `.example.com`). The caller normalises case and the trailing dot.
///
/// ```
/// assert_eq!(edge_sni::wildcard_parent("a.b.example.com"), Some("b.example.com"));
/// assert_eq!(edge_sni::wildcard_parent("localhost"), None);
/// ```
pub fn wildcard_parent(name: &str) -> Option<&str> {
    let (first, parent) = name.split_once('.')?;
    (!first.is_empty() && !parent.is_empty()).then_some(parent)
}

/// A host-name pattern: an exact name, or a wildcard `*.parent` whose `*`
/// is one whole left-most label, as in TLS certificates (RFC 6125 §6.4.3):
/// `*.example.com` matches `a.example.com`, not `example.com` nor
/// `a.b.example.com`. Names are [`HostName`]s (case and one trailing dot
/// ignored); `*` anywhere else is refused.
///
/// ```
/// use edge_sni::HostPattern;
/// let p: HostPattern = "*.Example.com".parse().unwrap();
/// assert!(p.matches("www.example.com"));
/// assert!(!p.matches("a.b.example.com"));
/// assert!(!p.matches("example.com"));
/// assert_eq!(p.to_string(), "*.example.com");
/// assert!("a.*.example.com".parse::<HostPattern>().is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// One name: `www.example.com`.
    Exact(HostName),
    /// `*.` and the parent: `*.example.com` holds `example.com`.
    Wildcard(HostName),
}

impl HostPattern {
    /// Validates `raw`: a host name, or `*.` followed by one.
    pub fn parse(raw: &[u8]) -> Result<Self, HostPatternError> {
        match raw.strip_prefix(b"*.") {
            Some(parent) if !parent.contains(&b'*') => Ok(Self::Wildcard(HostName::parse(parent)?)),
            _ if raw.contains(&b'*') => Err(HostPatternError::Wildcard),
            _ => Ok(Self::Exact(HostName::parse(raw)?)),
        }
    }

    /// Whether `name` matches (any case, one trailing dot ignored).
    pub fn matches(&self, name: &str) -> bool {
        let name = name.strip_suffix('.').unwrap_or(name);
        match self {
            Self::Exact(exact) => exact.as_str().eq_ignore_ascii_case(name),
            Self::Wildcard(parent) => {
                wildcard_parent(name).is_some_and(|p| parent.as_str().eq_ignore_ascii_case(p))
            }
        }
    }

    /// Whether every name `other` matches is matched by `self` too (a
    /// certificate name `self` serves a route for `other`).
    pub fn covers(&self, other: &HostPattern) -> bool {
        match (self, other) {
            (_, Self::Exact(name)) => self.matches(name.as_str()),
            (Self::Wildcard(a), Self::Wildcard(b)) => a == b,
            (Self::Exact(_), Self::Wildcard(_)) => false,
        }
    }

    /// Whether this is a `*.` pattern.
    pub fn is_wildcard(&self) -> bool {
        matches!(self, Self::Wildcard(_))
    }

    /// The exact name, or a wildcard's parent.
    pub fn name(&self) -> &HostName {
        match self {
            Self::Exact(n) | Self::Wildcard(n) => n,
        }
    }
}

impl FromStr for HostPattern {
    type Err = HostPatternError;
    fn from_str(s: &str) -> Result<Self, HostPatternError> {
        Self::parse(s.as_bytes())
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(n) => f.write_str(n.as_str()),
            Self::Wildcard(parent) => write!(f, "*.{parent}"),
        }
    }
}

impl fmt::Debug for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.to_string(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_case_and_trailing_dot() {
        assert_eq!(
            HostName::parse(b"Api.EXAMPLE.com.").unwrap().as_str(),
            "api.example.com"
        );
        assert_eq!(
            HostName::parse(b"_acme-challenge.x.org").unwrap().as_str(),
            "_acme-challenge.x.org"
        );
        assert_eq!(HostName::parse(b"localhost").unwrap().as_str(), "localhost");
    }

    #[test]
    fn rejects_bad_names_with_the_reason() {
        assert_eq!(HostName::parse(b""), Err(HostNameError::Empty));
        assert_eq!(HostName::parse(b"."), Err(HostNameError::Empty));
        assert_eq!(HostName::parse(b"a..b"), Err(HostNameError::EmptyLabel));
        assert_eq!(HostName::parse(b".a"), Err(HostNameError::EmptyLabel));
        assert_eq!(HostName::parse(b"a.b.."), Err(HostNameError::EmptyLabel));
        assert_eq!(
            HostName::parse(b"-a.com"),
            Err(HostNameError::HyphenAtLabelEdge)
        );
        assert_eq!(
            HostName::parse(b"a-.com"),
            Err(HostNameError::HyphenAtLabelEdge)
        );
        assert_eq!(HostName::parse(b"10.0.0.1"), Err(HostNameError::IpLiteral));
        assert_eq!(HostName::parse(b"::1"), Err(HostNameError::IpLiteral));
        assert_eq!(
            HostName::parse(b"[2001:db8::1]"),
            Err(HostNameError::IpLiteral)
        );
        assert_eq!(
            HostName::parse(b"1.2.3"),
            Err(HostNameError::NumericTopLevel)
        );
        assert_eq!(
            HostName::parse(b"a b.com"),
            Err(HostNameError::InvalidByte {
                byte: b' ',
                offset: 1
            })
        );
        assert_eq!(
            HostName::parse("ex\u{e4}mple.com".as_bytes()),
            Err(HostNameError::InvalidByte {
                byte: 0xc3,
                offset: 2
            })
        );
        let long_label = [b'a'; 64];
        assert_eq!(
            HostName::parse(&long_label),
            Err(HostNameError::LabelTooLong { len: 64 })
        );
        let mut long = Vec::new();
        for _ in 0..64 {
            long.extend_from_slice(b"abc.");
        }
        long.extend_from_slice(b"com");
        assert_eq!(
            HostName::parse(&long),
            Err(HostNameError::TooLong { len: 259 })
        );
    }

    #[test]
    fn accepts_the_longest_name() {
        let mut name = Vec::new();
        for _ in 0..3 {
            name.extend_from_slice(&[b'a'; 63]);
            name.push(b'.');
        }
        name.extend_from_slice(&[b'b'; 61]);
        assert_eq!(name.len(), 253);
        assert_eq!(HostName::parse(&name).unwrap().as_str().len(), 253);
    }

    #[test]
    fn patterns_match_one_whole_left_most_label() {
        let w: HostPattern = "*.Example.COM.".parse().unwrap();
        assert_eq!(w.to_string(), "*.example.com");
        assert!(w.is_wildcard());
        assert_eq!(w.name().as_str(), "example.com");
        assert!(w.matches("a.example.com"));
        assert!(w.matches("A.Example.com."));
        assert!(!w.matches("example.com"));
        assert!(!w.matches("a.b.example.com"), "one label, not any depth");
        assert!(!w.matches(".example.com"));
        assert!(!w.matches("xexample.com"));
        let e: HostPattern = "www.example.com".parse().unwrap();
        assert!(e.matches("WWW.example.com") && !e.matches("w.www.example.com"));
        assert!(!e.is_wildcard());
    }

    #[test]
    fn bad_patterns_say_why() {
        for bad in [
            "*", "**.a.com", "*a.com", "a.*.com", "a*.com", "*.*.com", "a.com*",
        ] {
            assert_eq!(
                bad.parse::<HostPattern>(),
                Err(HostPatternError::Wildcard),
                "{bad}"
            );
        }
        assert_eq!(
            "*.".parse::<HostPattern>(),
            Err(HostPatternError::Name(HostNameError::Empty))
        );
        assert_eq!(
            "a..b".parse::<HostPattern>(),
            Err(HostPatternError::Name(HostNameError::EmptyLabel))
        );
        assert_eq!(
            "*.10.0.0.1".parse::<HostPattern>(),
            Err(HostPatternError::Name(HostNameError::IpLiteral))
        );
        let e = "a b.com".parse::<HostPattern>().unwrap_err().to_string();
        assert_eq!(e, "byte 0x20 at offset 1 is not allowed in a host name");
    }

    #[test]
    fn covers_is_matching_every_name() {
        let p = |s: &str| s.parse::<HostPattern>().unwrap();
        assert!(p("*.example.com").covers(&p("a.example.com")));
        assert!(p("*.example.com").covers(&p("*.example.com")));
        assert!(!p("*.example.com").covers(&p("a.b.example.com")));
        assert!(!p("*.example.com").covers(&p("*.b.example.com")));
        assert!(!p("*.example.com").covers(&p("example.com")));
        assert!(p("a.example.com").covers(&p("a.example.com")));
        assert!(!p("a.example.com").covers(&p("*.example.com")));
    }

    #[test]
    fn wildcard_parents() {
        assert_eq!(wildcard_parent("a.example.com"), Some("example.com"));
        assert_eq!(wildcard_parent("a."), None);
        assert_eq!(wildcard_parent(".a"), None);
        assert_eq!(wildcard_parent("a"), None);
    }
}
