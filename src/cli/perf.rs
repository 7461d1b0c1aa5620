//! `osprey perf`: transaction performance (count, throughput, percentiles, apdex, failure
//! rate, error events) for a time range, as a table or JSON, straight from a data directory
//! or, with `--url`, from a running server's `/api/0/projects/{org}/{project}/performance/`
//! (the same report, so both print the same).

use std::path::PathBuf;

use anyhow::{bail, Context};
use query::perf::{GroupBy, PerfQuery, PerfReport, PerfStats, SortBy, TimeRange};
use query::QueryService;
use storage::Store;

/// Arguments of `osprey perf`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Data directory (opened read-only; a running server may own it).
    #[arg(long, env = "OSPREY_DATA", default_value = "./osprey-data")]
    pub data: PathBuf,
    /// Ask a running server instead of reading a data directory (e.g. http://127.0.0.1:9000).
    #[arg(long, env = "OSPREY_URL")]
    pub url: Option<String>,
    /// API token for `--url` (scope project:read or event:read).
    #[arg(long, env = "OSPREY_TOKEN", requires = "url")]
    pub token: Option<String>,
    /// Organization slug (with `--url`).
    #[arg(long, default_value = "default")]
    pub org: String,
    /// Project slug or id [default: the only project, or `default`].
    #[arg(long)]
    pub project: Option<String>,
    /// Relative range: the last 90m, 24h, 7d, … (ignored when --start is given).
    #[arg(long, default_value = "24h")]
    pub since: String,
    /// Absolute range start (ISO 8601, e.g. 2026-11-28T10:00:00Z).
    #[arg(long)]
    pub start: Option<String>,
    /// Absolute range end [default: now].
    #[arg(long)]
    pub end: Option<String>,
    /// Only this environment ("" = transactions without one).
    #[arg(long)]
    pub environment: Option<String>,
    /// Only this release.
    #[arg(long)]
    pub release: Option<String>,
    /// Only this transaction.
    #[arg(long)]
    pub transaction: Option<String>,
    /// Break down by transaction, release or environment.
    #[arg(long)]
    pub by: Option<GroupBy>,
    /// Sort the breakdown by count, avg, p50, p75, p95, p99, max, apdex, failure_rate or name.
    #[arg(long, default_value = "count")]
    pub sort: SortBy,
    /// Sort ascending.
    #[arg(long)]
    pub asc: bool,
    /// Rows of the breakdown.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Also print a time series at this interval (1m, 1h, 1d, …).
    #[arg(long)]
    pub interval: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Finds a project by slug or id; without one, the only project or the one called `default`.
pub fn resolve_project(store: &Store, wanted: Option<&str>) -> anyhow::Result<u64> {
    let meta = store.meta();
    let all: Vec<_> = meta
        .organizations()
        .iter()
        .flat_map(|o| meta.projects_of_org(o.id))
        .collect();
    let found = match wanted {
        Some(w) => all
            .iter()
            .find(|p| p.slug == w || p.id.to_string() == w)
            .with_context(|| format!("no project {w:?}"))?,
        None if all.len() == 1 => &all[0],
        None => all
            .iter()
            .find(|p| p.slug == "default")
            .context("several projects: choose one with --project")?,
    };
    Ok(found.id)
}

/// Percent-encodes a query-string value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The name a group-by or sort key has in a query string (its serde name).
fn wire_name(value: impl serde::Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The report from a running server.
fn remote_report(args: &Args, url: &str) -> anyhow::Result<PerfReport> {
    let token = args
        .token
        .clone()
        .context("--url needs --token (or OSPREY_TOKEN)")?;
    let remote = super::remote::Remote::new(&super::remote::RemoteArgs {
        url: url.to_owned(),
        token,
    })?;
    let project = args.project.as_deref().unwrap_or("default");
    let mut params = vec![("limit", args.limit.to_string())];
    match &args.start {
        Some(start) => {
            params.push(("start", start.clone()));
            params.extend(args.end.clone().map(|e| ("end", e)));
        }
        None => params.push(("statsPeriod", args.since.clone())),
    }
    params.extend(args.environment.clone().map(|v| ("environment", v)));
    params.extend(args.release.clone().map(|v| ("release", v)));
    params.extend(args.transaction.clone().map(|v| ("transaction", v)));
    params.extend(args.by.map(|b| ("by", wire_name(b))));
    params.push(("sort", wire_name(args.sort)));
    if args.asc {
        params.push(("asc", "1".into()));
    }
    params.extend(args.interval.clone().map(|v| ("interval", v)));
    let query: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    let value = remote.get(&format!(
        "projects/{}/{}/performance/?{}",
        encode(&args.org),
        encode(project),
        query.join("&")
    ))?;
    serde_json::from_value(value).context("the server's answer is not a performance report")
}

/// Runs `osprey perf`.
pub fn run(args: Args) -> anyhow::Result<()> {
    if args.limit == 0 {
        bail!("--limit must be at least 1");
    }
    if let Some(url) = args.url.clone() {
        let report = remote_report(&args, &url)?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", render(&report, args.by));
        }
        return Ok(());
    }
    let store = Store::open_secondary(&args.data)
        .with_context(|| format!("opening {}", args.data.display()))?;
    let project_id = resolve_project(&store, args.project.as_deref())?;
    let interval_ms = args
        .interval
        .as_deref()
        .map(query::perf::parse_duration_ms)
        .transpose()?;
    let query = PerfQuery {
        project_id,
        range: TimeRange::parse(
            Some(&args.since),
            args.start.as_deref(),
            args.end.as_deref(),
        )?,
        environment: args.environment,
        release: args.release,
        transaction: args.transaction,
        group_by: args.by,
        sort: args.sort,
        ascending: args.asc,
        limit: args.limit,
        interval_ms,
        histograms: false,
    };
    let report = QueryService::new(store).perf(&query)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report, args.by));
    }
    Ok(())
}

fn ms(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) if v >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

fn iso(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| ms.to_string())
}

fn row(name: &str, s: &PerfStats) -> Vec<String> {
    vec![
        name.to_string(),
        s.count.to_string(),
        format!("{:.2}", s.tpm),
        ms(s.avg_ms),
        ms(s.p50_ms),
        ms(s.p75_ms),
        ms(s.p95_ms),
        ms(s.p99_ms),
        ms(s.max_ms),
        s.apdex
            .map(|a| format!("{a:.3}{}", if s.apdex_exact { "" } else { "~" }))
            .unwrap_or_else(|| "-".into()),
        s.failure_rate
            .map(|f| format!("{:.2}%", f * 100.0))
            .unwrap_or_else(|| "-".into()),
        s.epm
            .map(|e| format!("{e:.2}"))
            .unwrap_or_else(|| "-".into()),
    ]
}

fn table(rows: &[Vec<String>]) -> String {
    let mut widths = vec![0; rows.first().map_or(0, Vec::len)];
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, w))| {
                if i == 0 {
                    format!("{c:<w$}")
                } else {
                    format!("{c:>w$}")
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The human-readable report: a summary line per group (or the total), then the series.
pub fn render(report: &PerfReport, by: Option<GroupBy>) -> String {
    let header: Vec<String> = [
        "NAME", "COUNT", "TPM", "AVG ms", "P50", "P75", "P95", "P99", "MAX", "APDEX", "FAILURES",
        "EPM",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut out = format!(
        "project {}  {} .. {}",
        report.project_id,
        iso(report.start_ms),
        iso(report.end_ms)
    );
    if let Some(t) = report.total.apdex_threshold_ms {
        out.push_str(&format!("  apdex T={t} ms"));
    }
    out.push_str("\n\n");
    let mut rows = vec![header.clone(), row("(all)", &report.total)];
    for g in &report.groups {
        let name = if g.key.is_empty() {
            match by {
                Some(GroupBy::Environment) => "(no environment)",
                Some(GroupBy::Release) => "(no release)",
                _ => "(none)",
            }
        } else {
            g.key.as_str()
        };
        rows.push(row(name, &g.stats));
    }
    out.push_str(&table(&rows));
    if report.groups_omitted > 0 {
        out.push_str(&format!(
            "… {} more (raise --limit)\n",
            report.groups_omitted
        ));
    }
    if !report.series.is_empty() {
        out.push('\n');
        let mut rows = vec![header];
        rows[0][0] = "INTERVAL".into();
        for p in &report.series {
            rows.push(row(&iso(p.start_ms), &p.stats));
        }
        out.push_str(&table(&rows));
    }
    if report.total.count > 0 && !report.total.apdex_exact {
        out.push_str("~ apdex partly estimated from histograms (the threshold changed since those transactions arrived)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_groups_and_empty_values() {
        let report = PerfReport {
            project_id: 1,
            start_ms: 0,
            end_ms: 3_600_000,
            total: PerfStats {
                count: 3,
                tpm: 0.05,
                p95_ms: Some(1234.6),
                apdex: Some(0.5),
                apdex_exact: true,
                ..PerfStats::default()
            },
            groups: vec![query::perf::PerfGroup {
                key: String::new(),
                stats: PerfStats::default(),
            }],
            groups_omitted: 2,
            series: Vec::new(),
        };
        let text = render(&report, Some(GroupBy::Environment));
        assert!(text.contains("(no environment)"), "{text}");
        assert!(text.contains("1235"), "{text}");
        assert!(text.contains("0.500"), "{text}");
        assert!(text.contains("2 more"), "{text}");
    }

    #[test]
    fn runs_on_a_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), &storage::StoreOptions::default()).unwrap();
            store.bootstrap(None, None).unwrap();
            let project = store.meta().project(1).unwrap();
            let mut folder = processor::transactions::TransactionFolder::new();
            let now = storage::now_ms() as f64 / 1000.0;
            let event = processor::value::Value::from(serde_json::json!({
                "transaction": "/checkout",
                "start_timestamp": now - 0.25,
                "timestamp": now,
                "contexts": {"trace": {"trace_id": "a".repeat(32), "span_id": "b".repeat(16)}},
            }));
            folder.add(&project, &event).unwrap();
            let mut batch = storage::WriteBatch::default();
            folder.flush_into(&store, &mut batch);
            store.write(batch, true).unwrap();
            store.flush().unwrap();
        }
        let args = |json: bool, project: Option<&str>| Args {
            data: dir.path().to_path_buf(),
            url: None,
            token: None,
            org: "default".into(),
            project: project.map(String::from),
            since: "1h".into(),
            start: None,
            end: None,
            environment: None,
            release: None,
            transaction: None,
            by: Some(GroupBy::Transaction),
            sort: SortBy::P95,
            asc: false,
            limit: 5,
            interval: Some("10m".into()),
            json,
        };
        run(args(false, None)).unwrap();
        run(args(true, Some("default"))).unwrap();
        assert!(run(args(false, Some("nope"))).is_err());
        let store = Store::open_secondary(dir.path()).unwrap();
        let report = QueryService::new(store)
            .perf(&PerfQuery {
                project_id: 1,
                range: TimeRange::parse(Some("1h"), None, None).unwrap(),
                ..PerfQuery::default()
            })
            .unwrap();
        assert_eq!(report.total.count, 1);
        assert_eq!(report.total.apdex, Some(1.0));
    }
}
