//! GitHub deployment protection rule requests (SPEC §17).

use deploy_safety_core::{GithubRequest, Timestamp};

use crate::StoreError;

/// GitHub deployment protection rule requests.
pub trait GithubTx {
    /// Stores a new request; `false` (and nothing stored) when one for the same callback URL,
    /// GitHub environment and deployment exists.
    fn insert_github_request(&mut self, request: &GithubRequest) -> Result<bool, StoreError>;
    fn get_github_request(&mut self, id: &str) -> Result<Option<GithubRequest>, StoreError>;
    /// The request made for (callback URL, GitHub environment, deployment), if any.
    fn find_github_request(
        &mut self,
        callback_url: &str,
        github_environment: &str,
        deployment_id: u64,
    ) -> Result<Option<GithubRequest>, StoreError>;
    /// Replaces a stored request.
    fn update_github_request(&mut self, request: &GithubRequest) -> Result<(), StoreError>;
    /// Pending requests, oldest first, at most `limit`: every one, or with `due` those to be
    /// decided again by then.
    fn pending_github_requests(
        &mut self,
        due: Option<Timestamp>,
        limit: u32,
    ) -> Result<Vec<GithubRequest>, StoreError>;
}
