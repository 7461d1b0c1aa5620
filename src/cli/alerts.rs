//! `osprey alerts list|create|delete`: the alert rules of a project on a running server, in
//! Sentry's two shapes — issue alerts (`/api/0/projects/{org}/{project}/rules/`) and metric
//! alerts (`/api/0/organizations/{org}/alert-rules/`). The server validates a rule with the
//! same decoder the API and the MCP `configure_alert` tool use, so a rule made here is the
//! same rule either of them would make.

use std::path::PathBuf;

use anyhow::{bail, Context};
use serde_json::{json, Value};

use super::remote::{Remote, RemoteArgs};

/// Arguments of `osprey alerts`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    remote: RemoteArgs,
    /// Organization slug.
    #[arg(long, default_value = "default", global = true)]
    org: String,
    /// Project slug.
    #[arg(long, default_value = "default", global = true)]
    project: String,
    #[command(subcommand)]
    command: AlertsCommand,
}

#[derive(clap::Subcommand, Debug)]
enum AlertsCommand {
    /// List the project's issue and metric alert rules.
    List {
        /// Print the rules as the API gives them (JSON).
        #[arg(long)]
        json: bool,
    },
    /// Create a rule from flags or from a JSON file in Sentry's API shape.
    Create(Box<CreateArgs>),
    /// Delete a rule by id (`--metric` for a metric alert).
    Delete {
        /// Rule id (from `osprey alerts list`).
        id: String,
        /// The id is a metric alert's.
        #[arg(long)]
        metric: bool,
    },
}

#[derive(clap::Args, Debug)]
struct CreateArgs {
    /// A rule in Sentry's API shape: a metric alert when it has `aggregate`, else an issue
    /// alert. The other rule flags do not apply.
    #[arg(long, conflicts_with_all = ["name", "when", "aggregate"])]
    file: Option<PathBuf>,
    /// Rule name.
    #[arg(long)]
    name: Option<String>,
    /// Issue alert: when to fire — `first-seen`, `regression`, `events:N/INTERVAL` (more than N
    /// events of an issue in INTERVAL, e.g. `events:100/1h`) or `users:N/INTERVAL`.
    #[arg(long, conflicts_with = "aggregate")]
    when: Option<String>,
    /// Issue alert: only events at or above this level (debug, info, warning, error, fatal).
    #[arg(long)]
    level: Option<String>,
    /// Issue alert: minutes before the rule fires again for the same issue.
    #[arg(long, default_value_t = 30)]
    frequency: u64,
    /// Metric alert: `p95(transaction.duration)`, `failure_rate()`, `count()`, `apdex()`, …
    #[arg(long)]
    aggregate: Option<String>,
    /// Metric alert: fire when the value goes above this (below with `--below`).
    #[arg(long, requires = "aggregate")]
    threshold: Option<f64>,
    /// Metric alert: fire when the value drops below the threshold (apdex, for example).
    #[arg(long, requires = "aggregate")]
    below: bool,
    /// Metric alert: the window, minutes.
    #[arg(long, default_value_t = 5)]
    window: u64,
    /// Metric alert: only transactions matching this search (e.g. `transaction:/checkout`).
    #[arg(long)]
    query: Option<String>,
    /// Only events of this environment.
    #[arg(long)]
    environment: Option<String>,
    /// Webhook URL to notify (repeat for several).
    #[arg(long)]
    webhook: Vec<String>,
    /// Slack incoming-webhook URL to notify (repeat for several).
    #[arg(long)]
    slack: Vec<String>,
    /// Print the created rule as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `osprey alerts`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let remote = Remote::new(&args.remote)?;
    let (org, project) = (args.org.as_str(), args.project.as_str());
    match args.command {
        AlertsCommand::List { json } => {
            let (issue, metric) = list(&remote, org, project)?;
            if json {
                let all = json!({"issueAlerts": issue, "metricAlerts": metric});
                println!("{all}");
            } else {
                print!("{}", render(&issue, &metric));
            }
        }
        AlertsCommand::Create(create) => {
            let (body, metric) = match &create.file {
                Some(path) => {
                    let text = std::fs::read_to_string(path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    let body: Value = serde_json::from_str(&text)
                        .with_context(|| format!("{} is not JSON", path.display()))?;
                    let metric = body.get("aggregate").is_some();
                    (body, metric)
                }
                None => from_flags(&create, project)?,
            };
            let created = if metric {
                remote.post(&format!("organizations/{org}/alert-rules/"), &body)?
            } else {
                remote.post(&format!("projects/{org}/{project}/rules/"), &body)?
            };
            if create.json {
                println!("{created}");
            } else {
                let kind = if metric { "metric" } else { "issue" };
                println!(
                    "created {kind} alert {} ({})",
                    text(&created["id"]),
                    text(&created["name"])
                );
            }
        }
        AlertsCommand::Delete { id, metric } => {
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
                bail!("rule id {id:?} must be a number (see `osprey alerts list`)");
            }
            if metric {
                remote.delete(&format!("organizations/{org}/alert-rules/{id}/"))?;
            } else {
                remote.delete(&format!("projects/{org}/{project}/rules/{id}/"))?;
            }
            println!(
                "deleted {} alert {id}",
                if metric { "metric" } else { "issue" }
            );
        }
    }
    Ok(())
}

/// The project's issue rules and the organization's metric rules that watch the project.
fn list(remote: &Remote, org: &str, project: &str) -> anyhow::Result<(Vec<Value>, Vec<Value>)> {
    let issue = remote.get(&format!("projects/{org}/{project}/rules/"))?;
    let metric = remote.get(&format!("organizations/{org}/alert-rules/"))?;
    let metric = metric
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| {
            r["projects"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p == project))
        })
        .cloned()
        .collect();
    Ok((issue.as_array().cloned().unwrap_or_default(), metric))
}

/// Sentry's numeric level names, as its level filter takes them.
fn level_number(level: &str) -> anyhow::Result<&'static str> {
    Ok(match level {
        "debug" => "10",
        "info" => "20",
        "warning" => "30",
        "error" => "40",
        "fatal" => "50",
        other => bail!("--level {other:?}: use debug, info, warning, error or fatal"),
    })
}

/// `--when` → one of Sentry's issue-alert conditions.
fn condition(when: &str) -> anyhow::Result<Value> {
    const FREQUENCY: &str = "sentry.rules.conditions.event_frequency.EventFrequencyCondition";
    const USERS: &str = "sentry.rules.conditions.event_frequency.EventUniqueUserFrequencyCondition";
    Ok(match when {
        "first-seen" => {
            json!({"id": "sentry.rules.conditions.first_seen_event.FirstSeenEventCondition"})
        }
        "regression" => {
            json!({"id": "sentry.rules.conditions.regression_event.RegressionEventCondition"})
        }
        other => {
            let parsed = other.split_once(':').and_then(|(kind, rest)| {
                let (value, interval) = rest.split_once('/')?;
                let id = match kind {
                    "events" => FREQUENCY,
                    "users" => USERS,
                    _ => return None,
                };
                Some((id, value.parse::<u64>().ok()?, interval))
            });
            let Some((id, value, interval)) = parsed else {
                bail!(
                    "--when {other:?}: use first-seen, regression, events:N/INTERVAL or \
                     users:N/INTERVAL (e.g. events:100/1h)"
                );
            };
            json!({"id": id, "value": value, "interval": interval})
        }
    })
}

/// A rule body from the flags; `true` when it is a metric alert.
fn from_flags(args: &CreateArgs, project: &str) -> anyhow::Result<(Value, bool)> {
    let name = args
        .name
        .clone()
        .context("--name is required (or give the whole rule with --file)")?;
    let mut actions: Vec<Value> = args
        .webhook
        .iter()
        .map(|url| json!({"id": "osprey.actions.webhook", "url": url}))
        .collect();
    actions.extend(args.slack.iter().map(|url| {
        json!({"id": "sentry.integrations.slack.notify_action.SlackNotifyServiceAction", "webhook": url})
    }));
    if let Some(aggregate) = &args.aggregate {
        let threshold = args.threshold.context("a metric alert needs --threshold")?;
        let body = json!({
            "name": name,
            "aggregate": aggregate,
            "query": args.query.clone().unwrap_or_default(),
            "timeWindow": args.window,
            "projects": [project],
            "environment": args.environment,
            "thresholdType": u8::from(args.below),
            "triggers": [{"label": "critical", "alertThreshold": threshold, "actions": actions}],
        });
        return Ok((body, true));
    }
    let when = args
        .when
        .as_deref()
        .context("an issue alert needs --when (or --aggregate for a metric alert)")?;
    let filters: Vec<Value> = match &args.level {
        Some(level) => vec![json!({
            "id": "sentry.rules.filters.level.LevelFilter",
            "match": "gte",
            "level": level_number(level)?,
        })],
        None => Vec::new(),
    };
    let body = json!({
        "name": name,
        "actionMatch": "all",
        "filterMatch": "all",
        "conditions": [condition(when)?],
        "filters": filters,
        "actions": actions,
        "frequency": args.frequency,
        "environment": args.environment,
    });
    Ok((body, false))
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// The last dotted part of a Sentry class path (`…EventFrequencyCondition`).
fn short_id(id: &Value) -> String {
    let id = text(id);
    id.rsplit('.').next().unwrap_or(&id).to_owned()
}

fn targets(actions: &Value) -> String {
    let list: Vec<String> = actions
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            text(
                a.get("url")
                    .or_else(|| a.get("webhook"))
                    .unwrap_or(&a["id"]),
            )
        })
        .collect();
    if list.is_empty() {
        "-".into()
    } else {
        list.join(", ")
    }
}

fn render(issue: &[Value], metric: &[Value]) -> String {
    let mut rows = vec![[
        "KIND".to_owned(),
        "ID".into(),
        "NAME".into(),
        "WHEN".into(),
        "NOTIFIES".into(),
    ]];
    for r in issue {
        let when: Vec<String> = r["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| match (c.get("value"), c.get("interval")) {
                (Some(v), Some(i)) => {
                    format!("{} > {} in {}", short_id(&c["id"]), text(v), text(i))
                }
                _ => short_id(&c["id"]),
            })
            .collect();
        rows.push([
            "issue".into(),
            text(&r["id"]),
            text(&r["name"]),
            when.join(&format!(" {} ", text(&r["actionMatch"]))),
            targets(&r["actions"]),
        ]);
    }
    for r in metric {
        let trigger = &r["triggers"][0];
        let op = if r["thresholdType"] == 1 { "<" } else { ">" };
        rows.push([
            "metric".into(),
            text(&r["id"]),
            text(&r["name"]),
            format!(
                "{} {op} {} over {}m",
                text(&r["aggregate"]),
                text(&trigger["alertThreshold"]),
                text(&r["timeWindow"])
            ),
            targets(&trigger["actions"]),
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}
