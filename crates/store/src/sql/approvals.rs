//! Override requests and their votes in SQL.

use super::tx::*;

const REQUEST_COLUMNS: &str = "id, action, environment, service, release_id, reason, ttl_minutes, \
     requested_by, requested_by_role, required, approver_roles, status, created_at, expires_at, \
     decided_at, override_id";

/// A request's row, without its votes.
fn request_from_row(row: &Row) -> Result<OverrideRequest, StoreError> {
    let roles: String = row.get(10)?;
    let approver_roles = roles
        .split(',')
        .filter(|r| !r.is_empty())
        .map(|r| Role::from_str(r).map_err(|e| corrupt(10, e)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(OverrideRequest {
        id: row.get(0)?,
        action: text_enum(row, 1)?,
        environment: environment(row, 2)?,
        service: row.get(3)?,
        release_id: row.get(4)?,
        reason: row.get(5)?,
        ttl_minutes: small(row, 6)?,
        requested_by: row.get(7)?,
        requested_by_role: text_enum(row, 8)?,
        required: small(row, 9)?,
        approver_roles,
        status: text_enum(row, 11)?,
        votes: Vec::new(),
        created_at: timestamp(row, 12)?,
        expires_at: timestamp(row, 13)?,
        decided_at: optional_timestamp(row, 14)?,
        override_id: row.get(15)?,
    })
}

fn vote_from_row(row: &Row) -> Result<(String, Vote), StoreError> {
    Ok((
        row.get(0)?,
        Vote {
            principal: row.get(1)?,
            role: text_enum(row, 2)?,
            vote: text_enum(row, 3)?,
            comment: row.get(4)?,
            at: timestamp(row, 5)?,
            authenticated_by: row.get(6)?,
        },
    ))
}

impl SqlTx<'_> {
    /// Fills in the votes of `requests`, in one query.
    fn with_votes(
        &mut self,
        mut requests: Vec<OverrideRequest>,
    ) -> Result<Vec<OverrideRequest>, StoreError> {
        if requests.is_empty() {
            return Ok(requests);
        }
        let placeholders: Vec<String> = (1..=requests.len()).map(|i| format!("${i}")).collect();
        let ids: Vec<Value> = requests.iter().map(|r| Value::from(&r.id)).collect();
        let votes = self.collect(
            &format!(
                "SELECT request_id, principal, role, vote, comment, at, authenticated_by
                 FROM override_request_votes WHERE request_id IN ({})
                 ORDER BY request_id, position",
                placeholders.join(", ")
            ),
            ids,
            vote_from_row,
        )?;
        let index: std::collections::HashMap<String, usize> = requests
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id.clone(), i))
            .collect();
        for (request_id, vote) in votes {
            if let Some(&i) = index.get(&request_id) {
                requests[i].votes.push(vote);
            }
        }
        Ok(requests)
    }
}

impl ApprovalTx for SqlTx<'_> {
    fn insert_override_request(&mut self, r: &OverrideRequest) -> Result<(), StoreError> {
        let roles: Vec<&str> = r.approver_roles.iter().map(|role| role.as_str()).collect();
        self.execute(
            &format!(
                "INSERT INTO override_requests ({REQUEST_COLUMNS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
            ),
            vals![
                r.id,
                r.action.as_str(),
                r.environment.as_str(),
                r.service.as_deref(),
                r.release_id.as_deref(),
                r.reason,
                r.ttl_minutes,
                r.requested_by,
                r.requested_by_role.as_str(),
                r.required,
                roles.join(","),
                r.status.as_str(),
                r.created_at.unix_millis(),
                r.expires_at.unix_millis(),
                r.decided_at.map(Timestamp::unix_millis),
                r.override_id.as_deref(),
            ],
        )?;
        for vote in &r.votes {
            self.insert_vote(&r.id, vote)?;
        }
        Ok(())
    }

    fn get_override_request(&mut self, id: &str) -> Result<Option<OverrideRequest>, StoreError> {
        let Some(found) = self.one(
            &format!("SELECT {REQUEST_COLUMNS} FROM override_requests WHERE id = $1"),
            [id],
            request_from_row,
        )?
        else {
            return Ok(None);
        };
        Ok(self.with_votes(vec![found])?.pop())
    }

    fn list_override_requests(
        &mut self,
        status: Option<RequestStatus>,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<OverrideRequest>, StoreError> {
        let now = now.unix_millis();
        let (filter, params) = match status {
            None => (String::new(), vals![limit].to_vec()),
            Some(RequestStatus::Pending) => (
                "WHERE status = 'pending' AND expires_at > $2".to_owned(),
                vals![limit, now].to_vec(),
            ),
            Some(RequestStatus::Expired) => (
                "WHERE status = 'expired' OR (status = 'pending' AND expires_at <= $2)".to_owned(),
                vals![limit, now].to_vec(),
            ),
            Some(decided) => (
                "WHERE status = $2".to_owned(),
                vals![limit, decided.as_str()].to_vec(),
            ),
        };
        let requests = self.collect(
            &format!(
                "SELECT {REQUEST_COLUMNS} FROM override_requests {filter}
                 ORDER BY created_at DESC, id DESC LIMIT $1"
            ),
            params,
            request_from_row,
        )?;
        self.with_votes(requests)
    }

    fn insert_vote(&mut self, request_id: &str, v: &Vote) -> Result<(), StoreError> {
        // One look answers both: whether this person voted, and where the vote goes.
        let (cast, by_them) = self
            .one(
                "SELECT count(*), count(CASE WHEN principal = $2 THEN 1 END)
                 FROM override_request_votes WHERE request_id = $1",
                vals![request_id, v.principal],
                |row| Ok((unsigned(row, 0)?, unsigned(row, 1)?)),
            )?
            .unwrap_or_default();
        if by_them > 0 {
            return Err(StoreError::Conflict(format!(
                "{} has already voted on {request_id}",
                v.principal
            )));
        }
        let position = cast + 1;
        self.execute(
            "INSERT INTO override_request_votes
                 (request_id, principal, role, vote, comment, at, authenticated_by, position)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            vals![
                request_id,
                v.principal,
                v.role.as_str(),
                v.vote.as_str(),
                v.comment.as_deref(),
                v.at.unix_millis(),
                v.authenticated_by,
                signed(position),
            ],
        )?;
        Ok(())
    }

    fn decide_override_request(
        &mut self,
        id: &str,
        status: RequestStatus,
        at: Timestamp,
        override_id: Option<&str>,
    ) -> Result<bool, StoreError> {
        Ok(self.execute(
            "UPDATE override_requests SET status = $2, decided_at = $3, override_id = $4
             WHERE id = $1 AND status = 'pending'",
            vals![id, status.as_str(), at.unix_millis(), override_id],
        )? == 1)
    }

    fn override_requests_due(
        &mut self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<OverrideRequest>, StoreError> {
        let due = self.collect(
            &format!(
                "SELECT {REQUEST_COLUMNS} FROM override_requests
                 WHERE status = 'pending' AND expires_at <= $1
                 ORDER BY expires_at, id LIMIT $2"
            ),
            vals![now.unix_millis(), limit],
            request_from_row,
        )?;
        self.with_votes(due)
    }
}
