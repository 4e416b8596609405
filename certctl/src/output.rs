//! Output helpers: colour choice, tables, JSON.

use std::io::Write;

/// When to colour tables.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum ColorChoice {
    /// On a TTY, unless `NO_COLOR` is set.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

impl ColorChoice {
    pub(crate) fn enabled(self, tty: bool) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => tty && std::env::var_os("NO_COLOR").is_none(),
        }
    }
}

/// Prints `value` as pretty JSON on stdout.
pub(crate) fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

/// A plain text table with left-aligned columns.
pub(crate) struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Writes the table; `paint(row, col, text)` may wrap a cell in colour.
    pub(crate) fn print(&self, paint: impl Fn(usize, usize, &str) -> String) -> anyhow::Result<()> {
        let n = self.header.len();
        let mut width = vec![0; n];
        for r in std::iter::once(&self.header).chain(&self.rows) {
            for (i, c) in r.iter().enumerate().take(n) {
                width[i] = width[i].max(c.chars().count());
            }
        }
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        let line = |cells: &Vec<String>, row: Option<usize>| {
            let mut s = String::new();
            for (i, c) in cells.iter().enumerate().take(n) {
                let pad = width[i] - c.chars().count();
                let text = match row {
                    Some(r) => paint(r, i, c),
                    None => c.clone(),
                };
                s.push_str(&text);
                if i + 1 < n {
                    s.push_str(&" ".repeat(pad + 2));
                }
            }
            s
        };
        writeln!(out, "{}", line(&self.header, None))?;
        for (r, cells) in self.rows.iter().enumerate() {
            writeln!(out, "{}", line(cells, Some(r)))?;
        }
        out.flush()?;
        Ok(())
    }
}

/// Wraps text in an ANSI colour when `on`.
pub(crate) fn paint(on: bool, color: &str, text: &str) -> String {
    if !on {
        return text.to_string();
    }
    let code = match color {
        "red" => "31",
        "yellow" => "33",
        "green" => "32",
        "dim" => "2",
        _ => return text.to_string(),
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}
