//! The report as one self-contained HTML page (`certctl report --html`):
//! inline CSS and inline SVG, no script, nothing fetched (a
//! Content-Security-Policy of `default-src 'none'` forbids it even if some
//! text slipped through unescaped), written atomically.
//!
//! Layout, chosen to stay readable at 200 certificates × 20 nodes:
//! - a header: when, by which version, the overall severity, counts, and one
//!   chip per node with its worst severity across all certificates;
//! - one line per certificate, most urgent first (worst severity, then the
//!   earliest expiry of the store's or any served chain, then name). The line
//!   is the `<summary>` of a `<details>`, open when the certificate is not ok:
//!   severity, name, a timeline on an axis shared by every line (the warning
//!   and critical windows from now shaded, the store's validity as a bar
//!   ending in a diamond, each node's served chain as a dot, drifted nodes
//!   ringed), the expiry, and a chip for each node that differs from the
//!   store or has a finding; the nodes that match are only counted;
//! - inside: the store's facts and findings, a row per differing node
//!   (deployed and served versions, findings by severity, drift tagged), and
//!   the names of the matching nodes on one line.
//!
//! Every string from the report (names, subjects, serials, error texts) goes
//! through [`escape`].

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use time::{Duration, OffsetDateTime};

use super::{
    natural, short, CertificateReport, Finding, FindingKind, NodeReport, Report, Severity,
};
use crate::inspect::{date, human_signed};
use crate::store::{write_atomic, StoreError};

/// Width of a timeline, in CSS pixels.
const W: f64 = 360.0;

/// Escapes text for HTML element content and quoted attribute values.
/// Control, bidirectional and zero-width characters are written visibly as
/// `\u{..}` so they cannot reorder or hide what the page shows.
pub(super) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if hidden(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

fn hidden(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(c,
            '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

/// The page for `report`, made by certctl `version`. Pure: the time shown is
/// the report's own `generated_at`, which is also the "now" of the timelines.
pub fn render_html(report: &Report, version: &str) -> String {
    let now = report.generated_at;
    let certs: Vec<CertView<'_>> = {
        let mut v: Vec<CertView<'_>> = report.certificates.iter().map(CertView::new).collect();
        v.sort_by(|a, b| {
            Reverse(a.cert.severity)
                .cmp(&Reverse(b.cert.severity))
                .then(a.expiry.is_none().cmp(&b.expiry.is_none()))
                .then(a.expiry.cmp(&b.expiry))
                .then_with(|| natural(&a.cert.name).cmp(&natural(&b.cert.name)))
        });
        v
    };
    let axis = Axis::new(report, &certs);

    let mut o = String::with_capacity(4096 + certs.len() * 2048);
    o.push_str(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n",
    );
    let _ = writeln!(
        o,
        "<meta name=\"generator\" content=\"certctl {}\">",
        escape(version)
    );
    let _ = writeln!(
        o,
        "<title>certctl report: {} ({})</title>",
        report.severity,
        date(now)
    );
    o.push_str(STYLE);
    o.push_str("</head>\n<body>\n");
    header(&mut o, report, &certs, version);
    o.push_str("<main>\n");
    axis.header(&mut o, &certs);
    for c in &certs {
        certificate(&mut o, c, &axis, now);
    }
    if certs.is_empty() {
        o.push_str("<p class=\"empty\">No certificates in this report.</p>\n");
    }
    o.push_str("</main>\n</body>\n</html>\n");
    o
}

/// Writes [`render_html`]'s page to `path` atomically (mode 0644), so a
/// browser or web server never sees half a page.
pub fn write_html(report: &Report, version: &str, path: &Path) -> Result<(), StoreError> {
    write_atomic(path, render_html(report, version).as_bytes(), 0o644)
}

// ------------------------------------------------------------------ model

/// A node of a certificate, with what the page needs to know about it.
struct NodeView<'a> {
    node: &'a NodeReport,
    /// Deployed or served differs from the store's version.
    drift: bool,
    /// Serves the store's version, deployed it, and has no finding.
    plain: bool,
    /// Earliest end of the served chains.
    served_until: Option<OffsetDateTime>,
}

struct CertView<'a> {
    cert: &'a CertificateReport,
    nodes: Vec<NodeView<'a>>,
    /// Earliest end of the store's version and the served chains.
    expiry: Option<OffsetDateTime>,
}

impl<'a> CertView<'a> {
    fn new(cert: &'a CertificateReport) -> Self {
        let mut nodes: Vec<NodeView<'a>> = cert
            .nodes
            .iter()
            .map(|n| {
                let drift = all_findings(n).any(|f| {
                    matches!(
                        f.kind,
                        FindingKind::DeployedDrift { .. } | FindingKind::ServedDrift { .. }
                    )
                });
                let served_until = n
                    .served
                    .iter()
                    .filter_map(|s| {
                        s.certificate
                            .as_ref()
                            .map(super::ServedCert::chain_not_after)
                    })
                    .min();
                let plain = n.severity == Severity::Ok
                    && all_findings(n).next().is_none()
                    && cert.store.as_ref().is_some_and(|s| {
                        n.deployed_version.as_deref() == Some(s.version.as_str())
                            && n.served.iter().all(|p| {
                                p.certificate
                                    .as_ref()
                                    .is_some_and(|c| c.leaf.serial == s.serial)
                            })
                    });
                NodeView {
                    node: n,
                    drift,
                    plain,
                    served_until,
                }
            })
            .collect();
        nodes.sort_by(|a, b| {
            Reverse(a.node.severity)
                .cmp(&Reverse(b.node.severity))
                .then_with(|| natural(&a.node.node).cmp(&natural(&b.node.node)))
        });
        let expiry = cert
            .store
            .as_ref()
            .map(|s| s.not_after)
            .into_iter()
            .chain(nodes.iter().filter_map(|n| n.served_until))
            .min();
        Self {
            cert,
            nodes,
            expiry,
        }
    }

    fn drifted(&self) -> usize {
        self.nodes.iter().filter(|n| n.drift).count()
    }
}

fn all_findings(n: &NodeReport) -> impl Iterator<Item = &Finding> {
    n.findings
        .iter()
        .chain(n.served.iter().flat_map(|s| s.findings.iter()))
}

// ------------------------------------------------------------------ header

fn header(o: &mut String, report: &Report, certs: &[CertView<'_>], version: &str) {
    let sev = report.severity;
    let _ = writeln!(
        o,
        "<header>\n<h1>certctl report <span class=\"badge sev-{sev}\" data-severity=\"{sev}\">{sev}</span></h1>"
    );
    let _ = writeln!(
        o,
        "<p class=\"meta\">Generated <time datetime=\"{}\">{}</time> by certctl {}.</p>",
        rfc3339(report.generated_at),
        date(report.generated_at),
        escape(version)
    );
    let count = |s: Severity| certs.iter().filter(|c| c.cert.severity == s).count();
    let drifted = certs.iter().filter(|c| c.drifted() > 0).count();
    let _ = write!(o, "<p class=\"counts\">{} certificate(s): ", certs.len());
    for s in [
        Severity::Critical,
        Severity::Unknown,
        Severity::Warning,
        Severity::Ok,
    ] {
        let _ = write!(o, "<span class=\"count sev-{s}\">{} {s}</span> ", count(s));
    }
    let _ = writeln!(
        o,
        "· <span class=\"count drift\">{drifted} with drift</span></p>"
    );

    // Per node: its worst severity over all certificates, and its drift.
    let mut nodes: BTreeMap<(&str, u64, &str), (Severity, usize, usize)> = BTreeMap::new();
    for c in certs {
        for n in &c.nodes {
            let e = nodes
                .entry(natural(&n.node.node))
                .or_insert((Severity::Ok, 0, 0));
            e.0 = e.0.max(n.node.severity);
            e.1 += usize::from(n.drift);
            e.2 += 1;
        }
    }
    if !nodes.is_empty() {
        let _ = writeln!(
            o,
            "<section class=\"nodes\" aria-label=\"nodes\"><h2>{} node(s)</h2>",
            nodes.len()
        );
        for ((_, _, name), (sev, drift, total)) in &nodes {
            let name = escape(name);
            let _ = write!(
                o,
                "<span class=\"chip sev-{sev}{}\" data-node=\"{name}\" data-severity=\"{sev}\" title=\"{name}: worst {sev} over {total} certificate(s), {drift} drifted\">{name}",
                if *drift > 0 { " drift" } else { "" }
            );
            if *drift > 0 {
                let _ = write!(o, " <small>{drift} drift</small>");
            }
            o.push_str("</span>\n");
        }
        o.push_str("</section>\n");
    }
    o.push_str("</header>\n");
}

// ---------------------------------------------------------------- timeline

/// The time axis shared by every certificate's line.
struct Axis {
    now: OffsetDateTime,
    start: OffsetDateTime,
    end: OffsetDateTime,
    warning: Duration,
    critical: Duration,
}

impl Axis {
    fn new(report: &Report, certs: &[CertView<'_>]) -> Self {
        let now = report.generated_at;
        let days = Duration::days;
        let points: Vec<OffsetDateTime> = certs
            .iter()
            .flat_map(|c| {
                c.cert
                    .store
                    .as_ref()
                    .map(|s| s.not_after)
                    .into_iter()
                    .chain(c.nodes.iter().filter_map(|n| n.served_until))
            })
            .collect();
        // Thresholds are per certificate; the shading uses the widest.
        let th = |f: fn(&super::Thresholds) -> std::time::Duration| {
            certs
                .iter()
                .map(|c| f(&c.cert.thresholds))
                .max()
                .and_then(|d| Duration::try_from(d).ok())
                .unwrap_or(Duration::ZERO)
        };
        let warning = th(|t| t.warning);
        let critical = th(|t| t.critical);
        let earliest = points.iter().min().copied().unwrap_or(now).min(now);
        let latest = points.iter().max().copied().unwrap_or(now);
        let start = (earliest - days(2)).max(now - days(30));
        // Past half a year the scale would squeeze the windows to nothing:
        // later ends sit at the right edge (their dates are beside the line).
        let end = (latest + days(5))
            .max(now + warning + days(14))
            .min(now + days(180).max(warning * 3));
        Self {
            now,
            start,
            end,
            warning,
            critical,
        }
    }

    fn x(&self, t: OffsetDateTime) -> f64 {
        let span = (self.end - self.start).as_seconds_f64().max(1.0);
        ((t - self.start).as_seconds_f64() / span * W).clamp(0.0, W)
    }

    /// The shaded windows and the "now" line, drawn under every line.
    fn shading(&self, o: &mut String, height: u32) {
        let n = self.x(self.now);
        let c = self.x(self.now + self.critical);
        let w = self.x(self.now + self.warning);
        let _ = write!(
            o,
            "<rect class=\"past\" x=\"0\" y=\"0\" width=\"{n:.1}\" height=\"{height}\"/>\
             <rect class=\"win-critical\" x=\"{n:.1}\" y=\"0\" width=\"{:.1}\" height=\"{height}\"/>\
             <rect class=\"win-warning\" x=\"{c:.1}\" y=\"0\" width=\"{:.1}\" height=\"{height}\"/>\
             <line class=\"now\" x1=\"{n:.1}\" x2=\"{n:.1}\" y1=\"0\" y2=\"{height}\"/>",
            c - n,
            w - c
        );
    }

    fn header(&self, o: &mut String, certs: &[CertView<'_>]) {
        o.push_str("<div class=\"row axis\"><div class=\"sev\"></div><div class=\"name\">certificate</div><div class=\"tl\">");
        let _ = write!(
            o,
            "<svg class=\"timeline\" width=\"{W}\" height=\"30\" viewBox=\"0 0 {W} 30\" role=\"img\" aria-label=\"time axis\">"
        );
        self.shading(o, 30);
        for i in 0..=3 {
            let t = self.start + (self.end - self.start) * (f64::from(i) / 3.0);
            let x = self.x(t);
            let anchor = match i {
                0 => "start",
                3 => "end",
                _ => "middle",
            };
            let _ = write!(
                o,
                "<line class=\"tick\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"22\" y2=\"30\"/>\
                 <text x=\"{x:.1}\" y=\"18\" text-anchor=\"{anchor}\">{}</text>",
                t.date()
            );
        }
        o.push_str(
            "</svg></div><div class=\"exp\">expires</div><div class=\"where\">nodes</div></div>\n",
        );
        let _ = writeln!(
            o,
            "<p class=\"legend\"><span class=\"key win-critical\"></span> critical window (within {} of now) \
             <span class=\"key win-warning\"></span> warning window (within {}) \
             <span class=\"key now\"></span> now · <svg width=\"12\" height=\"12\" viewBox=\"0 0 12 12\"><path class=\"store\" d=\"M6 1 L11 6 L6 11 L1 6 Z\"/></svg> store's version ends \
             <svg width=\"12\" height=\"12\" viewBox=\"0 0 12 12\"><circle class=\"served sev-ok\" cx=\"6\" cy=\"6\" r=\"4\"/></svg> served chain ends (colour: node's severity) \
             <svg width=\"12\" height=\"12\" viewBox=\"0 0 12 12\"><circle class=\"served sev-ok drift\" cx=\"6\" cy=\"6\" r=\"4\"/></svg> drift{}</p>",
            human_signed(self.critical),
            human_signed(self.warning),
            if certs.iter().any(|c| {
                c.cert.thresholds.warning != certs[0].cert.thresholds.warning
                    || c.cert.thresholds.critical != certs[0].cert.thresholds.critical
            }) {
                " · windows shown for the widest thresholds; each certificate's own are in its details"
            } else {
                ""
            }
        );
    }

    fn line(&self, o: &mut String, c: &CertView<'_>) {
        let _ = write!(
            o,
            "<svg class=\"timeline\" width=\"{W}\" height=\"22\" viewBox=\"0 0 {W} 22\" role=\"img\" aria-label=\"expiry timeline of {}\">",
            escape(&c.cert.name)
        );
        self.shading(o, 22);
        if let Some(s) = &c.cert.store {
            let (a, b) = (self.x(s.not_before), self.x(s.not_after));
            let _ = write!(
                o,
                "<rect class=\"validity\" x=\"{a:.1}\" y=\"9\" width=\"{:.1}\" height=\"4\"><title>store version {}: {} to {}</title></rect>",
                (b - a).max(0.0),
                escape(&s.version),
                date(s.not_before),
                date(s.not_after)
            );
        }
        // One dot per distinct (end, severity, drift), listing its nodes.
        let mut dots: BTreeMap<(i64, Severity, bool), Vec<&str>> = BTreeMap::new();
        for n in &c.nodes {
            if let Some(t) = n.served_until {
                dots.entry((t.unix_timestamp(), n.node.severity, n.drift))
                    .or_default()
                    .push(&n.node.node);
            }
        }
        for ((t, sev, drift), names) in &dots {
            let Ok(t) = OffsetDateTime::from_unix_timestamp(*t) else {
                continue;
            };
            let x = self.x(t);
            let _ = write!(
                o,
                "<circle class=\"served sev-{sev}{}\" cx=\"{x:.1}\" cy=\"11\" r=\"{}\"><title>served until {}{} by {}</title></circle>",
                if *drift { " drift" } else { "" },
                if *drift { 5 } else { 4 },
                date(t),
                if *drift { " (drift)" } else { "" },
                escape(&names.join(", "))
            );
        }
        if let Some(s) = &c.cert.store {
            let x = self.x(s.not_after);
            let _ = write!(
                o,
                "<path class=\"store\" d=\"M{x:.1} 4 L{:.1} 11 L{x:.1} 18 L{:.1} 11 Z\"><title>store version {} ends {}</title></path>",
                x + 6.0,
                x - 6.0,
                escape(&s.version),
                date(s.not_after)
            );
        }
        o.push_str("</svg>");
    }
}

// ------------------------------------------------------------ certificates

fn certificate(o: &mut String, c: &CertView<'_>, axis: &Axis, now: OffsetDateTime) {
    let cert = c.cert;
    let sev = cert.severity;
    let name = escape(&cert.name);
    let drifted = c.drifted();
    let _ = write!(
        o,
        "<details class=\"cert sev-{sev}{}\" data-certificate=\"{name}\" data-severity=\"{sev}\"{}>\n<summary class=\"row\">",
        if drifted > 0 { " drift" } else { "" },
        if sev == Severity::Ok { "" } else { " open" }
    );
    let _ = write!(
        o,
        "<div class=\"sev\"><span class=\"badge sev-{sev}\">{sev}</span></div><div class=\"name\"><b>{name}</b>"
    );
    if let Some(first) = cert.domains.first() {
        let _ = write!(o, "<br><small>{}", escape(first));
        if cert.domains.len() > 1 {
            let _ = write!(o, " +{}", cert.domains.len() - 1);
        }
        o.push_str("</small>");
    }
    o.push_str("</div><div class=\"tl\">");
    axis.line(o, c);
    o.push_str("</div><div class=\"exp\">");
    match c.expiry {
        Some(t) => {
            let _ = write!(
                o,
                "{}<br><small>{}</small>",
                t.date(),
                escape(&human_signed(t - now))
            );
        }
        None => o.push('-'),
    }
    o.push_str("</div><div class=\"where\">");
    let plain = c.nodes.iter().filter(|n| n.plain).count();
    for n in c.nodes.iter().filter(|n| !n.plain) {
        let nsev = n.node.severity;
        let nn = escape(&n.node.node);
        let _ = write!(
            o,
            "<span class=\"chip sev-{nsev}{}\" data-severity=\"{nsev}\" title=\"{nn}: {nsev}{}\">{nn}{}</span> ",
            if n.drift { " drift" } else { "" },
            if n.drift { ", drift" } else { "" },
            if n.drift { " <small>drift</small>" } else { "" }
        );
    }
    if plain > 0 {
        let _ = write!(o, "<span class=\"plain\">{plain} match the store</span>");
    } else if c.nodes.is_empty() {
        o.push_str("<span class=\"plain\">no nodes</span>");
    }
    o.push_str("</div></summary>\n<div class=\"body\">\n");

    // The store.
    match &cert.store {
        Some(s) => {
            let _ = writeln!(
                o,
                "<p class=\"store\"><b>store</b> version <code>{}</code>, serial <code>{}</code>, {} issued by {}; \
                 valid {} to {} ({} left); renewal {} {}{}.</p>",
                escape(&s.version),
                escape(short(&s.serial)),
                escape(&s.key_type.to_string()),
                escape(&s.issuer),
                date(s.not_before),
                date(s.not_after),
                escape(&human_signed(s.not_after - now)),
                if s.renewal.due { "<b>due</b> since" } else { "due" },
                date(s.renewal.due_at),
                escape(&format!(" ({})", s.renewal.reason))
            );
        }
        None => o.push_str("<p class=\"store\"><b>store</b>: no version</p>\n"),
    }
    let _ = writeln!(
        o,
        "<p class=\"th\">Thresholds: warning under {}, critical under {}. Domains: {}.</p>",
        human_std(cert.thresholds.warning),
        human_std(cert.thresholds.critical),
        escape(&cert.domains.join(", "))
    );
    findings(o, cert.findings.iter().map(|f| (None, f)));

    // The nodes that differ, one row each.
    let differ: Vec<&NodeView<'_>> = c.nodes.iter().filter(|n| !n.plain).collect();
    if !differ.is_empty() {
        o.push_str(
            "<table class=\"nodes\"><thead><tr><th>node</th><th>deployed</th><th>served</th><th>until</th><th>status</th><th>findings</th></tr></thead><tbody>\n",
        );
        for n in differ {
            node_row(o, cert, n, now);
        }
        o.push_str("</tbody></table>\n");
    }
    let same: Vec<&NodeView<'_>> = c.nodes.iter().filter(|n| n.plain).collect();
    if !same.is_empty() {
        let _ = write!(
            o,
            "<p class=\"same\">{} node(s) deployed and serve the store's version, no findings: ",
            same.len()
        );
        for (i, n) in same.iter().enumerate() {
            let nn = escape(&n.node.node);
            let _ = write!(
                o,
                "{}<span class=\"node\" data-node=\"{nn}\" data-severity=\"ok\">{nn}</span>",
                if i > 0 { ", " } else { "" }
            );
        }
        o.push_str("</p>\n");
    }
    o.push_str("</div>\n</details>\n");
}

fn node_row(o: &mut String, cert: &CertificateReport, n: &NodeView<'_>, now: OffsetDateTime) {
    let node = n.node;
    let sev = node.severity;
    let nn = escape(&node.node);
    let live = cert.store.as_ref().map(|s| s.version.as_str());
    let _ = write!(
        o,
        "<tr class=\"sev-{sev}{}\" data-node=\"{nn}\" data-severity=\"{sev}\"><td><b>{nn}</b><br><small>{}</small></td><td>",
        if n.drift { " drift" } else { "" },
        escape(&node.probe_address)
    );
    match &node.deployed_version {
        Some(v) => {
            let differs = live.is_some_and(|l| l != v);
            let _ = write!(
                o,
                "<code{}>{}</code>",
                if differs { " class=\"differs\"" } else { "" },
                escape(v)
            );
        }
        None => o.push_str("<i>unknown</i>"),
    }
    o.push_str("</td><td>");
    let store_serial = cert.store.as_ref().map(|s| s.serial.as_str());
    for (i, s) in node.served.iter().enumerate() {
        if i > 0 {
            o.push_str("<br>");
        }
        let _ = write!(o, "<small>{}</small> ", escape(&s.sni));
        match &s.certificate {
            Some(c) => {
                let differs = store_serial.is_some_and(|ss| ss != c.leaf.serial);
                let _ = write!(
                    o,
                    "<code{} title=\"{}\">{}</code>",
                    if differs { " class=\"differs\"" } else { "" },
                    escape(&c.leaf.subject),
                    escape(short(&c.leaf.serial))
                );
            }
            None => o.push_str("<i>nothing</i>"),
        }
    }
    o.push_str("</td><td>");
    match n.served_until {
        Some(t) => {
            let _ = write!(
                o,
                "{}<br><small>{}</small>",
                t.date(),
                escape(&human_signed(t - now))
            );
        }
        None => o.push('-'),
    }
    let _ = write!(
        o,
        "</td><td><span class=\"badge sev-{sev}\">{sev}</span>{}</td><td>",
        if n.drift {
            " <span class=\"tag drift\">drift</span>"
        } else {
            ""
        }
    );
    let listed = node.findings.iter().map(|f| (None, f)).chain(
        node.served
            .iter()
            .flat_map(|s| s.findings.iter().map(move |f| (Some(s.sni.as_str()), f))),
    );
    findings(o, listed);
    o.push_str("</td></tr>\n");
}

/// A list of findings, worst first, each marked with its severity; a
/// finding repeated for several SNI names is listed once with all of them.
fn findings<'a>(o: &mut String, list: impl Iterator<Item = (Option<&'a str>, &'a Finding)>) {
    let mut merged: Vec<(&Finding, Vec<&str>)> = Vec::new();
    for (sni, f) in list {
        match merged
            .iter_mut()
            .find(|(g, _)| g.message == f.message && g.severity == f.severity)
        {
            Some((_, snis)) => snis.extend(sni),
            None => merged.push((f, sni.into_iter().collect())),
        }
    }
    if merged.is_empty() {
        return;
    }
    merged.sort_by_key(|(f, _)| Reverse(f.severity));
    o.push_str("<ul class=\"findings\">");
    for (f, snis) in merged {
        let sev = f.severity;
        let drift = matches!(
            f.kind,
            FindingKind::DeployedDrift { .. } | FindingKind::ServedDrift { .. }
        );
        let _ = write!(
            o,
            "<li class=\"finding sev-{sev}{}\" data-severity=\"{sev}\" data-kind=\"{}\"><span class=\"badge sev-{sev}\">{sev}</span> ",
            if drift { " drift" } else { "" },
            f.kind.name()
        );
        if !snis.is_empty() {
            let _ = write!(o, "<small>{}:</small> ", escape(&snis.join(", ")));
        }
        let _ = write!(o, "{}</li>", escape(&f.message));
    }
    o.push_str("</ul>");
}

// ------------------------------------------------------------------ helpers

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn human_std(d: std::time::Duration) -> String {
    crate::inspect::human_duration(d)
}

const STYLE: &str = r#"<style>
:root { --ok:#2e7d32; --ok-bg:#e8f5e9; --warning:#9a5b00; --warning-bg:#fff3dc;
  --unknown:#5b4bb7; --unknown-bg:#eeeafc; --critical:#c62828; --critical-bg:#fdecea;
  --drift:#c2185b; --line:#d7d9de; --muted:#5f6368; }
* { box-sizing: border-box; }
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #1f2328; background: #fafbfc; }
header { padding: 16px 24px 8px; background: #fff; border-bottom: 1px solid var(--line); }
h1 { font-size: 20px; margin: 0 0 4px; }
h2 { font-size: 14px; margin: 8px 0 4px; color: var(--muted); font-weight: 600; }
.meta, .counts { margin: 2px 0; color: var(--muted); }
main { padding: 8px 24px 32px; }
code { font: 12px ui-monospace, SFMono-Regular, Menlo, monospace; }
small { color: var(--muted); }
.badge { display: inline-block; min-width: 64px; text-align: center; padding: 1px 6px; border-radius: 10px;
  font-size: 12px; font-weight: 600; text-transform: uppercase; color: #fff; }
.badge.sev-ok { background: var(--ok); } .badge.sev-warning { background: var(--warning); }
.badge.sev-unknown { background: var(--unknown); } .badge.sev-critical { background: var(--critical); }
.count { font-weight: 600; } .count.sev-ok { color: var(--ok); } .count.sev-warning { color: var(--warning); }
.count.sev-unknown { color: var(--unknown); } .count.sev-critical { color: var(--critical); } .count.drift { color: var(--drift); }
.chip { display: inline-block; margin: 1px 2px; padding: 0 6px; border-radius: 4px; font-size: 12px;
  border: 1px solid var(--line); white-space: nowrap; }
.chip.sev-ok { background: var(--ok-bg); } .chip.sev-warning { background: var(--warning-bg); border-color: var(--warning); }
.chip.sev-unknown { background: var(--unknown-bg); border-color: var(--unknown); }
.chip.sev-critical { background: var(--critical-bg); border-color: var(--critical); }
.chip.drift, .tag.drift { outline: 2px dashed var(--drift); outline-offset: -1px; }
.chip small, .tag.drift { color: var(--drift); font-weight: 600; }
.tag { display: inline-block; margin-top: 2px; padding: 0 5px; border-radius: 3px; font-size: 11px; }
.row { display: grid; grid-template-columns: 84px 200px 372px 96px 1fr; gap: 8px; align-items: center; padding: 4px 8px; }
.axis { position: sticky; top: 0; background: #fafbfc; z-index: 1; font-size: 12px; color: var(--muted); border-bottom: 1px solid var(--line); }
.legend { font-size: 12px; color: var(--muted); margin: 4px 8px 8px; }
.legend svg { vertical-align: middle; }
.key { display: inline-block; width: 14px; height: 10px; vertical-align: middle; border: 1px solid var(--line); }
span.key.win-critical { background: #f6c9c6; } span.key.win-warning { background: #fde3b0; }
span.key.now { width: 2px; background: #1f2328; border: 0; }
details.cert { background: #fff; border: 1px solid var(--line); border-left: 6px solid var(--ok); border-radius: 4px; margin: 4px 0; }
details.cert.sev-warning { border-left-color: var(--warning); } details.cert.sev-unknown { border-left-color: var(--unknown); }
details.cert.sev-critical { border-left-color: var(--critical); }
summary { cursor: pointer; list-style: none; } summary::-webkit-details-marker { display: none; }
details.cert[open] > summary { border-bottom: 1px solid var(--line); }
.name b { word-break: break-all; }
.plain { color: var(--muted); font-size: 12px; }
.body { padding: 6px 12px 10px 100px; }
.body p { margin: 4px 0; }
table.nodes { border-collapse: collapse; width: 100%; margin: 6px 0; font-size: 13px; }
table.nodes th { text-align: left; font-weight: 600; color: var(--muted); border-bottom: 1px solid var(--line); padding: 2px 6px; }
table.nodes td { vertical-align: top; padding: 3px 6px; border-bottom: 1px solid #eef0f2; }
table.nodes td:nth-child(4), table.nodes td:nth-child(5) { white-space: nowrap; }
tr.sev-warning > td:first-child { box-shadow: inset 3px 0 var(--warning); }
tr.sev-unknown > td:first-child { box-shadow: inset 3px 0 var(--unknown); }
tr.sev-critical > td:first-child { box-shadow: inset 3px 0 var(--critical); }
code.differs { color: var(--drift); font-weight: 700; }
ul.findings { margin: 0; padding: 0; list-style: none; }
li.finding { margin: 1px 0; padding: 1px 4px; border-radius: 3px; }
li.finding.sev-warning { background: var(--warning-bg); } li.finding.sev-unknown { background: var(--unknown-bg); }
li.finding.sev-critical { background: var(--critical-bg); }
li.finding .badge { min-width: 56px; font-size: 10px; }
li.finding.drift { outline: 1px dashed var(--drift); }
.timeline { display: block; overflow: visible; }
.timeline text { font-size: 10px; fill: var(--muted); }
.timeline .past { fill: #f1f2f4; } .timeline .win-critical { fill: #f6c9c6; } .timeline .win-warning { fill: #fde3b0; }
.timeline .now { stroke: #1f2328; stroke-width: 1.5; } .timeline .tick { stroke: var(--muted); }
.timeline .validity { fill: #9aa0a6; }
path.store { fill: #1f2328; stroke: #fff; stroke-width: 1; }
circle.served { stroke: #fff; stroke-width: 1; } circle.served.sev-ok { fill: var(--ok); }
circle.served.sev-warning { fill: var(--warning); } circle.served.sev-unknown { fill: var(--unknown); }
circle.served.sev-critical { fill: var(--critical); }
circle.served.drift { stroke: var(--drift); stroke-width: 2.5; }
.empty { color: var(--muted); }
</style>
"#;
