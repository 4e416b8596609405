//! Output helpers: colour choice, tables, JSON, and escaping of untrusted
//! text for a terminal.
//!
//! Every human line certctl prints (table cells, errors, warnings) goes
//! through [`clean`]: control characters from untrusted sources (a
//! certificate's names, a CA's error text, a node's stderr, a name given on
//! the command line, a stored `last_error`) could otherwise move the cursor,
//! rewrite the title, or reorder text (bidi overrides). JSON is printed
//! exactly (serde escapes control characters itself).

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::Write;

/// The most characters of one value (a table cell, one error in a chain)
/// printed; longer ones are cut, with their size.
pub(crate) const MAX_VALUE: usize = 1000;

/// Characters that must not reach a terminal as they are: C0 controls
/// (including LF, CR, TAB, ESC, BEL), DEL, C1 controls, and the invisible
/// format characters that reorder or hide text (bidi embeddings, overrides
/// and isolates, directional marks, zero-width characters, BOM).
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2069}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}')
}

/// `s` with control and bidi characters written as escapes (`\n`, `\r`,
/// `\t`, `\x1b`, `\u{202e}`), so it stays on one line and shows what it is.
pub(crate) fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) && (c as u32) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:04x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// `s` cut to `max` characters, with its size: `abc… (12345 bytes)`.
pub(crate) fn clip(s: &str, max: usize) -> Cow<'_, str> {
    match s.char_indices().nth(max) {
        None => Cow::Borrowed(s),
        Some((at, _)) => Cow::Owned(format!("{}… ({} bytes)", &s[..at], s.len())),
    }
}

/// Untrusted text made safe for a terminal: cut to [`MAX_VALUE`]
/// characters, then escaped.
pub(crate) fn clean(s: &str) -> String {
    escape(&clip(s, MAX_VALUE)).into_owned()
}

/// An error and its causes on one line, as `{:#}` prints them, each part
/// cleaned ([`clean`]).
pub(crate) fn error_text(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for (i, c) in e.chain().enumerate() {
        if i > 0 {
            out.push_str(": ");
        }
        out.push_str(&clean(&c.to_string()));
    }
    out
}

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

    /// Adds a row; each cell is cleaned ([`clean`]), so a cell never spans
    /// lines nor carries terminal controls.
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells.iter().map(|c| clean(c)).collect());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_bidi_characters_are_escaped() {
        assert_eq!(escape("www.example.test"), "www.example.test");
        assert!(matches!(escape("plain"), Cow::Borrowed(_)));
        assert_eq!(escape("a\x1b[31mred\x1b[0m"), "a\\x1b[31mred\\x1b[0m");
        assert_eq!(escape("l1\nl2\rl3\tx"), "l1\\nl2\\rl3\\tx");
        assert_eq!(escape("bell\x07"), "bell\\x07");
        assert_eq!(escape("del\x7f"), "del\\x7f");
        // C1 controls: CSI (U+009B) starts an escape sequence on some terminals.
        assert_eq!(escape("c1\u{9b}31m"), "c1\\x9b31m");
        assert_eq!(escape("\u{85}"), "\\x85");
        // Bidi overrides, isolates and marks, zero-width characters.
        assert_eq!(escape("gro\u{202e}gpj.exe"), "gro\\u{202e}gpj.exe");
        assert_eq!(escape("\u{2066}x\u{2069}"), "\\u{2066}x\\u{2069}");
        assert_eq!(
            escape("\u{200f}\u{200b}\u{feff}"),
            "\\u{200f}\\u{200b}\\u{feff}"
        );
        // Ordinary non-ASCII text stays.
        assert_eq!(escape("café — ü"), "café — ü");
        let out = clean("a\nb\x1b]0;title\x07c");
        assert!(!out.chars().any(|c| c.is_control()), "{out:?}");
    }

    #[test]
    fn huge_values_are_cut_with_their_size() {
        let big = "x".repeat(12_345);
        let c = clean(&big);
        assert!(c.ends_with("… (12345 bytes)"), "{}", &c[c.len() - 30..]);
        assert_eq!(c.chars().filter(|&ch| ch == 'x').count(), MAX_VALUE);
        assert_eq!(clip("short", MAX_VALUE), "short");
        // Cut on a character boundary.
        assert_eq!(clip("ééé", 2), "éé… (6 bytes)");
    }

    #[test]
    fn error_chains_are_cleaned_part_by_part() {
        let inner = format!("node said: \x1b[2Jgone\n{}", "y".repeat(5000));
        let e = anyhow::anyhow!("{inner}").context("deploy to `n\u{202e}1` failed");
        let t = error_text(&e);
        assert!(
            t.starts_with("deploy to `n\\u{202e}1` failed: node said: \\x1b[2Jgone\\n"),
            "{t}"
        );
        assert!(t.ends_with(&format!("… ({} bytes)", inner.len())), "{t}");
        assert!(!t.contains('\n') && !t.contains('\x1b'));
    }

    #[test]
    fn a_table_cell_never_spans_lines() {
        let mut t = Table::new(&["A", "B"]);
        t.row(vec!["one\ntwo".into(), "\x1b[31m".into()]);
        assert_eq!(
            t.rows[0],
            vec!["one\\ntwo".to_string(), "\\x1b[31m".to_string()]
        );
    }
}
