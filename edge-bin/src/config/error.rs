//! Config errors that name the file, the line and the key.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// The config file's text, kept to turn byte spans into `line:column` and key paths.
#[derive(Debug)]
pub struct Source {
    pub path: PathBuf,
    pub text: String,
}

impl Source {
    pub fn new(path: &Path, text: String) -> Self {
        Self {
            path: path.to_path_buf(),
            text,
        }
    }

    /// An error at `span` (byte offsets into the file).
    pub fn error(
        &self,
        span: Range<usize>,
        key: impl Into<String>,
        msg: impl Into<String>,
    ) -> ConfigError {
        let (line, column) = if span == (0..0) {
            (0, 0)
        } else {
            self.line_col(span.start)
        };
        ConfigError {
            file: self.path.clone(),
            line,
            column,
            key: key.into(),
            message: msg.into(),
        }
    }

    /// An error the toml parser reported; the key path is recovered from the text.
    pub fn from_toml(&self, e: &toml::de::Error) -> ConfigError {
        let span = e.span().unwrap_or(0..0);
        let key = self.key_at(span.start);
        let message = e.message().trim().to_string();
        let (line, column) = self.line_col(span.start);
        ConfigError {
            file: self.path.clone(),
            line,
            column,
            key,
            message,
        }
    }

    /// 1-based line and column of a byte offset.
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = self.text.get(..offset).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let column = before
            .rfind('\n')
            .map_or(before.len(), |nl| before.len() - nl - 1)
            + 1;
        (line, column)
    }

    /// Best-effort dotted key path for the line containing `offset`:
    /// the last `[table]` / `[[array]]` header above it plus the line's `key =`.
    pub fn key_at(&self, offset: usize) -> String {
        let offset = offset.min(self.text.len());
        let before = self.text.get(..offset).unwrap_or("");
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let line = self.text.get(line_start..).unwrap_or("");
        let line = line.lines().next().unwrap_or("").trim();
        let mut table = String::new();
        let mut counts: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        for l in self.text.get(..line_start).unwrap_or("").lines() {
            let l = l.trim();
            if let Some(name) = l.strip_prefix("[[").and_then(|r| r.split("]]").next()) {
                let name = name.trim().to_string();
                let n = counts.entry(name.clone()).or_insert(0);
                *n += 1;
                table = format!("{name}[{}]", *n - 1);
            } else if let Some(name) = l.strip_prefix('[').and_then(|r| r.split(']').next()) {
                table = name.trim().to_string();
            }
        }
        if line.starts_with('[') {
            return line
                .trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_string();
        }
        let key = line
            .split_once('=')
            .map(|(k, _)| k.trim().trim_matches('"').to_string())
            .unwrap_or_default();
        match (table.is_empty(), key.is_empty()) {
            (true, _) => key,
            (false, true) => table,
            (false, false) => format!("{table}.{key}"),
        }
    }
}

/// One problem in the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based; 0 when the problem has no place in the file (a default value).
    pub line: usize,
    pub column: usize,
    /// Dotted key path, e.g. `route[2].pool`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// All problems found in one file.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_path_and_position() {
        let text = "[https]\nlisten = [\"x\"]\n[[pool]]\nname = \"a\"\n[[pool]]\nname = \"b\"\nbogus = 1\n";
        let src = Source::new(Path::new("e.toml"), text.into());
        let off = text.find("bogus").unwrap();
        assert_eq!(src.key_at(off), "pool[1].bogus");
        let e = src.error(off..off + 5, "pool[1].bogus", "unknown");
        assert_eq!(e.to_string(), "e.toml:7:1: pool[1].bogus: unknown");
        let off = text.find("listen").unwrap();
        assert_eq!(src.key_at(off), "https.listen");
    }
}
