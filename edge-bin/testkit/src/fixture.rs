//! Config templates: files with `{{name}}` placeholders, filled in at run
//! time (ports, paths, snippets). A placeholder left unfilled, or a value
//! for a placeholder the file does not have, fails the test.

use std::path::{Path, PathBuf};

/// A template read from a fixture file.
#[derive(Debug, Clone)]
pub struct Fixture {
    path: PathBuf,
    text: String,
    values: Vec<(String, String)>,
}

impl Fixture {
    /// Reads `dir/name` (tests pass
    /// `concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures")`).
    pub fn load(dir: impl AsRef<Path>, name: &str) -> Fixture {
        let path = dir.as_ref().join(name);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()));
        Fixture {
            path,
            text,
            values: Vec::new(),
        }
    }

    /// A template from text (for tests of this type).
    pub fn from_text(text: &str) -> Fixture {
        Fixture {
            path: PathBuf::from("<text>"),
            text: text.to_owned(),
            values: Vec::new(),
        }
    }

    /// Fills `{{key}}` with `value`.
    pub fn set(mut self, key: &str, value: impl std::fmt::Display) -> Fixture {
        self.values.push((key.to_owned(), value.to_string()));
        self
    }

    /// Fills `{{key}}` with a path.
    pub fn path(self, key: &str, value: impl AsRef<Path>) -> Fixture {
        let v = value.as_ref().display().to_string();
        self.set(key, v)
    }

    /// The text with every placeholder filled.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(self.text.len());
        let mut rest = self.text.as_str();
        let mut used = vec![false; self.values.len()];
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .unwrap_or_else(|| panic!("{}: an unclosed {{{{ placeholder", self.path.display()));
            let key = &after[..end];
            let i = self
                .values
                .iter()
                .rposition(|(k, _)| k == key)
                .unwrap_or_else(|| panic!("{}: no value for {{{{{key}}}}}", self.path.display()));
            used[i] = true;
            out.push_str(&self.values[i].1);
            rest = &after[end + 2..];
        }
        out.push_str(rest);
        for (i, (k, _)) in self.values.iter().enumerate() {
            let shadowed = self.values[i + 1..].iter().any(|(k2, _)| k2 == k);
            assert!(
                used[i] || shadowed,
                "{}: no placeholder {{{{{k}}}}}",
                self.path.display()
            );
        }
        out
    }

    /// Renders into `dir/name`; its path.
    pub fn write(&self, dir: impl AsRef<Path>, name: &str) -> PathBuf {
        let p = dir.as_ref().join(name);
        std::fs::write(&p, self.render()).unwrap();
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_and_checked() {
        let f = Fixture::from_text("listen = [\"127.0.0.1:{{port}}\"]\nx = { a = 1 }\n{{extra}}");
        let text = f.clone().set("port", 8443).set("extra", "").render();
        assert_eq!(text, "listen = [\"127.0.0.1:8443\"]\nx = { a = 1 }\n");
        let again = f.clone().set("port", 1).set("port", 2).set("extra", "y");
        assert_eq!(
            again.render(),
            "listen = [\"127.0.0.1:2\"]\nx = { a = 1 }\ny"
        );
        let missing = std::panic::catch_unwind(|| f.clone().set("port", 1).render());
        assert!(missing.is_err(), "an unfilled placeholder must fail");
        let unknown = std::panic::catch_unwind(|| {
            f.clone()
                .set("port", 1)
                .set("extra", "")
                .set("nope", 1)
                .render()
        });
        assert!(unknown.is_err(), "a value without a placeholder must fail");
    }

    #[test]
    fn every_fixture_of_the_workspace_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
        let n = std::fs::read_dir(&dir)
            .map(|d| d.filter_map(Result::ok).count())
            .unwrap_or(0);
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let f = Fixture::load(&dir, &name);
            assert!(!f.text.is_empty(), "{name} is empty");
            assert_eq!(
                f.text.matches("{{").count(),
                f.text.matches("}}").count(),
                "{name}"
            );
        }
        assert!(n > 0, "no fixtures in {}", dir.display());
    }
}
