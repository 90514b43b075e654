//! Pure parts of dashboards and lineage: argument checks and the Mermaid flowchart.

use crate::error::{PgMartError, Result};

pub const MAX_NAME: usize = 200;
/// Mermaid's parser refuses more than 500 edges; its renderer more than 50,000 characters.
pub const MAX_EDGES: usize = 400;
pub const MAX_CHARS: usize = 45_000;

/// A dashboard's name: any text people use for it ("Sales overview"), 1 to 200 characters, no
/// control characters.
pub fn check_name(name: &str) -> Result<()> {
    if name.trim().is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) || name.trim() != name {
        return Err(PgMartError::invalid(format!("invalid dashboard name \"{}\"", name.escape_default()))
            .detail(format!("A dashboard name has 1 to {MAX_NAME} characters, no control characters and no leading or trailing spaces."))
            .hint("For example: 'Sales overview'."));
    }
    Ok(())
}

pub fn check_required(what: &str, value: &str) -> Result<()> {
    if value.trim().is_empty() {
        Err(PgMartError::invalid(format!("a dashboard needs a non-empty {what}"))
            .hint("Every dashboard names its owner (a person or team) and says what it shows."))
    } else {
        Ok(())
    }
}

/// A dashboard's URL: http or https, as BI tools link (no javascript: or data: links shown next
/// to a chart).
pub fn check_url(url: &str) -> Result<()> {
    let u = url.trim();
    let lower = u.to_ascii_lowercase();
    let rest = lower.strip_prefix("https://").or_else(|| lower.strip_prefix("http://"));
    match rest {
        Some(r) if !r.is_empty() && !r.starts_with('/') && !u.chars().any(|c| c.is_whitespace() || c.is_control()) => Ok(()),
        _ => Err(PgMartError::invalid(format!("invalid dashboard url \"{}\"", url.escape_default()))
            .hint("Give the dashboard's http:// or https:// address, e.g. 'https://bi.example.com/d/42'.")),
    }
}

/// A lineage graph to draw: nodes by (name, kind), edges between them.
#[derive(Default)]
pub struct Graph {
    nodes: Vec<Node>,
    edges: Vec<(usize, usize, String, i32)>,
}

struct Node {
    name: String,
    kind: String,
    status: Option<String>,
}

impl Graph {
    /// The node of this name and kind (added when new).
    pub fn node(&mut self, name: &str, kind: &str) -> usize {
        if let Some(i) = self.nodes.iter().position(|n| n.name == name && n.kind == kind) {
            return i;
        }
        self.nodes.push(Node { name: name.to_string(), kind: kind.to_string(), status: None });
        self.nodes.len() - 1
    }

    pub fn edge(&mut self, from: usize, to: usize, via: &str, depth: i32) {
        if !self.edges.iter().any(|(a, b, _, _)| *a == from && *b == to) {
            self.edges.push((from, to, via.to_string(), depth));
        }
    }

    pub fn set_status(&mut self, name: &str, kind: &str, status: &str) {
        if let Some(n) = self.nodes.iter_mut().find(|n| n.name == name && n.kind == kind) {
            n.status = Some(status.to_string());
        }
    }

    /// The flowchart: synthetic node ids (never object names: no keyword, dot or quote problems),
    /// escaped labels carrying the status word (never colour alone), one shape per kind, dotted
    /// edges for what a dashboard declares, nearest edges first and at most [`MAX_EDGES`] edges and
    /// about [`MAX_CHARS`] characters (a comment says what was left out).
    pub fn to_mermaid(&self, focus: Option<(&str, &str)>) -> String {
        let mut edges: Vec<&(usize, usize, String, i32)> = self.edges.iter().collect();
        edges.sort_by_key(|e| e.3);
        let mut out = String::from("flowchart LR\n");
        let mut shown = vec![false; self.nodes.len()];
        if let Some((name, kind)) = focus {
            if let Some(i) = self.nodes.iter().position(|n| n.name == name && n.kind == kind) {
                shown[i] = true;
            }
        }
        let mut body = String::new();
        let mut kept = 0usize;
        for (a, b, via, _) in &edges {
            if kept >= MAX_EDGES || body.len() > MAX_CHARS {
                break;
            }
            shown[*a] = true;
            shown[*b] = true;
            let arrow = if via == "dashboard" { "-.->" } else { "-->" };
            body.push_str(&format!("  n{a} {arrow} n{b}\n"));
            kept += 1;
        }
        for (i, n) in self.nodes.iter().enumerate() {
            if shown[i] {
                out.push_str(&format!("  n{i}{}\n", shape(&n.kind, &label(n))));
            }
        }
        out.push_str(&body);
        if kept < edges.len() {
            out.push_str(&format!("  %% {} more edges left out (Mermaid draws at most {MAX_EDGES}); ask pgmart.lineage() for all\n", edges.len() - kept));
        }
        for (class, style) in [
            ("ok", "fill:#d4edda,stroke:#28a745,color:#155724"),
            ("warn", "fill:#fff3cd,stroke:#d39e00,color:#856404"),
            ("fail", "fill:#f8d7da,stroke:#dc3545,color:#721c24"),
            ("unknown", "fill:#e2e3e5,stroke:#6c757d,color:#383d41,stroke-dasharray:5 5"),
        ] {
            out.push_str(&format!("  classDef {class} {style}\n"));
            let ids: Vec<String> = self
                .nodes
                .iter()
                .enumerate()
                .filter(|(i, n)| shown[*i] && status_class(n) == class)
                .map(|(i, _)| format!("n{i}"))
                .collect();
            if !ids.is_empty() {
                out.push_str(&format!("  class {} {class}\n", ids.join(",")));
            }
        }
        if let Some((name, kind)) = focus {
            if let Some(i) = self.nodes.iter().position(|n| n.name == name && n.kind == kind) {
                out.push_str(&format!("  style n{i} stroke-width:4px\n"));
            }
        }
        out
    }
}

fn status_class(n: &Node) -> &str {
    match n.status.as_deref() {
        Some(s @ ("ok" | "warn" | "fail")) => s,
        _ => "unknown",
    }
}

fn label(n: &Node) -> String {
    format!("{}<br>{}: {}", escape(&n.name), escape(&n.kind.replace('_', " ")), status_class(n))
}

/// A node's shape by kind, around an already escaped, quoted label.
fn shape(kind: &str, label: &str) -> String {
    match kind {
        "table" | "foreign_table" => format!("[(\"{label}\")]"),
        "materialized_view" | "rollup" => format!("([\"{label}\"])"),
        "metric" => format!(">\"{label}\"]"),
        "dashboard" => format!("{{{{\"{label}\"}}}}"),
        "function" => format!("[[\"{label}\"]]"),
        _ => format!("[\"{label}\"]"),
    }
}

/// Escape text for a quoted Mermaid label: `#` first (the entities start with it), then the
/// characters that end or change a label; newlines become line breaks.
pub fn escape(text: &str) -> String {
    let mut s = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '#' => s.push_str("#35;"),
            '"' => s.push_str("#quot;"),
            '<' => s.push_str("#lt;"),
            '>' => s.push_str("#gt;"),
            '&' => s.push_str("#amp;"),
            '`' => s.push_str("#96;"),
            '\n' => s.push_str("<br>"),
            c if c.is_control() => s.push(' '),
            c => s.push(c),
        }
    }
    s
}
