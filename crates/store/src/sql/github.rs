//! GitHub deployment protection rule requests in SQL.

use super::tx::*;

impl GithubTx for SqlTx<'_> {
    fn insert_github_request(&mut self, r: &GithubRequest) -> Result<bool, StoreError> {
        let inserted = self.execute(
            "INSERT INTO github_requests
                 (id, callback_url, github_environment, deployment_id, state, received_at,
                  next_decision_at, body)
             VALUES ($1, $2, $3, $8, $4, $5, $6, $7)
             ON CONFLICT (callback_url, github_environment, deployment_id) DO NOTHING",
            vals![
                r.id,
                r.callback_url,
                r.github_environment,
                r.state.as_str(),
                r.received_at.unix_millis(),
                r.next_decision_at.map(Timestamp::unix_millis),
                to_json(r)?,
                i64::try_from(r.deployment_id).unwrap_or(i64::MAX),
            ],
        )?;
        Ok(inserted == 1)
    }

    fn get_github_request(&mut self, id: &str) -> Result<Option<GithubRequest>, StoreError> {
        self.one(
            "SELECT body FROM github_requests WHERE id = $1",
            [id],
            |row| json_column(row, 0),
        )
    }

    fn find_github_request(
        &mut self,
        callback_url: &str,
        github_environment: &str,
        deployment_id: u64,
    ) -> Result<Option<GithubRequest>, StoreError> {
        self.one(
            "SELECT body FROM github_requests
             WHERE callback_url = $1 AND github_environment = $2 AND deployment_id = $3",
            vals![
                callback_url,
                github_environment,
                i64::try_from(deployment_id).unwrap_or(i64::MAX)
            ],
            |row| json_column(row, 0),
        )
    }

    fn update_github_request(&mut self, r: &GithubRequest) -> Result<(), StoreError> {
        self.execute(
            "UPDATE github_requests SET state = $2, next_decision_at = $3, body = $4 WHERE id = $1",
            vals![
                r.id,
                r.state.as_str(),
                r.next_decision_at.map(Timestamp::unix_millis),
                to_json(r)?,
            ],
        )?;
        Ok(())
    }

    fn pending_github_requests(
        &mut self,
        due: Option<Timestamp>,
        limit: u32,
    ) -> Result<Vec<GithubRequest>, StoreError> {
        self.collect(
            "SELECT body FROM github_requests
             WHERE state = 'pending'
               AND (CAST($1 AS BIGINT) IS NULL OR next_decision_at <= CAST($1 AS BIGINT))
             ORDER BY received_at, id LIMIT $2",
            vals![due.map(Timestamp::unix_millis), limit],
            |row| json_column(row, 0),
        )
    }
}
