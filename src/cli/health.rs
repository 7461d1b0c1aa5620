//! `osprey health`: release health (sessions, crashes, crash-free sessions and users) of a
//! project for a time range, per release or for one release, as a table or JSON, straight
//! from a data directory (the numbers of `GET /api/0/organizations/{org}/sessions/`).

use std::path::PathBuf;

use anyhow::Context;
use query::sessions::{ReleaseHealth, SessionsGroupBy, SessionsQuery};
use query::QueryService;
use storage::Store;

/// Arguments of `osprey health`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Data directory (opened read-only; a running server may own it).
    #[arg(long, env = "OSPREY_DATA", default_value = "./osprey-data")]
    pub data: PathBuf,
    /// Project slug or id [default: the only project, or `default`].
    #[arg(long)]
    pub project: Option<String>,
    /// Only this release (else one row per release).
    #[arg(long)]
    pub release: Option<String>,
    /// Only this environment.
    #[arg(long)]
    pub environment: Option<String>,
    /// Relative range: the last 24h, 7d, … (widened to whole hours).
    #[arg(long, default_value = "24h")]
    pub since: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// One row: a release ("" = every release) and its health.
type Row = (String, ReleaseHealth);

/// The rows of a project: per release (most sessions first), or the one release asked for.
pub fn rows(
    query: &QueryService,
    project_id: u64,
    release: Option<&str>,
    environment: Option<&str>,
    (start, end): (u64, u64),
) -> anyhow::Result<Vec<Row>> {
    let answer = query.sessions(&SessionsQuery::health(
        project_id,
        release,
        environment,
        (start, end),
        vec![SessionsGroupBy::Release],
    ))?;
    let mut rows: Vec<Row> = answer
        .groups
        .iter()
        .map(|g| {
            let name = match g.key.first() {
                Some(query::sessions::GroupValue::Name(n)) => n.clone(),
                _ => String::new(),
            };
            (name, ReleaseHealth::of_group(g))
        })
        .filter(|(_, h)| h.sessions > 0)
        .collect();
    rows.sort_by(|a, b| b.1.sessions.cmp(&a.1.sessions).then_with(|| a.0.cmp(&b.0)));
    Ok(rows)
}

fn percent(rate: Option<f64>) -> String {
    rate.map_or_else(|| "-".to_owned(), |r| format!("{:.2}%", r * 100.0))
}

/// The table of [`rows`].
pub fn render(rows: &[Row]) -> String {
    if rows.is_empty() {
        return "no sessions in the range\n".to_owned();
    }
    let mut lines = vec![[
        "RELEASE".to_owned(),
        "SESSIONS".to_owned(),
        "ERRORED".to_owned(),
        "CRASHED".to_owned(),
        "USERS".to_owned(),
        "CRASH-FREE SESSIONS".to_owned(),
        "CRASH-FREE USERS".to_owned(),
    ]];
    for (release, h) in rows {
        lines.push([
            release.clone(),
            h.sessions.to_string(),
            h.sessions_errored.to_string(),
            h.sessions_crashed.to_string(),
            h.users.to_string(),
            percent(h.crash_free_sessions),
            percent(h.crash_free_users),
        ]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for line in &lines {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Runs `osprey health`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let store = Store::open_secondary(&args.data)
        .with_context(|| format!("opening {}", args.data.display()))?;
    let project_id = super::perf::resolve_project(&store, args.project.as_deref())?;
    let range = query::perf::parse_duration_ms(&args.since)?;
    let now = storage::now_ms();
    let rows = rows(
        &QueryService::new(store),
        project_id,
        args.release.as_deref(),
        args.environment.as_deref(),
        (now.saturating_sub(range), now),
    )?;
    if args.json {
        let list: Vec<serde_json::Value> = rows
            .iter()
            .map(|(release, h)| {
                let mut v = serde_json::to_value(h).unwrap_or_default();
                v["release"] = release.clone().into();
                v
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        print!("{}", render(&rows));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_row_per_release_from_processed_sessions() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &storage::StoreOptions::default()).unwrap();
        store.bootstrap(None, None).unwrap();
        let now = storage::now_ms();
        let started = (now - 60_000) as f64 / 1000.0;
        let records: Vec<storage::LogRecord> = [
            (1u128, "a@1", "exited"),
            (2, "a@1", "crashed"),
            (3, "a@2", "exited"),
        ]
        .into_iter()
        .map(|(sid, release, status)| {
            let payload = serde_json::json!({
                "sid": uuid::Uuid::from_u128(sid).to_string(), "did": format!("u{sid}"),
                "init": true, "started": started, "status": status,
                "attrs": {"release": release},
            });
            let mut r = processor::pipeline::event_record(
                1,
                now,
                &serde_json::to_vec(&payload).unwrap(),
                None,
            );
            r.item_type = "session".into();
            r
        })
        .collect();
        processor::Processor::new(store.clone(), processor::ProcessorConfig::default())
            .unwrap()
            .process_and_commit(&records)
            .unwrap();
        let rows = rows(
            &QueryService::new(store),
            1,
            None,
            None,
            (now - 3_600_000, now),
        )
        .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].0.as_str(), rows[0].1.sessions), ("a@1", 2));
        assert_eq!(rows[0].1.crash_free_sessions, Some(0.5));
        let table = render(&rows);
        assert!(
            table.contains("50.00%") && table.contains("100.00%"),
            "{table}"
        );
    }
}
