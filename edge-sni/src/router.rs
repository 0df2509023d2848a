//! Choosing a route by SNI: exact names, `*.suffix` wildcards, a default
//! and a route for clients that send no SNI.

use std::collections::HashMap;
use std::fmt;

use crate::error::HostPatternError;
use crate::host_name::{HostPattern, wildcard_parent};

/// A route table keyed by SNI host name.
///
/// Lookup order: an exact name; else a wildcard `*.parent` whose `*`
/// stands for exactly one label (`*.example.com` matches `a.example.com`,
/// not `example.com` nor `a.b.example.com`: [`HostPattern`]'s meaning);
/// else the default route.
/// Clients without SNI get the [`no_sni`](SniRouter::no_sni) route, or the
/// default when there is none. Matching ignores case and a trailing dot.
///
/// ```
/// use edge_sni::SniRouter;
/// let router = SniRouter::new()
///     .exact("api.example.com", "api")
///     .wildcard("*.example.com", "web")
///     .default_route("fallback")
///     .no_sni("no-sni");
/// assert_eq!(router.route(Some("API.example.com")), Some(&"api"));
/// assert_eq!(router.route(Some("www.example.com")), Some(&"web"));
/// assert_eq!(router.route(Some("a.b.example.com")), Some(&"fallback"));
/// assert_eq!(router.route(None), Some(&"no-sni"));
/// ```
#[derive(Clone)]
pub struct SniRouter<T> {
    exact: HashMap<Box<str>, T>,
    wildcard: HashMap<Box<str>, T>,
    default: Option<T>,
    no_sni: Option<T>,
}

/// A route pattern that is neither a host name nor `*.` and a host name
/// (see [`HostPattern`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid SNI route pattern {pattern:?}: {reason}")]
pub struct PatternError {
    /// The pattern as given.
    pub pattern: String,
    /// What is wrong with it.
    pub reason: HostPatternError,
}

impl<T> Default for SniRouter<T> {
    fn default() -> Self {
        Self {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            default: None,
            no_sni: None,
        }
    }
}

impl<T> SniRouter<T> {
    /// An empty table: every lookup answers `None`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Routes `name` (any case, trailing dot ignored) to `target`. A later
    /// route for the same name replaces the earlier one.
    ///
    /// # Panics
    /// If `name` is not a host name; use [`SniRouter::add`] for names read
    /// from configuration.
    #[must_use]
    pub fn exact(self, name: &str, target: T) -> Self {
        self.add(name, target).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Routes every name one label below `parent` (`*.example.com`).
    ///
    /// # Panics
    /// If `pattern` is not `*.` followed by a host name.
    #[must_use]
    pub fn wildcard(self, pattern: &str, target: T) -> Self {
        assert!(
            pattern.starts_with("*."),
            "invalid SNI route pattern {pattern:?}: a wildcard must start with \"*.\""
        );
        self.add(pattern, target).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Adds an exact or wildcard (`*.`) route, checking the pattern.
    pub fn add(mut self, pattern: &str, target: T) -> Result<Self, PatternError> {
        let parsed = HostPattern::parse(pattern.as_bytes()).map_err(|reason| PatternError {
            pattern: pattern.to_owned(),
            reason,
        })?;
        self.insert(&parsed, target);
        Ok(self)
    }

    /// Adds a route for an already validated pattern.
    #[must_use]
    pub fn pattern(mut self, pattern: &HostPattern, target: T) -> Self {
        self.insert(pattern, target);
        self
    }

    fn insert(&mut self, pattern: &HostPattern, target: T) {
        let map = match pattern {
            HostPattern::Exact(_) => &mut self.exact,
            HostPattern::Wildcard(_) => &mut self.wildcard,
        };
        map.insert(pattern.name().as_str().into(), target);
    }

    /// The route for names that match no exact or wildcard rule (and for
    /// clients without SNI when no [`no_sni`](SniRouter::no_sni) route is set).
    #[must_use]
    pub fn default_route(mut self, target: T) -> Self {
        self.default = Some(target);
        self
    }

    /// The route for clients that send no SNI.
    #[must_use]
    pub fn no_sni(mut self, target: T) -> Self {
        self.no_sni = Some(target);
        self
    }

    /// The route for `sni`, or `None` when nothing matches and there is no
    /// default. Allocation-free for names up to 253 bytes.
    pub fn route(&self, sni: Option<&str>) -> Option<&T> {
        let Some(name) = sni else {
            return self.no_sni.as_ref().or(self.default.as_ref());
        };
        let name = name.strip_suffix('.').unwrap_or(name);
        let mut buf = [0u8; 253];
        let lower = match buf.get_mut(..name.len()) {
            Some(dst) => {
                dst.copy_from_slice(name.as_bytes());
                dst.make_ascii_lowercase();
                std::str::from_utf8(dst).ok()
            }
            None => None,
        };
        let Some(lower) = lower else {
            return self.default.as_ref();
        };
        self.exact
            .get(lower)
            .or_else(|| self.wildcard.get(wildcard_parent(lower)?))
            .or(self.default.as_ref())
    }

    /// Applies `f` to every target, keeping the rules (e.g. to wrap each
    /// backend in a service).
    pub fn map<U>(self, mut f: impl FnMut(T) -> U) -> SniRouter<U> {
        SniRouter {
            exact: self.exact.into_iter().map(|(k, v)| (k, f(v))).collect(),
            wildcard: self.wildcard.into_iter().map(|(k, v)| (k, f(v))).collect(),
            default: self.default.map(&mut f),
            no_sni: self.no_sni.map(&mut f),
        }
    }
}

impl<T> fmt::Debug for SniRouter<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut exact: Vec<&str> = self.exact.keys().map(|k| &**k).collect();
        exact.sort_unstable();
        let mut wildcard: Vec<String> = self.wildcard.keys().map(|k| format!("*.{k}")).collect();
        wildcard.sort_unstable();
        f.debug_struct("SniRouter")
            .field("exact", &exact)
            .field("wildcard", &wildcard)
            .field("default", &self.default.is_some())
            .field("no_sni", &self.no_sni.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> SniRouter<u32> {
        SniRouter::new()
            .exact("Exact.Example.com.", 1)
            .wildcard("*.example.com", 2)
            .wildcard("*.b.example.com", 3)
    }

    #[test]
    fn wildcard_matches_exactly_one_label() {
        let r = router();
        assert_eq!(r.route(Some("a.example.com")), Some(&2));
        assert_eq!(r.route(Some("A.EXAMPLE.COM.")), Some(&2));
        assert_eq!(r.route(Some("example.com")), None);
        assert_eq!(r.route(Some("x.a.example.com")), None);
        assert_eq!(r.route(Some("x.b.example.com")), Some(&3));
        assert_eq!(r.route(Some(".example.com")), None);
        assert_eq!(r.route(Some("aexample.com")), None);
    }

    #[test]
    fn exact_wins_over_wildcard() {
        let r = router();
        assert_eq!(r.route(Some("exact.example.com")), Some(&1));
        assert_eq!(r.route(Some("EXACT.example.COM")), Some(&1));
    }

    #[test]
    fn default_and_no_sni() {
        let r = router();
        assert_eq!(r.route(None), None);
        let r = r.default_route(9);
        assert_eq!(r.route(None), Some(&9), "no SNI falls back to the default");
        assert_eq!(r.route(Some("other.org")), Some(&9));
        let long = "a".repeat(300);
        assert_eq!(r.route(Some(&long)), Some(&9));
        let r = r.no_sni(7);
        assert_eq!(r.route(None), Some(&7));
        assert_eq!(r.route(Some("other.org")), Some(&9));
    }

    #[test]
    fn bad_patterns_are_errors() {
        for bad in [
            "", "*", "*.", "a.*.com", "a..com", "a b.com", "*a.com", "**.com",
        ] {
            assert!(SniRouter::new().add(bad, 1).is_err(), "{bad:?} accepted");
        }
        let r = SniRouter::new()
            .add("*.Example.com", 1)
            .unwrap()
            .add("host", 2)
            .unwrap();
        assert_eq!(r.route(Some("x.example.com")), Some(&1));
        assert_eq!(r.route(Some("host")), Some(&2));
        assert_eq!(r.map(|v| v * 10).route(Some("host")), Some(&20));
    }
}
