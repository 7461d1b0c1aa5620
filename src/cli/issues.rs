//! `osprey issues` and `osprey event ID`: the first human interface to the data.
//!
//! Both open the data directory as a RocksDB secondary instance, so they work while a server
//! owns it (and when none runs). `--json` prints the same structures the HTTP API returns.

use std::path::PathBuf;

use anyhow::{bail, Context};
use query::events::Event;
use query::issues::{Issue, IssueQuery, IssueSort};
use query::QueryService;
use serde_json::Value;
use storage::Store;

/// `osprey issues`: list issues as a table.
#[derive(Debug, Clone, clap::Args)]
pub struct IssuesArgs {
    /// The data directory.
    #[arg(long, env = "OSPREY_DATA", default_value = "./osprey-data")]
    pub data: PathBuf,
    /// Print JSON (Sentry's issue shape) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Only this project (slug or id).
    #[arg(long)]
    pub project: Option<String>,
    /// Sentry search syntax, e.g. `is:unresolved level:error timeout`.
    #[arg(long, short, default_value = "")]
    pub query: String,
    /// Sort: date, new, freq, user.
    #[arg(long, default_value = "date")]
    pub sort: String,
    /// How many issues to show (at most 100).
    #[arg(long, default_value_t = 25)]
    pub limit: usize,
    /// Start at this position (a number, or a Sentry cursor such as `0:100:0`).
    #[arg(long)]
    pub cursor: Option<String>,
}

/// `osprey event ID`: one event with its stack trace.
#[derive(Debug, Clone, clap::Args)]
pub struct EventArgs {
    /// Event id (32 hex, dashes allowed), or an issue id / short id for its latest event.
    pub id: String,
    /// The data directory.
    #[arg(long, env = "OSPREY_DATA", default_value = "./osprey-data")]
    pub data: PathBuf,
    /// Print the event as JSON (Sentry's event shape).
    #[arg(long)]
    pub json: bool,
}

fn open(data: &std::path::Path) -> anyhow::Result<QueryService> {
    let store = Store::open_secondary(data)
        .with_context(|| format!("cannot open the osprey data directory {}", data.display()))?;
    Ok(QueryService::new(store))
}

fn all_project_ids(store: &Store) -> Vec<u64> {
    store
        .meta()
        .organizations()
        .iter()
        .flat_map(|o| store.meta().projects_of_org(o.id))
        .map(|p| p.id)
        .collect()
}

/// Runs `osprey issues`.
pub fn run(args: IssuesArgs) -> anyhow::Result<()> {
    let qs = open(&args.data)?;
    let project_ids = match &args.project {
        None => Vec::new(),
        Some(p) => {
            let meta = qs.store().meta();
            let found = meta
                .organizations()
                .iter()
                .find_map(|o| meta.project_by_slug(o.id, p));
            match found {
                Some(project) => vec![project.id],
                None => bail!("no project {p}"),
            }
        }
    };
    let page = qs.issues(&IssueQuery {
        project_ids,
        query: args.query.clone(),
        sort: IssueSort::parse(&args.sort)?,
        limit: args.limit,
        cursor: args.cursor.clone(),
        ..Default::default()
    })?;
    if args.json {
        return emit(&format!(
            "{}\n",
            serde_json::to_string_pretty(&page.issues)?
        ));
    }
    let mut out = issues_table(&page.issues);
    if page.total > page.issues.len() {
        out.push_str(&format!(
            "({} of {} issues; more with --cursor {})\n",
            page.issues.len(),
            page.total,
            page.next_cursor.as_deref().unwrap_or("-")
        ));
    }
    emit(&out)
}

/// Writes to stdout; a closed pipe (`| head`) ends output quietly instead of panicking.
fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// `2024-01-02T03:04:05.678Z` → `2024-01-02 03:04:05`.
fn short_time(iso: &str) -> String {
    iso.replace('T', " ").chars().take(19).collect()
}

/// The table `osprey issues` prints.
pub fn issues_table(issues: &[Issue]) -> String {
    if issues.is_empty() {
        return "No issues.\n".into();
    }
    let header = ["SHORT ID", "TITLE", "COUNT", "USERS", "LAST SEEN", "STATUS"];
    let rows: Vec<[String; 6]> = issues
        .iter()
        .map(|i| {
            let status = match &i.substatus {
                Some(sub) if i.status == "unresolved" => format!("{} ({sub})", i.status),
                _ => i.status.clone(),
            };
            [
                i.short_id.clone(),
                cut(&i.title, 60),
                i.count.clone(),
                i.user_count.to_string(),
                short_time(&i.last_seen),
                status,
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| -> String {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            let pad = w - cell.chars().count();
            // Numbers right-aligned, text left-aligned.
            if i == 2 || i == 3 {
                out.push_str(&" ".repeat(pad));
                out.push_str(cell);
            } else {
                out.push_str(cell);
                if i + 1 < cells.len() {
                    out.push_str(&" ".repeat(pad));
                }
            }
            if i + 1 < cells.len() {
                out.push_str("  ");
            }
        }
        out.push('\n');
        out
    };
    let mut out = line(&header.map(String::from));
    for row in &rows {
        out.push_str(&line(row));
    }
    out
}

/// Runs `osprey event ID`.
pub fn run_event(args: EventArgs) -> anyhow::Result<()> {
    let qs = open(&args.data)?;
    let event = match uuid::Uuid::try_parse(args.id.trim()) {
        Ok(id) => qs.find_event(&all_project_ids(qs.store()), &id)?,
        Err(_) => match qs.issue_record(args.id.trim(), None)? {
            Some(issue) => qs.latest_event(issue.id)?,
            None => None,
        },
    };
    let Some(event) = event else {
        bail!("no event or issue {}", args.id);
    };
    if args.json {
        emit(&format!("{}\n", serde_json::to_string_pretty(&event)?))
    } else {
        emit(&render_event(&event))
    }
}

fn text(v: &Value) -> Option<&str> {
    v.as_str().filter(|s| !s.is_empty())
}

/// The human rendering of one event: header, tags, exceptions with their stack traces
/// (most recent call last, like a Python traceback), message, last breadcrumbs.
pub fn render_event(e: &Event) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "{}", e.title);
    let _ = writeln!(out, "event   {}", e.event_id);
    if let Some(g) = &e.group_id {
        let _ = writeln!(out, "issue   {g}");
    }
    let _ = writeln!(out, "time    {}", short_time(&e.date_created));
    let _ = writeln!(out, "type    {} ({})", e.event_type, e.platform);
    if let Some(c) = e.culprit.as_deref().filter(|c| !c.is_empty()) {
        let _ = writeln!(out, "culprit {c}");
    }
    if !e.tags.is_empty() {
        let tags: Vec<String> = e
            .tags
            .iter()
            .map(|t| format!("{}={}", t.key, t.value))
            .collect();
        let _ = writeln!(out, "tags    {}", tags.join(" "));
    }
    for entry in &e.entries {
        match entry["type"].as_str() {
            Some("exception") => {
                let values = entry["data"]["values"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                for exc in &values {
                    out.push('\n');
                    let ty = text(&exc["type"]).unwrap_or("Error");
                    match text(&exc["value"]) {
                        Some(v) => {
                            let _ = writeln!(out, "{ty}: {v}");
                        }
                        None => {
                            let _ = writeln!(out, "{ty}");
                        }
                    }
                    if let Some(mech) = text(&exc["mechanism"]["type"]) {
                        let handled = match exc["mechanism"]["handled"].as_bool() {
                            Some(false) => ", unhandled",
                            Some(true) => ", handled",
                            None => "",
                        };
                        let _ = writeln!(out, "  mechanism: {mech}{handled}");
                    }
                    render_frames(&mut out, &exc["stacktrace"]["frames"]);
                }
            }
            Some("stacktrace") => {
                out.push('\n');
                render_frames(&mut out, &entry["data"]["frames"]);
            }
            Some("message") => {
                if let Some(m) =
                    text(&entry["data"]["formatted"]).or_else(|| text(&entry["data"]["message"]))
                {
                    let _ = writeln!(out, "\nmessage: {m}");
                }
            }
            Some("breadcrumbs") => {
                let crumbs = entry["data"]["values"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                if !crumbs.is_empty() {
                    let _ = writeln!(out, "\nbreadcrumbs (last {}):", crumbs.len().min(10));
                    for c in crumbs.iter().rev().take(10).rev() {
                        let _ = writeln!(
                            out,
                            "  {} {} {}",
                            text(&c["timestamp"]).map(short_time).unwrap_or_default(),
                            text(&c["category"]).unwrap_or("-"),
                            text(&c["message"]).unwrap_or(""),
                        );
                    }
                }
            }
            Some("request") => {
                if let Some(url) = text(&entry["data"]["url"]) {
                    let method = text(&entry["data"]["method"]).unwrap_or("");
                    let _ = writeln!(out, "\nrequest: {method} {url}");
                }
            }
            _ => {}
        }
    }
    out
}

fn render_frames(out: &mut String, frames: &Value) {
    use std::fmt::Write;
    let Some(frames) = frames.as_array() else {
        return;
    };
    if frames.is_empty() {
        return;
    }
    let _ = writeln!(out, "  Stack trace (most recent call last):");
    for f in frames {
        let file = text(&f["filename"])
            .or_else(|| text(&f["absPath"]))
            .or_else(|| text(&f["module"]));
        let func = text(&f["function"]).unwrap_or("?");
        let line = f["lineNo"]
            .as_u64()
            .map(|l| format!(", line {l}"))
            .unwrap_or_default();
        let app = if f["inApp"].as_bool() == Some(true) {
            ""
        } else {
            "  [system]"
        };
        let _ = writeln!(
            out,
            "    File \"{}\"{line}, in {func}{app}",
            file.unwrap_or("?")
        );
        let current = f["lineNo"].as_u64();
        if let Some(ctx) = f["context"].as_array() {
            for pair in ctx {
                if pair[0].as_u64() == current && current.is_some() {
                    if let Some(code) = pair[1].as_str() {
                        let _ = writeln!(out, "      {}", code.trim());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use storage::records::StoredEvent;

    #[test]
    fn event_rendering_shows_the_stack() {
        let stored = StoredEvent {
            event_id: "ab".repeat(16),
            project_id: 1,
            issue_id: Some(3),
            timestamp_ms: 1_700_000_000_000,
            received_ms: 1_700_000_000_000,
            hashes: vec![],
            event: json!({
                "type": "error",
                "platform": "python",
                "title": "ValueError: bad",
                "exception": {"values": [{"type": "ValueError", "value": "bad",
                    "mechanism": {"type": "generic", "handled": false},
                    "stacktrace": {"frames": [
                        {"filename": "app.py", "function": "main", "lineno": 3, "context_line": "  run()", "in_app": true},
                        {"filename": "lib.py", "function": "run", "lineno": 9, "in_app": false},
                    ]}}]},
            }),
        };
        let text = render_event(&query::events::to_api_event(&stored, 0));
        assert!(text.starts_with("ValueError: bad\n"), "{text}");
        assert!(text.contains("mechanism: generic, unhandled"));
        assert!(
            text.contains("File \"app.py\", line 3, in main\n      run()"),
            "{text}"
        );
        assert!(text.contains("File \"lib.py\", line 9, in run  [system]"));
        assert_eq!(issues_table(&[]), "No issues.\n");
        assert_eq!(
            short_time("2023-11-14T22:13:20.123Z"),
            "2023-11-14 22:13:20"
        );
        assert_eq!(cut("abcdef", 4), "abc…");
    }
}
