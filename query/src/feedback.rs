//! User feedback of a project or an issue, newest first, each with the issue it belongs to
//! (resolved through its event when the feedback came before the event: see
//! [`storage::feedback`]). Used by the user-feedback API and by MCP.

use std::collections::HashMap;

use storage::feedback::{self, FeedbackRecord};
use storage::records::{self, IssueRecord, IssueStatus};
use storage::Result;

use crate::QueryService;

/// Most feedback entries one question looks at: a project's feedback is read newest first,
/// and feedback older than this many entries is not reached by a filtered list.
pub const MAX_FEEDBACK_SCAN: usize = 10_000;

/// One feedback and the issue it is linked to.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkedFeedback {
    /// The stored feedback.
    pub record: FeedbackRecord,
    /// Its issue: the one it was stored with, or its event's if that came later.
    pub issue_id: Option<u64>,
}

/// Which feedback of a project to list.
#[derive(Debug, Clone, Default)]
pub struct FeedbackFilter {
    /// Only feedback of this environment.
    pub environment: Option<String>,
    /// Only feedback linked to an unresolved issue (Sentry's `status=unresolved`).
    pub unresolved_only: bool,
    /// Only feedback linked to this issue.
    pub issue_id: Option<u64>,
}

impl QueryService {
    /// A page of a project's feedback (newest first) and whether more follow.
    pub fn project_feedback(
        &self,
        project_id: u64,
        filter: &FeedbackFilter,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<LinkedFeedback>, bool)> {
        let store = self.store();
        let mut issues: HashMap<String, Option<u64>> = HashMap::new();
        let mut statuses: HashMap<u64, bool> = HashMap::new();
        let (page, more) = feedback::list_project(
            store,
            project_id,
            offset,
            limit,
            MAX_FEEDBACK_SCAN,
            |record| {
                if let Some(env) = &filter.environment {
                    if record.environment.as_deref() != Some(env.as_str()) {
                        return Ok(false);
                    }
                }
                if filter.issue_id.is_none() && !filter.unresolved_only {
                    return Ok(true);
                }
                let issue = feedback::resolve_issue(store, record)?;
                issues.insert(record.id.clone(), issue);
                if filter.issue_id.is_some() && issue != filter.issue_id {
                    return Ok(false);
                }
                if filter.unresolved_only {
                    let Some(id) = issue else {
                        return Ok(false);
                    };
                    if let std::collections::hash_map::Entry::Vacant(slot) = statuses.entry(id) {
                        let unresolved = records::load_issue(store, id)?
                            .is_some_and(|r| r.status == IssueStatus::Unresolved);
                        slot.insert(unresolved);
                    }
                    return Ok(statuses[&id]);
                }
                Ok(true)
            },
        )?;
        let mut out = Vec::with_capacity(page.len());
        for record in page {
            let issue_id = match issues.get(&record.id) {
                Some(known) => *known,
                None => feedback::resolve_issue(store, &record)?,
            };
            out.push(LinkedFeedback { record, issue_id });
        }
        Ok((out, more))
    }

    /// A page of an issue's feedback (newest first) and whether more follow.
    pub fn issue_feedback(
        &self,
        issue: &IssueRecord,
        environment: Option<String>,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<LinkedFeedback>, bool)> {
        let filter = FeedbackFilter {
            environment,
            unresolved_only: false,
            issue_id: Some(issue.id),
        };
        self.project_feedback(issue.project_id, &filter, offset, limit)
    }

    /// How many feedback an issue has (Sentry's `userReportCount`), up to the scan bound.
    pub fn issue_feedback_count(&self, issue: &IssueRecord) -> Result<usize> {
        let (page, _) = self.issue_feedback(issue, None, 0, MAX_FEEDBACK_SCAN)?;
        Ok(page.len())
    }
}
