//! `osprey token create|list|revoke`: scoped API tokens for `/api/0/` and MCP over HTTP,
//! managed directly on a data directory (while no server holds it; with a server running, use
//! `POST /api/0/api-tokens/` with the admin token).
//!
//! Only the hash of a token is stored: `create` prints the secret once.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use storage::{Store, StoreOptions};

/// Arguments of `osprey token`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(clap::Subcommand, Debug)]
enum TokenCommand {
    /// Create a token and print its secret (shown once).
    Create {
        /// Scopes, comma separated: org:read, project:read, project:write, project:releases,
        /// event:read, event:write, event:admin, … (`:write` implies `:read`, `:admin` both).
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
        /// Name shown in listings.
        #[arg(long, default_value = "cli token")]
        name: String,
        /// Organization slug the token may see.
        #[arg(long, default_value = "default")]
        org: String,
        /// Data directory.
        #[arg(long, env = "OSPREY_DATA", default_value = "./osprey-data")]
        data: PathBuf,
        /// Print `{"id", "token", "scopes", …}` as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the tokens of an organization (names and scopes, never secrets).
    List {
        /// Organization slug.
        #[arg(long, default_value = "default")]
        org: String,
        /// Data directory.
        #[arg(long, env = "OSPREY_DATA", default_value = "./osprey-data")]
        data: PathBuf,
    },
    /// Revoke a token by id.
    Revoke {
        /// Token id (from `osprey token list`).
        id: u64,
        /// Organization slug.
        #[arg(long, default_value = "default")]
        org: String,
        /// Data directory.
        #[arg(long, env = "OSPREY_DATA", default_value = "./osprey-data")]
        data: PathBuf,
    },
}

fn open(data: &Path) -> anyhow::Result<Store> {
    if !data.join("CURRENT").exists() {
        bail!(
            "{} is not an osprey data directory (start `osprey serve --data {}` once first)",
            data.display(),
            data.display()
        );
    }
    Store::open(data, &StoreOptions::default()).with_context(|| {
        format!(
            "opening {} (if a server is running on it, create tokens with POST /api/0/api-tokens/ and the admin token)",
            data.display()
        )
    })
}

fn org_id(store: &Store, slug: &str) -> anyhow::Result<u64> {
    store
        .meta()
        .organization_by_slug(slug)
        .map(|o| o.id)
        .with_context(|| format!("no organization {slug:?}"))
}

/// Runs `osprey token …`.
pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        TokenCommand::Create {
            scopes,
            name,
            org,
            data,
            json,
        } => {
            let scopes: Vec<String> = scopes
                .iter()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect();
            query::api::validate_scopes(&scopes, None).map_err(anyhow::Error::msg)?;
            let store = open(&data)?;
            let org_id = org_id(&store, &org)?;
            let (secret, token) = store.create_token(org_id, &name, &scopes, None)?;
            store.flush()?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "id": token.id.to_string(),
                        "name": token.name,
                        "scopes": token.scopes,
                        "token": secret,
                    })
                );
            } else {
                println!(
                    "Token {} ({}) with scopes {}:",
                    token.id,
                    token.name,
                    token.scopes.join(",")
                );
                println!("{secret}");
            }
        }
        TokenCommand::List { org, data } => {
            let store = open(&data)?;
            let org_id = org_id(&store, &org)?;
            println!("{:>4}  {:<20}  SCOPES", "ID", "NAME");
            for t in store.meta().tokens_of_org(org_id) {
                println!("{:>4}  {:<20}  {}", t.id, t.name, t.scopes.join(","));
            }
        }
        TokenCommand::Revoke { id, org, data } => {
            let store = open(&data)?;
            let org_id = org_id(&store, &org)?;
            store.delete_token(org_id, id)?;
            store.flush()?;
            println!("Token {id} revoked.");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    #[test]
    fn create_list_revoke_on_a_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
            store.bootstrap(None, Some("admin")).unwrap();
        }
        let data = dir.path().to_str().unwrap();
        let cli = Cli::parse_from([
            "t",
            "create",
            "--scopes",
            "project:read,event:read",
            "--data",
            data,
        ]);
        run(cli.args).unwrap();
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        let tokens = store.meta().tokens_of_org(1);
        let created = tokens.iter().find(|t| t.name == "cli token").unwrap();
        assert_eq!(created.scopes, ["project:read", "event:read"]);
        let id = created.id.to_string();
        drop(store);
        run(Cli::parse_from(["t", "revoke", &id, "--data", data]).args).unwrap();
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        assert!(store
            .meta()
            .tokens_of_org(1)
            .iter()
            .all(|t| t.name != "cli token"));
        drop(store);
        let bad = Cli::parse_from(["t", "create", "--scopes", "root:all", "--data", data]);
        assert!(run(bad.args)
            .unwrap_err()
            .to_string()
            .contains("unknown scope"));
        let missing = Cli::parse_from([
            "t",
            "create",
            "--scopes",
            "org:read",
            "--data",
            "/nonexistent/osprey",
        ]);
        assert!(run(missing.args)
            .unwrap_err()
            .to_string()
            .contains("not an osprey data directory"));
    }
}
