//! A project's processing settings, under Sentry's names:
//! - `PUT /projects/{org}/{project}/` takes, besides name, slug and platform, the fields of
//!   Sentry's `ProjectAdminSerializer` that osprey acts on — `dataScrubber`,
//!   `dataScrubberDefaults`, `sensitiveFields`, `safeFields`, `scrubIPAddresses`,
//!   `allowedDomains`, `resolveAge`, `fingerprintingRules`, `groupingEnhancements` — and the
//!   legacy `options` keys for the same settings and the custom inbound filters
//!   (`filters:releases`, `filters:error_messages`, newline-separated as in Sentry's form).
//!   Invalid values are a 400 naming each field, as Sentry's serializer answers, and nothing
//!   is changed.
//! - `GET /projects/{org}/{project}/filters/` lists the inbound filters and
//!   `PUT …/filters/{id}/` `{"active": bool}` turns one on or off (201, no body, as Sentry).
//! - `GET|POST|DELETE /projects/{org}/{project}/transaction-threshold/configure/`: the
//!   project's apdex threshold (`{"threshold": ms, "metric": "duration"}`), and
//!   `/organizations/{org}/project-transaction-threshold-override/` one transaction's.
//!
//! The processor reads the settings of every batch from the metadata, so a change applies to
//! the next events processed; in Kafka mode the metadata topic carries it to every node.

use http::Method;
use serde_json::{json, Map, Value};
use storage::{Project, ProjectSettings};

use super::util::iso;
use super::{not_allowed, ApiError, ApiResponse, ApiResult, Ctx};

/// Sentry's cap on the summed length of `sensitiveFields` (Relay compiles them into one regex).
const MAX_SENSITIVE_FIELD_CHARS: usize = 4000;
/// Longest rule text (fingerprinting rules, stack-trace rules) accepted.
const MAX_RULES_CHARS: usize = 64 << 10;
/// Most entries in one list setting (fields, domains, filter patterns).
const MAX_LIST_ENTRIES: usize = 1000;
/// Sentry's `DEFAULT_PROJECT_THRESHOLD`.
const DEFAULT_APDEX_MS: u64 = 300;

/// Sentry's inbound filters: `(id, name, description)`. Only `localhost` has an on/off state
/// in osprey; the others are listed inactive and cannot be turned on (400), so that a client
/// learns at once that osprey does not apply them.
const FILTERS: &[(&str, &str, &str)] = &[
    (
        "browser-extensions",
        "Filter out errors known to be caused by browser extensions",
        "Certain browser extensions will inject inline scripts and are known to cause errors.",
    ),
    (
        "localhost",
        "Filter out events coming from localhost",
        "This applies to both IPv4 (``127.0.0.1``) and IPv6 (``::1``) addresses.",
    ),
    (
        "legacy-browsers",
        "Filter out known errors from legacy browsers",
        "Older browsers often give less accurate information.",
    ),
    (
        "web-crawlers",
        "Filter out known web crawlers",
        "Some crawlers may execute pages in incompatible ways which then cause errors.",
    ),
    (
        "filtered-transaction",
        "Filter out health check transactions",
        "Filter transactions that match most common naming patterns for health checks.",
    ),
];

pub(super) fn route(
    ctx: &Ctx<'_>,
    method: &Method,
    segs: &[&str],
) -> ApiResult<Option<ApiResponse>> {
    let resp = match segs {
        ["projects", org, project, "filters"] => match *method {
            Method::GET => list_filters(ctx, org, project)?,
            _ => return Err(not_allowed(method)),
        },
        ["projects", org, project, "filters", id] => match *method {
            Method::PUT => update_filter(ctx, org, project, id)?,
            _ => return Err(not_allowed(method)),
        },
        ["projects", org, project, "transaction-threshold", "configure"] => match *method {
            Method::GET => threshold(ctx, org, project, Method::GET)?,
            Method::POST => threshold(ctx, org, project, Method::POST)?,
            Method::DELETE => threshold(ctx, org, project, Method::DELETE)?,
            _ => return Err(not_allowed(method)),
        },
        ["organizations", org, "project-transaction-threshold-override"] => match *method {
            Method::GET | Method::POST | Method::DELETE => override_threshold(ctx, org, method)?,
            _ => return Err(not_allowed(method)),
        },
        _ => return Ok(None),
    };
    Ok(Some(resp))
}

/// The settings as `DetailedProjectSerializer` shows them, merged into a project's detail.
pub(super) fn settings_json(settings: &ProjectSettings) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("dataScrubber".into(), json!(settings.scrub_data));
    out.insert("dataScrubberDefaults".into(), json!(settings.scrub_data));
    out.insert("sensitiveFields".into(), json!(settings.sensitive_fields));
    out.insert("safeFields".into(), json!(settings.safe_fields));
    out.insert(
        "scrubIPAddresses".into(),
        json!(settings.scrub_ip_addresses),
    );
    out.insert("allowedDomains".into(), json!(settings.allowed_domains));
    out.insert("resolveAge".into(), json!(settings.resolve_age_hours));
    out.insert(
        "fingerprintingRules".into(),
        json!(settings.fingerprinting_rules),
    );
    out.insert(
        "groupingEnhancements".into(),
        json!(settings.grouping_enhancements),
    );
    out.insert(
        "options".into(),
        json!({
            "filters:releases": settings.filter_releases.join("\n"),
            "filters:error_messages": settings.filter_error_messages.join("\n"),
            "sentry:origins": settings.allowed_domains.join("\n"),
            "sentry:resolve_age": settings.resolve_age_hours,
            "sentry:scrub_data": settings.scrub_data,
            "sentry:scrub_ip_address": settings.scrub_ip_addresses,
        }),
    );
    out
}

/// Applies the settings fields of a project PUT body to `settings`. `Err` holds a message
/// list per invalid field (Sentry's serializer errors, answered as a 400); then nothing
/// applies.
pub(super) fn apply(
    settings: &mut ProjectSettings,
    body: &Value,
) -> Result<(), Map<String, Value>> {
    let mut next = settings.clone();
    let mut errors = Map::new();
    let mut fail = |field: &str, message: String| {
        errors.insert(field.to_owned(), json!([message]));
    };
    if let Some(v) = body.get("dataScrubber") {
        match v.as_bool() {
            Some(b) => next.scrub_data = b,
            None => fail("dataScrubber", "Must be a valid boolean.".into()),
        }
    }
    if let Some(v) = body.get("dataScrubberDefaults") {
        // osprey's scrubber always uses its default patterns when it scrubs at all.
        match v.as_bool() {
            Some(b) if b == next.scrub_data => {}
            Some(_) => fail(
                "dataScrubberDefaults",
                "osprey applies the default scrubbers exactly when dataScrubber is on: set \
                 both to the same value."
                    .into(),
            ),
            None => fail("dataScrubberDefaults", "Must be a valid boolean.".into()),
        }
    }
    if let Some(v) = body.get("scrubIPAddresses") {
        match v.as_bool() {
            Some(b) => next.scrub_ip_addresses = b,
            None => fail("scrubIPAddresses", "Must be a valid boolean.".into()),
        }
    }
    if let Some(v) = body.get("sensitiveFields") {
        match string_list(v) {
            Ok(list) if list.iter().map(String::len).sum::<usize>() > MAX_SENSITIVE_FIELD_CHARS => {
                fail(
                    "sensitiveFields",
                    "List of sensitive fields is too long.".into(),
                )
            }
            Ok(list) => next.sensitive_fields = list,
            Err(m) => fail("sensitiveFields", m),
        }
    }
    if let Some(v) = body.get("safeFields") {
        match string_list(v) {
            Ok(list) => next.safe_fields = list,
            Err(m) => fail("safeFields", m),
        }
    }
    if let Some(v) = body.get("allowedDomains") {
        match string_list(v) {
            Ok(list) => match domains(list) {
                Ok(list) => next.allowed_domains = list,
                Err(m) => fail("allowedDomains", m),
            },
            Err(m) => fail("allowedDomains", m),
        }
    }
    if let Some(v) = body.get("resolveAge") {
        match whole_number(v) {
            Ok(h) => next.resolve_age_hours = h,
            Err(m) => fail("resolveAge", m),
        }
    }
    for field in ["fingerprintingRules", "groupingEnhancements"] {
        let Some(v) = body.get(field) else { continue };
        match rules_text(field, v) {
            Ok(text) if field == "fingerprintingRules" => next.fingerprinting_rules = text,
            Ok(text) => next.grouping_enhancements = text,
            Err(m) => fail(field, m),
        }
    }
    match body.get("options") {
        None | Some(Value::Null) => {}
        Some(Value::Object(options)) => apply_options(&mut next, options, &mut fail),
        Some(_) => fail("options", "Expected a dictionary of items.".into()),
    }
    if errors.is_empty() {
        *settings = next;
        Ok(())
    } else {
        Err(errors)
    }
}

/// The legacy `options` keys (Sentry's project settings form) osprey acts on.
fn apply_options(
    next: &mut ProjectSettings,
    options: &Map<String, Value>,
    fail: &mut impl FnMut(&str, String),
) {
    for (key, v) in options {
        let field = format!("options.{key}");
        let boolean = || {
            v.as_bool()
                .ok_or_else(|| "Must be a valid boolean.".to_owned())
        };
        let outcome = match key.as_str() {
            "filters:releases" => newline_list(v, true).map(|l| next.filter_releases = l),
            "filters:error_messages" => {
                newline_list(v, false).map(|l| next.filter_error_messages = l)
            }
            "sentry:origins" => newline_list(v, false)
                .and_then(domains)
                .map(|l| next.allowed_domains = l),
            "sentry:resolve_age" => whole_number(v).map(|h| next.resolve_age_hours = h),
            "sentry:scrub_data" => boolean().map(|b| next.scrub_data = b),
            "sentry:scrub_ip_address" => boolean().map(|b| next.scrub_ip_addresses = b),
            "sentry:sensitive_fields" => string_list(v).map(|l| {
                next.sensitive_fields = l.iter().map(|s| s.trim().to_lowercase()).collect()
            }),
            "sentry:safe_fields" => string_list(v)
                .map(|l| next.safe_fields = l.iter().map(|s| s.trim().to_lowercase()).collect()),
            "sentry:fingerprinting_rules" => {
                rules_text("fingerprintingRules", v).map(|t| next.fingerprinting_rules = t)
            }
            "sentry:grouping_enhancements" => {
                rules_text("groupingEnhancements", v).map(|t| next.grouping_enhancements = t)
            }
            // Said rather than ignored: a setting that silently does nothing is worse.
            _ => Err("osprey does not support this option.".to_owned()),
        };
        if let Err(m) = outcome {
            fail(&field, m);
        }
    }
}

/// A JSON list of strings (bounded), as DRF's `ListField(CharField())` takes it.
fn string_list(v: &Value) -> Result<Vec<String>, String> {
    let Value::Array(items) = v else {
        return Err(format!(
            "Expected a list of items but got type \"{}\".",
            kind(v)
        ));
    };
    if items.len() > MAX_LIST_ENTRIES {
        return Err(format!(
            "Ensure this field has no more than {MAX_LIST_ENTRIES} elements."
        ));
    }
    items
        .iter()
        .map(|item| match item {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            _ => Err("Not a valid string.".to_owned()),
        })
        .collect()
}

/// Sentry's `clean_newline_inputs`: one entry per non-blank line, trimmed (and lowercased
/// when `lowercase`). A JSON list is taken as the lines too.
fn newline_list(v: &Value, lowercase: bool) -> Result<Vec<String>, String> {
    let lines: Vec<String> = match v {
        Value::String(s) => s.split('\n').map(str::to_owned).collect(),
        Value::Array(_) => string_list(v)?,
        Value::Null => Vec::new(),
        other => return Err(format!("Expected text but got type \"{}\".", kind(other))),
    };
    let cleaned: Vec<String> = lines
        .iter()
        .map(|l| {
            if lowercase {
                l.trim().to_lowercase()
            } else {
                l.trim().to_owned()
            }
        })
        .filter(|l| !l.is_empty())
        .collect();
    if cleaned.len() > MAX_LIST_ENTRIES {
        return Err(format!(
            "Ensure this field has no more than {MAX_LIST_ENTRIES} entries."
        ));
    }
    Ok(cleaned)
}

/// Allowed origins without blanks; an empty list would block every browser, so Sentry
/// refuses it.
fn domains(list: Vec<String>) -> Result<Vec<String>, String> {
    let list: Vec<String> = list
        .into_iter()
        .map(|d| d.trim().to_owned())
        .filter(|d| !d.is_empty())
        .collect();
    if list.is_empty() {
        return Err("Empty value will block all requests, use * to accept from all domains".into());
    }
    Ok(list)
}

/// A whole number (`resolveAge` hours, a threshold in ms); `null` or `""` is 0 (never).
fn whole_number(v: &Value) -> Result<u64, String> {
    match v {
        Value::Null => Ok(0),
        Value::String(s) if s.trim().is_empty() => Ok(0),
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| "A valid integer is required.".into()),
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| "A valid integer is required.".into()),
        _ => Err("A valid integer is required.".into()),
    }
}

/// Rule text, parsed with the processor's parser so that a rule it cannot use is refused now
/// instead of being skipped at every event (`null` clears it).
fn rules_text(field: &str, v: &Value) -> Result<String, String> {
    let text = match v {
        Value::Null => return Ok(String::new()),
        Value::String(s) => s.clone(),
        _ => return Err("Not a valid string.".into()),
    };
    if text.len() > MAX_RULES_CHARS {
        return Err(format!(
            "Ensure this field has no more than {MAX_RULES_CHARS} characters."
        ));
    }
    if !text.trim().is_empty() {
        let checked = if field == "fingerprintingRules" {
            processor::grouping::FingerprintRules::parse_text(&text).map(|_| ())
        } else {
            processor::grouping::Enhancements::parse(&text).map(|_| ())
        };
        checked.map_err(|e| e.to_string())?;
    }
    Ok(text)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// Whether filter `id` is on for the project (only `localhost` has a state in osprey).
fn filter_active(settings: &ProjectSettings, id: &str) -> bool {
    id == "localhost" && settings.filter_localhost
}

fn list_filters(ctx: &Ctx<'_>, org: &str, project: &str) -> ApiResult {
    let (_, project) = ctx.project(org, project)?;
    ctx.require("project:read")?;
    let filters: Vec<Value> = FILTERS
        .iter()
        .map(|(id, name, description)| {
            json!({
                "id": id,
                "active": filter_active(&project.settings, id),
                "name": name,
                "description": description,
                "hello": format!("{id} - {name}"),
            })
        })
        .collect();
    Ok(ApiResponse::ok(Value::Array(filters)))
}

fn update_filter(ctx: &Ctx<'_>, org: &str, project: &str, id: &str) -> ApiResult {
    let (_, project) = ctx.project(org, project)?;
    ctx.require("project:write")?;
    if !FILTERS.iter().any(|(known, _, _)| *known == id) {
        return Err(ApiError::NotFound(
            "The requested resource does not exist".into(),
        ));
    }
    let body = ctx.req.json_body()?;
    let active = match body.get("active") {
        Some(Value::Bool(b)) => *b,
        None => return Err(field_error("active", "This field is required.")),
        Some(_) => return Err(field_error("active", "Must be a valid boolean.")),
    };
    if id != "localhost" {
        if !active {
            // Already off: nothing to change.
            return Ok(ApiResponse::empty(http::StatusCode::CREATED));
        }
        return Err(ApiError::BadRequest(format!(
            "osprey does not implement the {id} filter"
        )));
    }
    let mut changed = (*project).clone();
    changed.settings.filter_localhost = active;
    ctx.store.put_project(changed)?;
    Ok(ApiResponse::empty(http::StatusCode::CREATED))
}

/// `…/project-transaction-threshold-override/?project=ID&transaction=NAME`: one transaction's
/// apdex threshold, over the project's (`POST` `{"transaction", "threshold", "metric"}`).
fn override_threshold(ctx: &Ctx<'_>, org: &str, method: &Method) -> ApiResult {
    let org = ctx.org(org)?;
    let project_param = ctx
        .req
        .param("project")
        .ok_or_else(|| field_error("project", "This field is required."))?;
    let project = ctx
        .store
        .meta()
        .project_by_slug(org.id, project_param)
        .ok_or_else(|| ApiError::NotFound("The requested resource does not exist".into()))?;
    let body = if *method == Method::POST {
        ctx.req.json_body()?
    } else {
        Value::Null
    };
    let transaction = body
        .get("transaction")
        .and_then(Value::as_str)
        .or_else(|| ctx.req.param("transaction"))
        .filter(|t| !t.is_empty())
        .ok_or_else(|| field_error("transaction", "This field is required."))?
        .to_owned();
    let answer = |ms: u64| {
        json!({
            "id": format!("{}:{transaction}", project.id),
            "threshold": ms.to_string(),
            "metric": "duration",
            "projectId": project.id.to_string(),
            "transaction": transaction,
            "editedBy": Value::Null,
            "dateAdded": iso(project.created_ms),
            "dateUpdated": iso(project.created_ms),
        })
    };
    let missing = || ApiError::NotFound("Transaction threshold override does not exist".into());
    match *method {
        Method::GET => {
            ctx.require("project:read")?;
            let ms = project.settings.transaction_thresholds.get(&transaction);
            Ok(ApiResponse::ok(answer(*ms.ok_or_else(missing)?)))
        }
        Method::DELETE => {
            ctx.require("project:write")?;
            let mut changed = (*project).clone();
            changed
                .settings
                .transaction_thresholds
                .remove(&transaction)
                .ok_or_else(missing)?;
            ctx.store.put_project(changed)?;
            Ok(ApiResponse::no_content())
        }
        _ => {
            ctx.require("project:write")?;
            if transaction.len() > 200 {
                return Err(field_error(
                    "transaction",
                    "Ensure this field has no more than 200 characters.",
                ));
            }
            let ms = match body.get("threshold").map(whole_number) {
                Some(Ok(ms)) if (1..=600_000).contains(&ms) => ms,
                _ => {
                    return Err(field_error(
                        "threshold",
                        "Ensure this value is a whole number from 1 to 600000.",
                    ))
                }
            };
            if !matches!(
                body.get("metric").and_then(Value::as_str),
                None | Some("duration")
            ) {
                return Err(field_error(
                    "metric",
                    "osprey measures apdex on transaction durations only.",
                ));
            }
            let mut changed = (*project).clone();
            let overrides = &mut changed.settings.transaction_thresholds;
            if !overrides.contains_key(&transaction) && overrides.len() >= MAX_LIST_ENTRIES {
                return Err(ApiError::BadRequest(format!(
                    "a project holds at most {MAX_LIST_ENTRIES} transaction thresholds"
                )));
            }
            overrides.insert(transaction.clone(), ms);
            ctx.store.put_project(changed)?;
            Ok(ApiResponse::ok(answer(ms)))
        }
    }
}

fn field_error(field: &str, message: &str) -> ApiError {
    ApiError::BadRequest(format!("{field}: {message}"))
}

/// `transaction-threshold/configure/`: Sentry's `ProjectTransactionThreshold` (threshold in
/// ms, metric `duration` or `lcp`; osprey measures apdex on durations only).
fn threshold(ctx: &Ctx<'_>, org: &str, project: &str, method: Method) -> ApiResult {
    let (_, project) = ctx.project(org, project)?;
    let answer = |p: &Project| {
        json!({
            "id": p.id.to_string(),
            "threshold": p.settings.apdex_threshold_ms.to_string(),
            "metric": "duration",
            "projectId": p.id.to_string(),
            "editedBy": Value::Null,
            "dateAdded": iso(p.created_ms),
            "dateUpdated": iso(p.created_ms),
        })
    };
    match method {
        Method::GET => {
            ctx.require("project:read")?;
            Ok(ApiResponse::ok(answer(&project)))
        }
        Method::DELETE => {
            ctx.require("project:write")?;
            let mut changed = (*project).clone();
            changed.settings.apdex_threshold_ms = DEFAULT_APDEX_MS;
            ctx.store.put_project(changed)?;
            Ok(ApiResponse::no_content())
        }
        _ => {
            ctx.require("project:write")?;
            let body = ctx.req.json_body()?;
            let mut errors = Map::new();
            let threshold = match body.get("threshold") {
                None => Some(project.settings.apdex_threshold_ms),
                Some(v) => match whole_number(v) {
                    Ok(ms) if (1..=600_000).contains(&ms) => Some(ms),
                    _ => {
                        errors.insert(
                            "threshold".into(),
                            json!(["Ensure this value is a whole number from 1 to 600000."]),
                        );
                        None
                    }
                },
            };
            match body.get("metric").and_then(Value::as_str) {
                None | Some("duration") => {}
                Some("lcp") => {
                    errors.insert(
                        "metric".into(),
                        json!(["osprey measures apdex on transaction durations only."]),
                    );
                }
                Some(_) => {
                    errors.insert(
                        "metric".into(),
                        json!(["Invalid transaction threshold metric."]),
                    );
                }
            }
            match threshold {
                Some(ms) if errors.is_empty() => {
                    let mut changed = (*project).clone();
                    changed.settings.apdex_threshold_ms = ms;
                    let saved = ctx.store.put_project(changed)?;
                    Ok(ApiResponse::ok(answer(&saved)))
                }
                _ => Ok(ApiResponse::field_errors(errors)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::Fixture;
    use http::StatusCode;
    use processor::pipeline::event_record;
    use processor::{Processor, ProcessorConfig};
    use serde_json::{json, Value};
    use uuid::Uuid;

    const PROJECT: &str = "/api/0/projects/default/default/";

    fn error(n: u128, release: &str, ty: &str, value: &str) -> (Uuid, storage::LogRecord) {
        let id = Uuid::from_u128(n);
        let ev = json!({
            "event_id": id.simple().to_string(),
            "timestamp": storage::now_ms() as f64 / 1000.0,
            "release": release,
            "user": {"ip_address": "203.0.113.9"},
            "extra": {"loyalty_number": "LN-99812", "note": "kept"},
            "exception": {"values": [{"type": ty, "value": value}]},
        });
        let record = event_record(1, storage::now_ms(), ev.to_string().as_bytes(), None);
        (id, record)
    }

    /// Settings set through Sentry's project PUT reach the processor: scrubbing, an inbound
    /// filter, fingerprint rules; the project detail shows them back.
    #[test]
    fn settings_put_through_the_api_change_processing() {
        let f = Fixture::new();
        // A running processor: its batches before the change used the defaults.
        let processor = Processor::new(f.store.clone(), ProcessorConfig::default()).unwrap();
        let (before, record) = error(9, "3.0.0", "TypeError", "earlier");
        processor.process_and_commit(&[record]).unwrap();
        let earlier = f.get(&format!("{PROJECT}events/{}/", before.simple()));
        assert!(
            earlier.body.to_string().contains("LN-99812"),
            "defaults keep it"
        );
        let put = f.put(
            PROJECT,
            json!({
                "sensitiveFields": ["loyalty_number"],
                "scrubIPAddresses": true,
                "fingerprintingRules": "error.type:ValueError -> value-errors",
                "resolveAge": 48,
                "allowedDomains": ["https://shop.example.com"],
                "options": {"filters:releases": "1.0.*\n\n  beta-* "},
            }),
        );
        assert_eq!(put.status, StatusCode::OK, "{:?}", put.body);
        assert_eq!(put.body["sensitiveFields"], json!(["loyalty_number"]));
        assert_eq!(put.body["resolveAge"], 48);
        assert_eq!(put.body["options"]["filters:releases"], "1.0.*\nbeta-*");
        let detail = f.get(PROJECT);
        assert_eq!(detail.body["scrubIPAddresses"], true);
        assert_eq!(
            detail.body["fingerprintingRules"],
            "error.type:ValueError -> value-errors"
        );
        assert_eq!(
            detail.body["allowedDomains"],
            json!(["https://shop.example.com"])
        );

        let (kept, a) = error(1, "2.0.0", "ValueError", "bad cart 1");
        let (_, b) = error(2, "2.0.0", "ValueError", "other words entirely");
        let (filtered, c) = error(3, "1.0.4", "KeyError", "x");
        processor.process_and_commit(&[a, b, c]).unwrap();

        let event = f.get(&format!("{PROJECT}events/{}/", kept.simple()));
        assert_eq!(event.status, StatusCode::OK, "{:?}", event.body);
        let text = event.body.to_string();
        assert!(
            !text.contains("LN-99812"),
            "sensitive field scrubbed: {text}"
        );
        assert!(text.contains("kept"), "{text}");
        assert!(!text.contains("203.0.113.9"), "IP scrubbed: {text}");
        let gone = f.get(&format!("{PROJECT}events/{}/", filtered.simple()));
        assert_eq!(gone.status, StatusCode::NOT_FOUND, "release filter");
        let issues = f.get("/api/0/organizations/default/issues/?query=");
        let issues = issues.body.as_array().unwrap();
        let value_errors = issues.iter().filter(|i| i["count"] == "2").count();
        assert_eq!(issues.len(), 2, "{issues:?}");
        assert_eq!(
            value_errors, 1,
            "one fingerprint for both messages: {issues:?}"
        );
    }

    /// Invalid settings are a 400 per field, and none of the body applies.
    #[test]
    fn invalid_settings_change_nothing() {
        let f = Fixture::new();
        let before = f.get(PROJECT).body;
        let put = f.put(
            PROJECT,
            json!({
                "name": "Renamed",
                "dataScrubber": "yes",
                "sensitiveFields": "cart_token",
                "allowedDomains": ["", " "],
                "resolveAge": -1,
                "fingerprintingRules": "this is not -> -> a rule",
                "groupingEnhancements": "nonsense:: +app",
                "options": {"sentry:csp_ignored_sources": "x", "filters:releases": 7},
            }),
        );
        assert_eq!(put.status, StatusCode::BAD_REQUEST, "{:?}", put.body);
        for field in [
            "dataScrubber",
            "sensitiveFields",
            "allowedDomains",
            "resolveAge",
            "fingerprintingRules",
            "groupingEnhancements",
            "options.sentry:csp_ignored_sources",
            "options.filters:releases",
        ] {
            assert!(put.body[field].is_array(), "{field}: {:?}", put.body);
        }
        assert_eq!(f.get(PROJECT).body, before);
        // dataScrubberDefaults only as dataScrubber is: osprey has no separate switch.
        let both = f.put(
            PROJECT,
            json!({"dataScrubber": false, "dataScrubberDefaults": false}),
        );
        assert_eq!(both.status, StatusCode::OK, "{:?}", both.body);
        let split = f.put(PROJECT, json!({"dataScrubberDefaults": true}));
        assert_eq!(split.status, StatusCode::BAD_REQUEST, "{:?}", split.body);
    }

    #[test]
    fn inbound_filters_and_the_apdex_threshold() {
        let f = Fixture::new();
        let list = f.get(&format!("{PROJECT}filters/"));
        assert_eq!(list.status, StatusCode::OK);
        let active = |list: &Value, id: &str| {
            list.as_array()
                .unwrap()
                .iter()
                .find(|x| x["id"] == id)
                .map(|x| x["active"].clone())
        };
        assert_eq!(active(&list.body, "localhost"), Some(json!(false)));
        let on = f.put(
            &format!("{PROJECT}filters/localhost/"),
            json!({"active": true}),
        );
        assert_eq!(on.status, StatusCode::CREATED, "{:?}", on.body);
        assert!(f.store.meta().project(1).unwrap().settings.filter_localhost);
        let list = f.get(&format!("{PROJECT}filters/"));
        assert_eq!(active(&list.body, "localhost"), Some(json!(true)));
        let unsupported = f.put(
            &format!("{PROJECT}filters/web-crawlers/"),
            json!({"active": true}),
        );
        assert_eq!(unsupported.status, StatusCode::BAD_REQUEST);
        let unknown = f.put(&format!("{PROJECT}filters/nope/"), json!({"active": true}));
        assert_eq!(unknown.status, StatusCode::NOT_FOUND);
        let bad = f.put(
            &format!("{PROJECT}filters/localhost/"),
            json!({"active": "on"}),
        );
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);

        let path = format!("{PROJECT}transaction-threshold/configure/");
        assert_eq!(f.get(&path).body["threshold"], "300");
        let set = f.post(&path, json!({"threshold": 450, "metric": "duration"}));
        assert_eq!(set.status, StatusCode::OK, "{:?}", set.body);
        assert_eq!(
            f.store
                .meta()
                .project(1)
                .unwrap()
                .settings
                .apdex_threshold_ms,
            450
        );
        let lcp = f.post(&path, json!({"threshold": 450, "metric": "lcp"}));
        assert_eq!(lcp.status, StatusCode::BAD_REQUEST);
        let zero = f.post(&path, json!({"threshold": 0}));
        assert_eq!(zero.status, StatusCode::BAD_REQUEST);
        let reset = f.call(http::Method::DELETE, &path, Some(&f.admin), None);
        assert_eq!(reset.status, StatusCode::NO_CONTENT);
        assert_eq!(f.get(&path).body["threshold"], "300");

        // One transaction's threshold over the project's.
        let path = "/api/0/organizations/default/project-transaction-threshold-override/";
        let one = format!("{path}?project=1&transaction=GET%20%2Fcart");
        assert_eq!(f.get(&one).status, StatusCode::NOT_FOUND);
        let set = f.post(
            &format!("{path}?project=1"),
            json!({"transaction": "GET /cart", "threshold": 1200, "metric": "duration"}),
        );
        assert_eq!(set.status, StatusCode::OK, "{:?}", set.body);
        assert_eq!(f.get(&one).body["threshold"], "1200");
        let project = f.store.meta().project(1).unwrap();
        assert_eq!(
            project.settings.transaction_thresholds.get("GET /cart"),
            Some(&1200)
        );
        let bad = f.post(&format!("{path}?project=1"), json!({"transaction": "x"}));
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        let gone = f.call(http::Method::DELETE, &one, Some(&f.admin), None);
        assert_eq!(gone.status, StatusCode::NO_CONTENT);
        assert_eq!(f.get(&one).status, StatusCode::NOT_FOUND);
    }
}
