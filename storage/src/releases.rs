//! Releases, their deploys, and the repositories their commits belong to.
//!
//! A release is per organization (as in Sentry) and lists the projects it was seen in. It is
//! created either through the API (`sentry-cli releases new`) or on the first event that
//! carries its version ([`ensure_release`], called by the processor inside its write batch).
//! All three record kinds live in the `meta` column family as JSON; they never expire.
//!
//! Key layouts (see [`crate::keys::meta`]):
//! - release: `r` + org id (8 BE) + version bytes
//! - deploy: `d` + org id (8 BE) + version bytes + `0x00` + deploy id (8 BE)
//! - repository: `g` + org id (8 BE) + repository id (8 BE)
//!
//! Versions cannot contain NUL (rejected by [`validate_version`]), so the deploy key's `0x00`
//! separator keeps one release's deploys contiguous and apart from every other version.

use serde::{Deserialize, Serialize};

use crate::db::{now_ms, Store};
use crate::error::{Result, StorageError};
use crate::{cf, keys};

/// The write batch type the processor commits with.
type WriteBatch = rocksdb::WriteBatchWithTransaction<false>;

/// Longest version string accepted (Sentry's limit).
pub const MAX_VERSION_LEN: usize = 200;

/// Most commits kept on one release; a larger `set-commits` keeps the newest this many.
pub const MAX_COMMITS_PER_RELEASE: usize = 1_000;

/// A release of an organization's code.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default)]
pub struct Release {
    /// Owning organization.
    pub org_id: u64,
    /// The version string (`my-app@1.2.3`, a commit sha, …).
    pub version: String,
    /// Short-version label for display, if the client gave one (`ref` in Sentry).
    pub reference: Option<String>,
    /// A URL pointing at the release (changelog, CI run).
    pub url: Option<String>,
    /// Projects the release belongs to, ascending ids.
    pub projects: Vec<u64>,
    /// When osprey first learned of the release, unix ms.
    pub date_created_ms: u64,
    /// When the release was started (client-supplied), unix ms.
    pub date_started_ms: Option<u64>,
    /// When the release was finalized, unix ms.
    pub date_released_ms: Option<u64>,
    /// Time of the first event seen with this release, unix ms.
    pub first_event_ms: Option<u64>,
    /// Time of the latest event seen with this release, unix ms (updated coarsely, see
    /// [`ensure_release`]).
    pub last_event_ms: Option<u64>,
    /// `open` or `archived`.
    pub status: String,
    /// Head commits per repository (`set-commits --commit REPO@SHA`).
    pub refs: Vec<ReleaseRef>,
    /// Commits of the release (`set-commits` from a local git tree), newest first.
    pub commits: Vec<Commit>,
}

/// A repository head for a release.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default)]
pub struct ReleaseRef {
    /// Repository name as registered (`org/repo`).
    pub repository: String,
    /// The head commit sha.
    pub commit: String,
    /// The previous release's head, if given (`PREV..SHA`).
    pub previous_commit: Option<String>,
}

/// One commit of a release.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default)]
pub struct Commit {
    /// Commit sha.
    pub id: String,
    /// Repository name.
    pub repository: String,
    /// Commit message.
    pub message: Option<String>,
    /// Author name.
    pub author_name: Option<String>,
    /// Author e-mail.
    pub author_email: Option<String>,
    /// Commit time, unix ms.
    pub timestamp_ms: Option<u64>,
}

/// A deploy of a release to an environment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default)]
pub struct Deploy {
    /// Numeric id, unique across the installation.
    pub id: u64,
    /// Owning organization.
    pub org_id: u64,
    /// The release deployed.
    pub version: String,
    /// Environment (`production`, …).
    pub environment: String,
    /// Optional name of the deploy.
    pub name: Option<String>,
    /// Optional URL (CI job).
    pub url: Option<String>,
    /// Start time, unix ms.
    pub date_started_ms: Option<u64>,
    /// Finish time, unix ms (defaults to the creation time).
    pub date_finished_ms: u64,
    /// Projects the deploy covers.
    pub projects: Vec<u64>,
}

/// A source repository registered with an organization (the target of release refs).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default)]
pub struct Repository {
    /// Numeric id.
    pub id: u64,
    /// Owning organization.
    pub org_id: u64,
    /// Name, usually `owner/repo`.
    pub name: String,
    /// Web URL, if known.
    pub url: Option<String>,
    /// Provider id (`integrations:github`, or `osprey` for manually registered ones).
    pub provider: String,
    /// Creation time, unix ms.
    pub date_created_ms: u64,
}

/// Rejects versions Sentry rejects: empty, too long, with slashes, line breaks, tabs or NUL,
/// and the reserved names `.`, `..` and `latest`.
pub fn validate_version(version: &str) -> Result<()> {
    let bad = |why: &str| Err(StorageError::Invalid(format!("release version {why}")));
    if version.trim().is_empty() {
        return bad("is empty");
    }
    if version.len() > MAX_VERSION_LEN {
        return bad("is longer than 200 characters");
    }
    if version.contains(['/', '\\', '\n', '\r', '\t', '\0']) {
        return bad("contains a slash, a line break, a tab or a NUL character");
    }
    if matches!(version, "." | ".." | "latest") || version.trim() != version {
        return bad("is a reserved name or has surrounding whitespace");
    }
    Ok(())
}

fn org_prefix(prefix: u8, org_id: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(9 + 64);
    key.push(prefix);
    key.extend_from_slice(&org_id.to_be_bytes());
    key
}

fn release_key(org_id: u64, version: &str) -> Vec<u8> {
    let mut key = org_prefix(keys::meta::RELEASE, org_id);
    key.extend_from_slice(version.as_bytes());
    key
}

fn deploy_prefix(org_id: u64, version: &str) -> Vec<u8> {
    let mut key = org_prefix(keys::meta::DEPLOY, org_id);
    key.extend_from_slice(version.as_bytes());
    key.push(0);
    key
}

fn repo_key(org_id: u64, repo_id: u64) -> Vec<u8> {
    let mut key = org_prefix(keys::meta::REPOSITORY, org_id);
    key.extend_from_slice(&repo_id.to_be_bytes());
    key
}

/// Every value under `prefix` in the meta column family, decoded, in key order, at most
/// `limit` of them.
fn scan_prefix<T: for<'de> Deserialize<'de>>(
    store: &Store,
    prefix: &[u8],
    limit: usize,
) -> Result<Vec<T>> {
    let handle = store.cf(cf::META);
    let mut out = Vec::new();
    let iter = store.db().iterator_cf(
        &handle,
        rocksdb::IteratorMode::From(prefix, rocksdb::Direction::Forward),
    );
    for item in iter {
        let (key, value) = item?;
        if !key.starts_with(prefix) || out.len() >= limit {
            break;
        }
        out.push(serde_json::from_slice(&value)?);
    }
    Ok(out)
}

/// Looks up a release.
pub fn release(store: &Store, org_id: u64, version: &str) -> Result<Option<Release>> {
    let raw = store
        .db()
        .get_cf(&store.cf(cf::META), release_key(org_id, version))?;
    Ok(raw.map(|v| serde_json::from_slice(&v)).transpose()?)
}

/// Compares two release names: by semantic version when both look like one
/// (`[pkg@]1.2.3[-pre][+build]`), else `None` (unknown order).
pub fn compare_versions(a: &str, b: &str) -> Option<std::cmp::Ordering> {
    fn parse(r: &str) -> Option<(String, Vec<u64>, String)> {
        let (pkg, ver) = r.rsplit_once('@').unwrap_or(("", r));
        let ver = ver.split('+').next()?;
        let (core, pre) = ver.split_once('-').unwrap_or((ver, ""));
        let nums = core
            .trim_start_matches('v')
            .split('.')
            .map(|p| p.parse::<u64>().ok())
            .collect::<Option<Vec<u64>>>()?;
        (!nums.is_empty() && nums.len() <= 4).then(|| (pkg.to_owned(), nums, pre.to_owned()))
    }
    let (pa, va, pre_a) = parse(a)?;
    let (pb, vb, pre_b) = parse(b)?;
    if pa != pb {
        return None;
    }
    Some(
        va.cmp(&vb)
            .then_with(|| match (pre_a.is_empty(), pre_b.is_empty()) {
                (true, true) => std::cmp::Ordering::Equal,
                (true, false) => std::cmp::Ordering::Greater,
                (false, true) => std::cmp::Ordering::Less,
                (false, false) => pre_a.cmp(&pre_b),
            }),
    )
}

/// The release of `project` that came before `version`: the greatest older one by semantic
/// version when `version` parses as one and some other release of the same package does,
/// else the newest created before it. Releases of other projects do not count.
pub fn previous_release(
    store: &Store,
    org_id: u64,
    project_id: u64,
    version: &str,
) -> Result<Option<Release>> {
    let Some(current) = release(store, org_id, version)? else {
        return Ok(None);
    };
    let candidates: Vec<Release> = releases(store, org_id, 1_000)?
        .into_iter()
        .filter(|r| r.version != version && r.projects.contains(&project_id))
        .collect();
    let by_semver = candidates
        .iter()
        .filter(|r| compare_versions(&r.version, version) == Some(std::cmp::Ordering::Less))
        .max_by(|a, b| {
            compare_versions(&a.version, &b.version).unwrap_or(std::cmp::Ordering::Equal)
        });
    if let Some(found) = by_semver {
        return Ok(Some(found.clone()));
    }
    if candidates
        .iter()
        .any(|r| compare_versions(&r.version, version).is_some())
    {
        // Semantic versions of the same package, none older: this is the first release.
        return Ok(None);
    }
    // `releases` is newest first: the first one created before `current` is the previous.
    Ok(candidates
        .into_iter()
        .find(|r| (r.date_created_ms, &r.version) < (current.date_created_ms, &current.version)))
}

/// Every release of an organization (at most `limit`), newest first by creation time.
pub fn releases(store: &Store, org_id: u64, limit: usize) -> Result<Vec<Release>> {
    // The key order is by version; creation order needs every record, bounded by `limit`
    // scanned records times a generous factor so one organization cannot make this unbounded.
    let mut all: Vec<Release> = scan_prefix(
        store,
        &org_prefix(keys::meta::RELEASE, org_id),
        limit.saturating_mul(100).max(10_000),
    )?;
    all.sort_by(|a, b| {
        b.date_created_ms
            .cmp(&a.date_created_ms)
            .then_with(|| b.version.cmp(&a.version))
    });
    all.truncate(limit);
    Ok(all)
}

/// Stores a release (created or changed through the API).
pub fn put_release(store: &Store, release: &Release) -> Result<()> {
    store.ensure_writable()?;
    validate_version(&release.version)?;
    let mut opts = rocksdb::WriteOptions::default();
    opts.set_sync(true);
    store.db().put_cf_opt(
        &store.cf(cf::META),
        release_key(release.org_id, &release.version),
        serde_json::to_vec(release)?,
        &opts,
    )?;
    Ok(())
}

/// Deletes a release and its deploys.
pub fn delete_release(store: &Store, org_id: u64, version: &str) -> Result<()> {
    store.ensure_writable()?;
    let handle = store.cf(cf::META);
    let mut batch = WriteBatch::default();
    batch.delete_cf(&handle, release_key(org_id, version));
    let prefix = deploy_prefix(org_id, version);
    let mut end = prefix.clone();
    // The separator is 0x00; 0x01 is the first byte past every deploy of this version.
    if let Some(last) = end.last_mut() {
        *last = 1;
    }
    batch.delete_range_cf(&handle, prefix, end);
    store.write(batch, true)
}

/// How far `last_event_ms` may lag before [`ensure_release`] rewrites the record: keeps the
/// processor from rewriting a release on every event.
const LAST_EVENT_GRANULARITY_MS: u64 = 60_000;

/// Called by the processor once per batch for each (project, release) its events carry, with
/// the earliest and latest event time of the batch: creates the release on first sight, adds
/// the project to it, and moves its first/last event times, all inside the processor's
/// `batch` so it commits atomically with the events.
///
/// Costs one point read; it writes only when something changes (a new release, a new project,
/// or `last_event_ms` moving by more than a minute). An invalid version is ignored (Ok), as
/// Sentry drops such releases from events rather than the event.
pub fn ensure_release(
    store: &Store,
    batch: &mut WriteBatch,
    project_id: u64,
    version: &str,
    first_ms: u64,
    last_ms: u64,
) -> Result<()> {
    if validate_version(version).is_err() {
        return Ok(());
    }
    let org_id = store
        .meta()
        .project(project_id)
        .map(|p| p.org_id)
        .ok_or_else(|| StorageError::NotFound(format!("project {project_id}")))?;
    let mut release = match release(store, org_id, version)? {
        Some(r) => r,
        None => Release {
            org_id,
            version: version.to_owned(),
            date_created_ms: now_ms(),
            status: "open".into(),
            ..Default::default()
        },
    };
    let mut changed = release.date_created_ms == 0 || release.status.is_empty();
    if let Err(at) = release.projects.binary_search(&project_id) {
        release.projects.insert(at, project_id);
        changed = true;
    }
    if release.first_event_ms.is_none_or(|first| first_ms < first) {
        release.first_event_ms = Some(first_ms);
        changed = true;
    }
    if release
        .last_event_ms
        .is_none_or(|last| last_ms > last.saturating_add(LAST_EVENT_GRANULARITY_MS))
    {
        release.last_event_ms = Some(last_ms);
        changed = true;
    }
    if changed {
        batch.put_cf(
            &store.cf(cf::META),
            release_key(org_id, version),
            serde_json::to_vec(&release)?,
        );
    }
    Ok(())
}

/// Records a deploy (id assigned here) and returns it.
pub fn create_deploy(store: &Store, mut deploy: Deploy) -> Result<Deploy> {
    store.ensure_writable()?;
    validate_version(&deploy.version)?;
    if deploy.environment.trim().is_empty() || deploy.environment.len() > 64 {
        return Err(StorageError::Invalid(
            "deploy environment must be 1 to 64 characters".into(),
        ));
    }
    deploy.id = store.next_id("deploy")?;
    let mut key = deploy_prefix(deploy.org_id, &deploy.version);
    key.extend_from_slice(&deploy.id.to_be_bytes());
    let mut opts = rocksdb::WriteOptions::default();
    opts.set_sync(true);
    store.db().put_cf_opt(
        &store.cf(cf::META),
        key,
        serde_json::to_vec(&deploy)?,
        &opts,
    )?;
    Ok(deploy)
}

/// Deploys of a release, oldest first (at most `limit`).
pub fn deploys(store: &Store, org_id: u64, version: &str, limit: usize) -> Result<Vec<Deploy>> {
    scan_prefix(store, &deploy_prefix(org_id, version), limit)
}

/// Registers a repository; a name already registered returns the existing record.
pub fn create_repository(
    store: &Store,
    org_id: u64,
    name: &str,
    url: Option<&str>,
    provider: &str,
) -> Result<Repository> {
    store.ensure_writable()?;
    if name.trim().is_empty() || name.len() > 200 {
        return Err(StorageError::Invalid(
            "repository name must be 1 to 200 characters".into(),
        ));
    }
    if let Some(existing) = repositories(store, org_id)?
        .into_iter()
        .find(|r| r.name.eq_ignore_ascii_case(name))
    {
        return Ok(existing);
    }
    let repo = Repository {
        id: store.next_id("repository")?,
        org_id,
        name: name.to_owned(),
        url: url.map(str::to_owned),
        provider: provider.to_owned(),
        date_created_ms: now_ms(),
    };
    let mut opts = rocksdb::WriteOptions::default();
    opts.set_sync(true);
    store.db().put_cf_opt(
        &store.cf(cf::META),
        repo_key(org_id, repo.id),
        serde_json::to_vec(&repo)?,
        &opts,
    )?;
    Ok(repo)
}

/// Every repository of an organization, by id (bounded at 10 000).
pub fn repositories(store: &Store, org_id: u64) -> Result<Vec<Repository>> {
    scan_prefix(store, &org_prefix(keys::meta::REPOSITORY, org_id), 10_000)
}

/// Deletes a repository.
pub fn delete_repository(store: &Store, org_id: u64, repo_id: u64) -> Result<()> {
    store.ensure_writable()?;
    store
        .db()
        .delete_cf(&store.cf(cf::META), repo_key(org_id, repo_id))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::StoreOptions;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        store.bootstrap(None, Some("t")).unwrap();
        (dir, store)
    }

    #[test]
    fn semantic_versions_order_numerically() {
        use std::cmp::Ordering::*;
        assert_eq!(compare_versions("1.2.3", "1.10.0"), Some(Less));
        assert_eq!(compare_versions("shop@1.9.0", "shop@1.10.0"), Some(Less));
        assert_eq!(compare_versions("a@2.0.0", "a@2.0.0-rc1"), Some(Greater));
        assert_eq!(compare_versions("a@1", "b@2"), None);
        assert_eq!(compare_versions("abc", "1.0"), None);
    }

    #[test]
    fn versions_are_validated() {
        assert!(validate_version("my-app@1.2.3+build.4").is_ok());
        for bad in [
            "",
            " ",
            "a/b",
            "latest",
            "..",
            "x\ny",
            " 1.0",
            &"v".repeat(201),
        ] {
            assert!(validate_version(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn previous_release_is_by_semver_else_by_creation() {
        let (_dir, store) = store();
        let put = |version: &str, created: u64, project: u64| {
            put_release(
                &store,
                &Release {
                    org_id: 1,
                    version: version.into(),
                    projects: vec![project],
                    date_created_ms: created,
                    status: "open".into(),
                    ..Release::default()
                },
            )
            .unwrap()
        };
        // Created out of order: 1.2.0, then 1.10.0, then 1.9.0 (a hotfix line).
        put("shop@1.2.0", 1_000, 1);
        put("shop@1.10.0", 2_000, 1);
        put("shop@1.9.0", 3_000, 1);
        put("shop@1.9.5", 4_000, 2); // another project's release never counts
        put("nightly-b", 5_000, 1);
        put("nightly-c", 6_000, 1);
        let prev = |v: &str| {
            previous_release(&store, 1, 1, v)
                .unwrap()
                .map(|r| r.version)
        };
        assert_eq!(prev("shop@1.10.0").as_deref(), Some("shop@1.9.0"));
        assert_eq!(prev("shop@1.9.0").as_deref(), Some("shop@1.2.0"));
        assert_eq!(prev("shop@1.2.0"), None);
        assert_eq!(prev("nightly-c").as_deref(), Some("nightly-b"));
        assert_eq!(prev("nightly-b").as_deref(), Some("shop@1.9.0"));
        assert_eq!(prev("unknown"), None);
    }

    #[test]
    fn ensure_release_creates_once_and_tracks_projects_and_times() {
        let (_dir, store) = store();
        let mut batch = WriteBatch::default();
        ensure_release(&store, &mut batch, 1, "1.0", 5_000, 5_000).unwrap();
        store.write(batch, false).unwrap();
        let r = release(&store, 1, "1.0").unwrap().unwrap();
        assert_eq!(
            (r.projects.clone(), r.first_event_ms, r.last_event_ms),
            (vec![1], Some(5_000), Some(5_000))
        );
        assert_eq!(r.status, "open");

        // Within the granularity: nothing to write.
        let mut batch = WriteBatch::default();
        ensure_release(&store, &mut batch, 1, "1.0", 6_000, 6_000).unwrap();
        assert_eq!(batch.len(), 0);
        // Earlier event moves first_event; much later one moves last_event.
        let mut batch = WriteBatch::default();
        ensure_release(&store, &mut batch, 1, "1.0", 1_000, 1_000).unwrap();
        ensure_release(&store, &mut batch, 1, "bad/version", 1_000, 1_000).unwrap();
        store.write(batch, false).unwrap();
        let mut batch = WriteBatch::default();
        ensure_release(&store, &mut batch, 1, "1.0", 500_000, 500_000).unwrap();
        store.write(batch, false).unwrap();
        let r = release(&store, 1, "1.0").unwrap().unwrap();
        assert_eq!(
            (r.first_event_ms, r.last_event_ms),
            (Some(1_000), Some(500_000))
        );
        assert!(release(&store, 1, "bad/version").unwrap().is_none());
        let mut batch = WriteBatch::default();
        assert!(ensure_release(&store, &mut batch, 99, "1.0", 1, 1).is_err());
    }

    #[test]
    fn deploys_stay_with_their_release_and_go_with_it() {
        let (_dir, store) = store();
        for version in ["1.0", "1.0.1", "1.0-beta"] {
            put_release(
                &store,
                &Release {
                    org_id: 1,
                    version: version.into(),
                    date_created_ms: 1,
                    status: "open".into(),
                    ..Default::default()
                },
            )
            .unwrap();
        }
        for (version, env) in [
            ("1.0", "staging"),
            ("1.0.1", "production"),
            ("1.0", "production"),
        ] {
            create_deploy(
                &store,
                Deploy {
                    org_id: 1,
                    version: version.into(),
                    environment: env.into(),
                    date_finished_ms: 7,
                    ..Default::default()
                },
            )
            .unwrap();
        }
        let d = deploys(&store, 1, "1.0", 100).unwrap();
        assert_eq!(
            d.iter().map(|d| d.environment.as_str()).collect::<Vec<_>>(),
            ["staging", "production"]
        );
        assert!(d[0].id < d[1].id);
        assert_eq!(deploys(&store, 1, "1.0.1", 100).unwrap().len(), 1);
        delete_release(&store, 1, "1.0").unwrap();
        assert!(deploys(&store, 1, "1.0", 100).unwrap().is_empty());
        assert_eq!(deploys(&store, 1, "1.0.1", 100).unwrap().len(), 1);
        assert_eq!(releases(&store, 1, 10).unwrap().len(), 2);
        assert!(create_deploy(
            &store,
            Deploy {
                org_id: 1,
                version: "1.0.1".into(),
                ..Default::default()
            }
        )
        .is_err());
    }

    #[test]
    fn repositories_are_unique_by_name() {
        let (_dir, store) = store();
        let a = create_repository(&store, 1, "acme/web", None, "osprey").unwrap();
        let b = create_repository(&store, 1, "ACME/web", None, "osprey").unwrap();
        assert_eq!(a.id, b.id);
        create_repository(
            &store,
            1,
            "acme/api",
            Some("https://example.invalid/acme/api"),
            "osprey",
        )
        .unwrap();
        assert_eq!(repositories(&store, 1).unwrap().len(), 2);
        assert!(repositories(&store, 2).unwrap().is_empty());
        delete_repository(&store, 1, a.id).unwrap();
        assert_eq!(repositories(&store, 1).unwrap().len(), 1);
    }
}
