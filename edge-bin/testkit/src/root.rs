//! Tests that need root: they fail without it, unless the run allows
//! skipping them (`EDGE_TESTS_ALLOW_SKIP=1`, for a developer without root);
//! then each skip is said on stderr and written to `EDGE_TESTS_SKIP_LOG`,
//! which `.ci/test` counts at the end of the run. Nothing passes silently.

use std::io::Write as _;

/// Whether the tests run as root (network namespaces need it; CI and the
/// project's test machines run the tests as root).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .is_some_and(|l| l.split_whitespace().nth(1) == Some("0"))
    })
}

/// Fails the calling test unless it runs as root.
pub fn require_root(what: &str) {
    assert!(
        is_root(),
        "{what} needs root (network namespaces); run the tests as root, as CI does"
    );
}

/// What a test that needs root does here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Root: the test runs.
    Run,
    /// No root and skipping allowed: the test returns, and says so.
    Skip,
    /// No root and skipping not allowed: the test fails.
    Fail,
}

/// The decision, from the facts.
pub fn verdict(root: bool, allow_skip: Option<&str>) -> Verdict {
    match (root, allow_skip) {
        (true, _) => Verdict::Run,
        (false, Some("1")) => Verdict::Skip,
        (false, _) => Verdict::Fail,
    }
}

/// Whether `test` must return at once: true only when it lacks root and
/// the run allows skipping (the skip is then written to stderr and to the
/// file `EDGE_TESTS_SKIP_LOG` names). Panics when it lacks root and
/// skipping is not allowed. Use it through [`needs_root!`](crate::needs_root).
pub fn skip_without_root(test: &str) -> bool {
    let allow = std::env::var("EDGE_TESTS_ALLOW_SKIP").ok();
    match verdict(is_root(), allow.as_deref()) {
        Verdict::Run => false,
        Verdict::Fail => panic!(
            "{test} needs root (network namespaces): run the tests as root, as CI does, \
             or set EDGE_TESTS_ALLOW_SKIP=1 to skip it (.ci/test then counts the skips)"
        ),
        Verdict::Skip => {
            eprintln!("SKIPPED {test}: needs root (EDGE_TESTS_ALLOW_SKIP=1)");
            if let Some(path) = std::env::var_os("EDGE_TESTS_SKIP_LOG") {
                let line = format!("{test}: needs root\n");
                let written = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .and_then(|mut f| f.write_all(line.as_bytes()));
                if let Err(e) = written {
                    panic!("cannot record the skip of {test} in {path:?}: {e}");
                }
            }
            true
        }
    }
}

/// Returns from the calling test when it lacks root and the run allows
/// skipping; fails it when skipping is not allowed.
#[macro_export]
macro_rules! needs_root {
    ($test:expr) => {
        if $crate::skip_without_root($test) {
            return;
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_runs_and_a_skip_must_be_asked_for() {
        assert_eq!(verdict(true, None), Verdict::Run);
        assert_eq!(verdict(true, Some("1")), Verdict::Run);
        assert_eq!(verdict(false, None), Verdict::Fail);
        assert_eq!(verdict(false, Some("0")), Verdict::Fail);
        assert_eq!(verdict(false, Some("")), Verdict::Fail);
        assert_eq!(verdict(false, Some("1")), Verdict::Skip);
    }
}
