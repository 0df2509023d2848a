//! The tables the `show` commands print.

use std::fmt::Write as _;

/// Columns padded to their widest cell; the header starts with `#`, so
/// the output is both readable and `awk`-able.
pub(super) struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(super) fn new(header: &[&str]) -> Self {
        let mut h: Vec<String> = header.iter().map(|s| s.to_string()).collect();
        if let Some(first) = h.first_mut() {
            first.insert_str(0, "# ");
        }
        Self { rows: vec![h] }
    }

    pub(super) fn row(&mut self, r: Vec<String>) {
        self.rows.push(r);
    }

    pub(super) fn render(&self) -> String {
        let cols = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let width: Vec<usize> = (0..cols)
            .map(|i| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(i))
                    .map(String::len)
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for r in &self.rows {
            let mut line = String::new();
            for (i, cell) in r.iter().enumerate() {
                if i + 1 == r.len() {
                    line.push_str(cell);
                } else {
                    let w = width.get(i).copied().unwrap_or(0);
                    let _ = write!(line, "{cell:<w$} ");
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}
