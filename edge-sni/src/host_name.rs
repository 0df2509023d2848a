//! SNI host name validation and normalisation (RFC 6066 §3, RFC 1123 §2.1).

use crate::error::HostNameError;
use std::fmt;
use std::net::IpAddr;

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

impl AsRef<str> for HostName {
    fn as_ref(&self) -> &str {
        self.as_str()
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
}
