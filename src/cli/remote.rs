//! A running server's `/api/0/`, for the subcommands that work over HTTP (`--url`, `--token`):
//! one blocking client, bearer authentication, and the server's `{"detail": …}` as the error.

use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;

/// How a subcommand reaches a server.
#[derive(clap::Args, Debug, Clone)]
pub struct RemoteArgs {
    /// Server URL.
    #[arg(long, env = "OSPREY_URL", default_value = "http://127.0.0.1:9000")]
    pub url: String,
    /// API token (`osprey token create`, or the server's admin token).
    #[arg(long, env = "OSPREY_TOKEN")]
    pub token: String,
}

/// A server's API.
pub struct Remote {
    base: String,
    token: String,
    client: reqwest::blocking::Client,
}

/// Largest answer read (a listing of every rule or a long breakdown stays far below it).
const MAX_ANSWER: u64 = 64 << 20;

impl Remote {
    /// A client for `args.url` (which must be http:// or https://).
    pub fn new(args: &RemoteArgs) -> anyhow::Result<Remote> {
        let base = args.url.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            bail!("--url {:?} must start with http:// or https://", args.url);
        }
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .context("building the HTTP client")?;
        Ok(Remote {
            base,
            token: args.token.clone(),
            client,
        })
    }

    /// `GET /api/0/{path}` as JSON.
    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(reqwest::Method::GET, path, None)
    }

    /// `POST /api/0/{path}` with a JSON body.
    pub fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(reqwest::Method::POST, path, Some(body))
    }

    /// `DELETE /api/0/{path}`.
    pub fn delete(&self, path: &str) -> anyhow::Result<()> {
        self.send(reqwest::Method::DELETE, path, None).map(drop)
    }

    fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}/api/0/{}", self.base, path.trim_start_matches('/'));
        let mut request = self
            .client
            .request(method.clone(), &url)
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().with_context(|| format!("{method} {url}"))?;
        let status = response.status();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::Read::take(response, MAX_ANSWER), &mut text)
            .with_context(|| format!("reading the answer to {method} {url}"))?;
        let value: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if !status.is_success() {
            let detail = value
                .get("detail")
                .map(|d| {
                    d.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| d.to_string())
                })
                .unwrap_or_else(|| value.to_string());
            bail!("{method} {url}: {status}: {detail}");
        }
        Ok(value)
    }
}
