//! In-process fixture for handler tests: a real RocksDB in a temporary directory, the
//! bootstrap organization/project, an admin token, and request helpers.

use http::Method;
use serde_json::Value;
use storage::{Store, StoreOptions};

use super::{ApiConfig, ApiRequest, ApiResponse, ApiService};
use crate::QueryService;

pub(crate) struct Fixture {
    _dir: tempfile::TempDir,
    pub store: Store,
    pub api: ApiService,
    pub admin: String,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), &StoreOptions::default()).expect("open store");
        store
            .bootstrap(None, Some("admin-secret"))
            .expect("bootstrap");
        let api = ApiService::new(QueryService::new(store.clone()), ApiConfig::default());
        Fixture {
            _dir: dir,
            store,
            api,
            admin: "admin-secret".into(),
        }
    }

    /// A token of organization `org_id` with `scopes`; returns its secret.
    pub fn token(&self, org_id: u64, scopes: &[&str]) -> String {
        let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
        self.store
            .create_token(org_id, "test", &scopes, None)
            .expect("create token")
            .0
    }

    pub fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> ApiResponse {
        let mut req = ApiRequest::new(method, path);
        if let Some(t) = token {
            req = req.bearer(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        self.api.call(&req)
    }

    pub fn get(&self, path: &str) -> ApiResponse {
        self.call(Method::GET, path, Some(&self.admin), None)
    }

    pub fn post(&self, path: &str, body: Value) -> ApiResponse {
        self.call(Method::POST, path, Some(&self.admin), Some(body))
    }

    pub fn put(&self, path: &str, body: Value) -> ApiResponse {
        self.call(Method::PUT, path, Some(&self.admin), Some(body))
    }
}
