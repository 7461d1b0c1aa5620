//! Organizations, projects, DSN keys and API tokens.
//!
//! They live in the `meta` column family as JSON and in an in-memory cache that ingest reads
//! on every request (a read lock and a hash lookup). Writes go to RocksDB first, then to the
//! cache.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::RwLock;
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::db::{now_ms, Rocks, Store};
use crate::error::{Result, StorageError};
use crate::{cf, keys};

/// A Sentry organization.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Organization {
    /// Numeric id.
    pub id: u64,
    /// URL slug (`default`).
    pub slug: String,
    /// Display name.
    pub name: String,
    /// Creation time, unix ms.
    pub created_ms: u64,
}

/// Per-project settings; every field has a default so older records keep loading.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ProjectSettings {
    /// Apdex threshold T in milliseconds (Sentry's default 300).
    pub apdex_threshold_ms: u64,
    /// Per-transaction apdex thresholds, overriding the project's.
    pub transaction_thresholds: BTreeMap<String, u64>,
    /// Server-side data scrubbing (passwords, secrets, tokens, cards, auth headers).
    pub scrub_data: bool,
    /// Also scrub IP addresses.
    pub scrub_ip_addresses: bool,
    /// Extra field names to scrub, besides the defaults.
    pub sensitive_fields: Vec<String>,
    /// Field names never scrubbed.
    pub safe_fields: Vec<String>,
    /// Inbound filter: drop events from localhost.
    pub filter_localhost: bool,
    /// Inbound filter: release globs to drop.
    pub filter_releases: Vec<String>,
    /// Inbound filter: error message globs (`Type: value`) to drop.
    pub filter_error_messages: Vec<String>,
    /// Server-side fingerprint rules in Sentry's text syntax.
    pub fingerprinting_rules: String,
    /// Stack-trace rules (grouping enhancements) in Sentry's text syntax.
    pub grouping_enhancements: String,
    /// Origins allowed to post from browsers (`*` = any).
    pub allowed_domains: Vec<String>,
    /// Sentry's `resolveAge`: auto-resolve issues not seen for this many hours (0 = never).
    pub resolve_age_hours: u64,
}

impl Default for ProjectSettings {
    fn default() -> Self {
        ProjectSettings {
            apdex_threshold_ms: 300,
            transaction_thresholds: BTreeMap::new(),
            scrub_data: true,
            scrub_ip_addresses: false,
            sensitive_fields: Vec::new(),
            safe_fields: Vec::new(),
            filter_localhost: false,
            filter_releases: Vec::new(),
            filter_error_messages: Vec::new(),
            fingerprinting_rules: String::new(),
            grouping_enhancements: String::new(),
            allowed_domains: vec!["*".into()],
            resolve_age_hours: 0,
        }
    }
}

/// A project: where events go.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Project {
    /// Numeric id, the one in the DSN.
    pub id: u64,
    /// Owning organization.
    pub org_id: u64,
    /// URL slug, unique within the organization.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// Platform hint (`python`, `node`, …), may be empty.
    #[serde(default)]
    pub platform: String,
    /// Creation time, unix ms.
    pub created_ms: u64,
    /// Settings.
    #[serde(default)]
    pub settings: ProjectSettings,
}

/// A per-key rate limit: at most `limit` items of `categories` per `window_secs`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KeyRateLimit {
    /// Items allowed per window.
    pub limit: u64,
    /// Window length in seconds.
    pub window_secs: u64,
}

/// A DSN key (Sentry "client key").
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProjectKey {
    /// The 32-hex public key of the DSN.
    pub public_key: String,
    /// The (deprecated) secret half.
    pub secret_key: String,
    /// Numeric id.
    pub key_id: u64,
    /// The project this key sends to.
    pub project_id: u64,
    /// Label shown in the UI/API.
    pub label: String,
    /// A disabled key is rejected with 403.
    pub enabled: bool,
    /// Creation time, unix ms.
    pub created_ms: u64,
    /// Optional per-key rate limit (Sentry's "rate limit" on a key).
    #[serde(default)]
    pub rate_limit: Option<KeyRateLimit>,
}

/// An API token for `/api/0/` and MCP over HTTP. Only the hash of the secret is stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ApiToken {
    /// Numeric id.
    pub id: u64,
    /// hex sha256 of the secret.
    pub hash: String,
    /// The organization the token can see.
    pub org_id: u64,
    /// Scopes (`org:read`, `project:write`, `event:admin`, …).
    pub scopes: Vec<String>,
    /// Name shown in listings.
    pub name: String,
    /// Creation time, unix ms.
    pub created_ms: u64,
}

impl ApiToken {
    /// Whether the token carries `scope`. A `:admin` scope implies `:write` and `:read` of the
    /// same resource, and `:write` implies `:read`, as in Sentry.
    pub fn has_scope(&self, scope: &str) -> bool {
        let (resource, level) = scope.split_once(':').unwrap_or((scope, ""));
        let rank = |l: &str| match l {
            "read" => 1,
            "write" => 2,
            "admin" => 3,
            _ => 0,
        };
        self.scopes.iter().any(|s| {
            s == scope
                || s.split_once(':').is_some_and(|(r, l)| {
                    r == resource && rank(l) >= rank(level) && rank(level) > 0
                })
        })
    }
}

/// Every scope osprey knows, granted to the admin token.
pub const ALL_SCOPES: &[&str] = &[
    "org:read",
    "org:write",
    "org:admin",
    "project:read",
    "project:write",
    "project:admin",
    "project:releases",
    "team:read",
    "team:write",
    "member:read",
    "event:read",
    "event:write",
    "event:admin",
    "alerts:read",
    "alerts:write",
];

#[derive(Default)]
struct Maps {
    orgs: HashMap<u64, Arc<Organization>>,
    projects: HashMap<u64, Arc<Project>>,
    keys: HashMap<String, Arc<ProjectKey>>,
    tokens: HashMap<String, Arc<ApiToken>>,
}

/// The cached metadata. Reads never touch RocksDB.
#[derive(Default)]
pub struct Meta {
    maps: RwLock<Maps>,
}

/// What first start created, for printing.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    /// The default project's DSN public key.
    pub dsn_public_key: String,
    /// The admin token, if this start generated one (printed once, never stored in clear).
    pub generated_admin_token: Option<String>,
}

fn hash_token(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// 32 random lowercase hex characters (DSN keys).
pub fn random_hex32() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    hex(&bytes)
}

impl Meta {
    pub(crate) fn load(db: &Rocks) -> Result<Meta> {
        let meta = Meta::default();
        meta.reload(db)?;
        Ok(meta)
    }

    pub(crate) fn reload(&self, db: &Rocks) -> Result<()> {
        let handle = db.cf_handle(cf::META).expect("meta column family exists");
        let mut maps = Maps::default();
        for item in db.iterator_cf(&handle, rocksdb::IteratorMode::Start) {
            let (key, value) = item?;
            match key.first() {
                Some(&keys::meta::ORG) => {
                    let o: Organization = serde_json::from_slice(&value)?;
                    maps.orgs.insert(o.id, Arc::new(o));
                }
                Some(&keys::meta::PROJECT) => {
                    let p: Project = serde_json::from_slice(&value)?;
                    maps.projects.insert(p.id, Arc::new(p));
                }
                Some(&keys::meta::KEY) => {
                    let k: ProjectKey = serde_json::from_slice(&value)?;
                    maps.keys.insert(k.public_key.clone(), Arc::new(k));
                }
                Some(&keys::meta::TOKEN) => {
                    let t: ApiToken = serde_json::from_slice(&value)?;
                    maps.tokens.insert(t.hash.clone(), Arc::new(t));
                }
                _ => {}
            }
        }
        *self.maps.write() = maps;
        Ok(())
    }

    /// A DSN key by its public key.
    pub fn key(&self, public_key: &str) -> Option<Arc<ProjectKey>> {
        self.maps.read().keys.get(public_key).cloned()
    }

    /// Every key of a project, oldest first.
    pub fn keys_of_project(&self, project_id: u64) -> Vec<Arc<ProjectKey>> {
        let mut keys: Vec<_> = self
            .maps
            .read()
            .keys
            .values()
            .filter(|k| k.project_id == project_id)
            .cloned()
            .collect();
        keys.sort_by_key(|k| k.key_id);
        keys
    }

    /// A project by id.
    pub fn project(&self, id: u64) -> Option<Arc<Project>> {
        self.maps.read().projects.get(&id).cloned()
    }

    /// A project by organization and slug, or by its numeric id given as text.
    pub fn project_by_slug(&self, org_id: u64, slug_or_id: &str) -> Option<Arc<Project>> {
        let maps = self.maps.read();
        maps.projects
            .values()
            .find(|p| {
                p.org_id == org_id && (p.slug == slug_or_id || p.id.to_string() == slug_or_id)
            })
            .cloned()
    }

    /// The ids of an organization's projects, ascending.
    pub fn project_ids_of_org(&self, org_id: u64) -> Vec<u64> {
        self.projects_of_org(org_id).iter().map(|p| p.id).collect()
    }

    /// Every project of an organization, by id.
    pub fn projects_of_org(&self, org_id: u64) -> Vec<Arc<Project>> {
        let mut projects: Vec<_> = self
            .maps
            .read()
            .projects
            .values()
            .filter(|p| p.org_id == org_id)
            .cloned()
            .collect();
        projects.sort_by_key(|p| p.id);
        projects
    }

    /// An organization by id.
    pub fn organization(&self, id: u64) -> Option<Arc<Organization>> {
        self.maps.read().orgs.get(&id).cloned()
    }

    /// An organization by slug or numeric id as text.
    pub fn organization_by_slug(&self, slug_or_id: &str) -> Option<Arc<Organization>> {
        self.maps
            .read()
            .orgs
            .values()
            .find(|o| o.slug == slug_or_id || o.id.to_string() == slug_or_id)
            .cloned()
    }

    /// Every organization, by id.
    pub fn organizations(&self) -> Vec<Arc<Organization>> {
        let mut orgs: Vec<_> = self.maps.read().orgs.values().cloned().collect();
        orgs.sort_by_key(|o| o.id);
        orgs
    }

    /// The token whose secret is `secret`, if any.
    pub fn token(&self, secret: &str) -> Option<Arc<ApiToken>> {
        self.maps.read().tokens.get(&hash_token(secret)).cloned()
    }

    /// Every token of an organization (hashes only).
    pub fn tokens_of_org(&self, org_id: u64) -> Vec<Arc<ApiToken>> {
        let mut tokens: Vec<_> = self
            .maps
            .read()
            .tokens
            .values()
            .filter(|t| t.org_id == org_id)
            .cloned()
            .collect();
        tokens.sort_by_key(|t| t.id);
        tokens
    }
}

/// The sequence holding this node's issue-id floor (see [`Store::issue_id_floor`]).
const ISSUE_ID_FLOOR: &str = "issue_id_floor";
/// Bits of one node's issue-id block.
const ISSUE_ID_BLOCK_BITS: u32 = 24;

impl Store {
    pub(crate) fn next_id(&self, sequence: &str) -> Result<u64> {
        if let Some(publisher) = self.meta_publisher() {
            return publisher.allocate_id(sequence);
        }
        let key = keys::prefixed_str(keys::meta::SEQUENCE, sequence);
        let meta_cf = self.cf(cf::META);
        let next = self.meta_u64(&key)? + 1;
        self.db().put_cf(&meta_cf, &key, next.to_be_bytes())?;
        Ok(next)
    }

    /// The number issue ids and short-id numbers of this data directory start above: 0 on a
    /// single server; in Kafka mode a per-node block claimed once through the shared metadata
    /// topic ([`Store::claim_issue_id_floor`]), so that issues made by different processor
    /// nodes never share an id or a short id and a query node can look one up by id.
    pub fn issue_id_floor(&self) -> Result<u64> {
        self.sequence_value(ISSUE_ID_FLOOR)
    }

    /// The last value of local sequence `name` (0 when it never advanced).
    pub fn sequence_value(&self, name: &str) -> Result<u64> {
        self.meta_u64(&keys::prefixed_str(keys::meta::SEQUENCE, name))
    }

    /// A big-endian u64 kept in the metadata column family under `key` (0 when absent):
    /// sequences and consumer offsets.
    pub fn meta_u64(&self, key: &[u8]) -> Result<u64> {
        Ok(self
            .db()
            .get_cf(&self.cf(cf::META), key)?
            .and_then(|v| v.as_slice().try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(0))
    }

    /// Claims this node's issue-id block when metadata is shared and none is claimed yet, and
    /// returns the floor. The block number comes from the shared id allocator (unique across
    /// nodes); each block holds 2^24 ids, so ids stay below 2^53 (exact in JavaScript) for
    /// the first 2^29 metadata-topic records. Without shared metadata the floor stays 0.
    pub fn claim_issue_id_floor(&self) -> Result<u64> {
        let floor = self.issue_id_floor()?;
        if floor != 0 || !self.shares_metadata() {
            return Ok(floor);
        }
        let block = self.next_id("issue_id_block")?;
        let floor = block << ISSUE_ID_BLOCK_BITS;
        let mut opts = rocksdb::WriteOptions::default();
        opts.set_sync(true);
        self.db().put_cf_opt(
            &self.cf(cf::META),
            keys::prefixed_str(keys::meta::SEQUENCE, ISSUE_ID_FLOOR),
            floor.to_be_bytes(),
            &opts,
        )?;
        Ok(floor)
    }

    /// Stores a metadata record; in Kafka mode the shared topic takes it first.
    pub(crate) fn put_meta<T: Serialize>(&self, key: &[u8], value: &T) -> Result<()> {
        self.ensure_writable()?;
        let value = serde_json::to_vec(value)?;
        if let Some(publisher) = self.meta_publisher() {
            if crate::meta_topic::is_replicated(key) {
                publisher.publish(key, Some(&value))?;
            }
        }
        let mut opts = rocksdb::WriteOptions::default();
        opts.set_sync(true);
        self.db()
            .put_cf_opt(&self.cf(cf::META), key, value, &opts)?;
        Ok(())
    }

    /// Deletes a metadata record; in Kafka mode the shared topic takes the delete first.
    pub(crate) fn delete_meta(&self, key: &[u8]) -> Result<()> {
        self.ensure_writable()?;
        if let Some(publisher) = self.meta_publisher() {
            if crate::meta_topic::is_replicated(key) {
                publisher.publish(key, None)?;
            }
        }
        let mut opts = rocksdb::WriteOptions::default();
        opts.set_sync(true);
        self.db().delete_cf_opt(&self.cf(cf::META), key, &opts)?;
        Ok(())
    }

    /// An id for an object every node bootstraps the same way (the `default` organization
    /// and project): 1 when metadata is shared, so that nodes starting at once write the
    /// same record instead of two; the local sequence otherwise.
    fn bootstrap_id(&self, sequence: &str) -> Result<u64> {
        if self.shares_metadata() {
            Ok(1)
        } else {
            self.next_id(sequence)
        }
    }

    /// Creates an organization.
    pub fn create_organization(&self, slug: &str, name: &str) -> Result<Arc<Organization>> {
        let id = self.next_id("org")?;
        self.create_organization_with_id(id, slug, name)
    }

    fn create_organization_with_id(
        &self,
        id: u64,
        slug: &str,
        name: &str,
    ) -> Result<Arc<Organization>> {
        self.ensure_writable()?;
        if self.meta().organization_by_slug(slug).is_some() {
            return Err(StorageError::Conflict(format!(
                "organization {slug} exists"
            )));
        }
        let org = Organization {
            id,
            slug: slug.to_owned(),
            name: name.to_owned(),
            created_ms: now_ms(),
        };
        self.put_meta(&keys::prefixed_id(keys::meta::ORG, org.id), &org)?;
        let org = Arc::new(org);
        self.meta()
            .maps
            .write()
            .orgs
            .insert(org.id, Arc::clone(&org));
        Ok(org)
    }

    /// Creates a project with default settings.
    pub fn create_project(
        &self,
        org_id: u64,
        slug: &str,
        name: &str,
        platform: &str,
    ) -> Result<Arc<Project>> {
        let id = self.next_id("project")?;
        self.create_project_with_id(id, org_id, slug, name, platform)
    }

    fn create_project_with_id(
        &self,
        id: u64,
        org_id: u64,
        slug: &str,
        name: &str,
        platform: &str,
    ) -> Result<Arc<Project>> {
        self.ensure_writable()?;
        if self.meta().organization(org_id).is_none() {
            return Err(StorageError::NotFound(format!("organization {org_id}")));
        }
        if self.meta().project_by_slug(org_id, slug).is_some() {
            return Err(StorageError::Conflict(format!("project {slug} exists")));
        }
        let project = Project {
            id,
            org_id,
            slug: slug.to_owned(),
            name: name.to_owned(),
            platform: platform.to_owned(),
            created_ms: now_ms(),
            settings: ProjectSettings::default(),
        };
        self.put_project(project)
    }

    /// Stores a changed project (settings, name, …).
    pub fn put_project(&self, project: Project) -> Result<Arc<Project>> {
        self.put_meta(
            &keys::prefixed_id(keys::meta::PROJECT, project.id),
            &project,
        )?;
        let project = Arc::new(project);
        self.meta()
            .maps
            .write()
            .projects
            .insert(project.id, Arc::clone(&project));
        Ok(project)
    }

    /// Creates a DSN key for a project; `public_key` None = random.
    pub fn create_key(
        &self,
        project_id: u64,
        label: &str,
        public_key: Option<&str>,
    ) -> Result<Arc<ProjectKey>> {
        self.ensure_writable()?;
        if self.meta().project(project_id).is_none() {
            return Err(StorageError::NotFound(format!("project {project_id}")));
        }
        let public_key = public_key.map(str::to_owned).unwrap_or_else(random_hex32);
        if self.meta().key(&public_key).is_some() {
            return Err(StorageError::Conflict("DSN key exists".into()));
        }
        let key = ProjectKey {
            public_key,
            secret_key: random_hex32(),
            key_id: self.next_id("key")?,
            project_id,
            label: label.to_owned(),
            enabled: true,
            created_ms: now_ms(),
            rate_limit: None,
        };
        self.put_key(key)
    }

    /// Stores a changed key (enabled flag, label, rate limit).
    pub fn put_key(&self, key: ProjectKey) -> Result<Arc<ProjectKey>> {
        self.put_meta(&keys::prefixed_str(keys::meta::KEY, &key.public_key), &key)?;
        let key = Arc::new(key);
        self.meta()
            .maps
            .write()
            .keys
            .insert(key.public_key.clone(), Arc::clone(&key));
        Ok(key)
    }

    /// Deletes a key (rotation: create the new one first).
    pub fn delete_key(&self, public_key: &str) -> Result<()> {
        self.delete_meta(&keys::prefixed_str(keys::meta::KEY, public_key))?;
        self.meta().maps.write().keys.remove(public_key);
        Ok(())
    }

    /// Removes a project and its DSN keys from the metadata (shared through Kafka when
    /// metadata is): its keys stop authenticating at once, and the API no longer shows the
    /// project or its issues. Its stored events, issues and rollups are keyed by the project's
    /// id, which is never given out again, and leave with retention.
    pub fn delete_project(&self, project_id: u64) -> Result<()> {
        self.ensure_writable()?;
        if self.meta().project(project_id).is_none() {
            return Err(StorageError::NotFound(format!("project {project_id}")));
        }
        // Keys first: a crash between the two leaves a project without keys, never keys
        // pointing at no project.
        for key in self.meta().keys_of_project(project_id) {
            self.delete_key(&key.public_key)?;
        }
        self.delete_meta(&keys::prefixed_id(keys::meta::PROJECT, project_id))?;
        self.meta().maps.write().projects.remove(&project_id);
        Ok(())
    }

    /// Stores a token with a caller-chosen secret (`OSPREY_ADMIN_TOKEN`) or a random one;
    /// returns the secret, which is not stored.
    pub fn create_token(
        &self,
        org_id: u64,
        name: &str,
        scopes: &[String],
        secret: Option<&str>,
    ) -> Result<(String, Arc<ApiToken>)> {
        self.ensure_writable()?;
        let secret = secret
            .map(str::to_owned)
            .unwrap_or_else(|| format!("osp_{}{}", random_hex32(), random_hex32()));
        let hash = hash_token(&secret);
        if let Some(existing) = self.meta().maps.read().tokens.get(&hash) {
            return Ok((secret, Arc::clone(existing)));
        }
        let token = ApiToken {
            id: self.next_id("token")?,
            hash,
            org_id,
            scopes: scopes.to_vec(),
            name: name.to_owned(),
            created_ms: now_ms(),
        };
        self.put_meta(&keys::prefixed_str(keys::meta::TOKEN, &token.hash), &token)?;
        let token = Arc::new(token);
        self.meta()
            .maps
            .write()
            .tokens
            .insert(token.hash.clone(), Arc::clone(&token));
        Ok((secret, token))
    }

    /// Revokes a token by id.
    pub fn delete_token(&self, org_id: u64, token_id: u64) -> Result<()> {
        self.ensure_writable()?;
        let found = self
            .meta()
            .tokens_of_org(org_id)
            .into_iter()
            .find(|t| t.id == token_id)
            .ok_or_else(|| StorageError::NotFound(format!("token {token_id}")))?;
        self.delete_meta(&keys::prefixed_str(keys::meta::TOKEN, &found.hash))?;
        self.meta().maps.write().tokens.remove(&found.hash);
        Ok(())
    }

    /// First start: organization `default`, project `default` (id 1) with a DSN key, and the
    /// admin token. Idempotent; `default_key`/`admin_token` (from the environment) are applied
    /// on every start so automated set-ups can rely on them.
    pub fn bootstrap(
        &self,
        default_key: Option<&str>,
        admin_token: Option<&str>,
    ) -> Result<Bootstrap> {
        let org = match self.meta().organization_by_slug("default") {
            Some(o) => o,
            None => {
                let id = self.bootstrap_id("org")?;
                self.create_organization_with_id(id, "default", "Default")?
            }
        };
        let project = match self.meta().project_by_slug(org.id, "default") {
            Some(p) => p,
            None => {
                let id = self.bootstrap_id("project")?;
                self.create_project_with_id(id, org.id, "default", "Default", "")?
            }
        };
        let dsn_public_key = match default_key {
            Some(k) => match self.meta().key(k) {
                Some(existing) if existing.project_id == project.id => existing.public_key.clone(),
                Some(_) => {
                    return Err(StorageError::Conflict(
                        "OSPREY_DEFAULT_KEY belongs to another project".into(),
                    ))
                }
                None => self
                    .create_key(project.id, "Default", Some(k))?
                    .public_key
                    .clone(),
            },
            None => match self.meta().keys_of_project(project.id).first() {
                Some(k) => k.public_key.clone(),
                None => self
                    .create_key(project.id, "Default", None)?
                    .public_key
                    .clone(),
            },
        };
        let scopes: Vec<String> = ALL_SCOPES.iter().map(|s| s.to_string()).collect();
        let generated_admin_token = match admin_token {
            Some(secret) => {
                self.create_token(org.id, "admin", &scopes, Some(secret))?;
                None
            }
            None if self
                .meta()
                .tokens_of_org(org.id)
                .iter()
                .any(|t| t.name == "admin") =>
            {
                None
            }
            None => Some(self.create_token(org.id, "admin", &scopes, None)?.0),
        };
        Ok(Bootstrap {
            dsn_public_key,
            generated_admin_token,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::StoreOptions;

    #[test]
    fn bootstrap_is_idempotent_and_persistent() {
        let dir = tempfile::tempdir().unwrap();
        let key = "0123456789abcdef0123456789abcdef";
        let first = {
            let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
            let b = store.bootstrap(Some(key), None).unwrap();
            assert!(b.generated_admin_token.is_some());
            b
        };
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        let again = store.bootstrap(None, None).unwrap();
        assert_eq!(again.dsn_public_key, first.dsn_public_key);
        assert!(again.generated_admin_token.is_none());
        let secret = first.generated_admin_token.unwrap();
        let token = store.meta().token(&secret).expect("token persisted");
        assert!(token.has_scope("project:write") && token.has_scope("event:read"));
        let k = store.meta().key(key).unwrap();
        assert_eq!(k.project_id, 1);
        assert!(store.meta().token("wrong").is_none());
    }

    #[test]
    fn scopes_imply_lower_levels() {
        let t = ApiToken {
            id: 1,
            hash: String::new(),
            org_id: 1,
            scopes: vec!["event:admin".into(), "project:read".into()],
            name: "t".into(),
            created_ms: 0,
        };
        assert!(t.has_scope("event:write") && t.has_scope("event:read"));
        assert!(t.has_scope("project:read"));
        assert!(!t.has_scope("project:write") && !t.has_scope("org:read"));
    }
}
