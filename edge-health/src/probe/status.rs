//! A set of expected HTTP status codes.

use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;

use crate::error::ConfigError;

/// Expected HTTP statuses: single codes and inclusive ranges, parsed from
/// text like `"200-299,301,302"`. Default `200-399` (HAProxy's 2xx/3xx).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSet {
    ranges: Vec<RangeInclusive<u16>>,
}

impl Default for StatusSet {
    fn default() -> Self {
        Self {
            ranges: vec![200..=399],
        }
    }
}

impl StatusSet {
    /// A set from ranges; every code must be 100..=599 and every range
    /// non-empty. An empty set is refused.
    pub fn from_ranges(
        ranges: impl IntoIterator<Item = RangeInclusive<u16>>,
    ) -> Result<Self, ConfigError> {
        let ranges: Vec<_> = ranges.into_iter().collect();
        if ranges.is_empty() {
            return Err(ConfigError::Empty {
                field: "http.expect_status",
            });
        }
        for r in &ranges {
            for v in [*r.start(), *r.end()] {
                if !(100..=599).contains(&v) {
                    return Err(ConfigError::OutOfRange {
                        field: "http.expect_status",
                        value: u64::from(v),
                        min: 100,
                        max: 599,
                    });
                }
            }
            if r.start() > r.end() {
                return Err(ConfigError::Invalid {
                    field: "http.expect_status",
                    value: format!("{}-{}", r.start(), r.end()),
                    reason: "range start is above its end".into(),
                });
            }
        }
        Ok(Self { ranges })
    }

    /// Whether `status` is expected.
    pub fn contains(&self, status: u16) -> bool {
        self.ranges.iter().any(|r| r.contains(&status))
    }

    /// Whether the set is empty (only possible through `Default`-free
    /// construction errors; kept for validation).
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

impl FromStr for StatusSet {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, ConfigError> {
        let bad = |reason: &str| ConfigError::Invalid {
            field: "http.expect_status",
            value: s.to_owned(),
            reason: reason.to_owned(),
        };
        let mut ranges = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (a, b) = match part.split_once('-') {
                Some((a, b)) => (a.trim(), b.trim()),
                None => (part, part),
            };
            let a: u16 = a.parse().map_err(|_| bad("not a status code or range"))?;
            let b: u16 = b.parse().map_err(|_| bad("not a status code or range"))?;
            ranges.push(a..=b);
        }
        Self::from_ranges(ranges)
    }
}

impl fmt::Display for StatusSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if r.start() == r.end() {
                write!(f, "{}", r.start())?;
            } else {
                write!(f, "{}-{}", r.start(), r.end())?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_codes_and_ranges() {
        let s: StatusSet = "200-204, 301,404".parse().unwrap();
        assert!(s.contains(200) && s.contains(204) && s.contains(301) && s.contains(404));
        assert!(!s.contains(205) && !s.contains(500));
        assert_eq!(s.to_string(), "200-204,301,404");
    }

    #[test]
    fn refuses_empty_and_malformed() {
        assert_eq!(
            "".parse::<StatusSet>().unwrap_err().to_string(),
            "http.expect_status must not be empty"
        );
        assert!("2xx".parse::<StatusSet>().is_err());
        assert!("300-200".parse::<StatusSet>().is_err());
        assert!("99".parse::<StatusSet>().is_err());
        assert!("200-700".parse::<StatusSet>().is_err());
    }
}
