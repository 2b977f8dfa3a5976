//! Single sign-on logins and sessions in SQL.

use super::tx::*;

const SESSION_COLUMNS: &str = "s.id, s.secret_hash, s.principal, \
     (SELECT role FROM principals WHERE name = s.principal), s.csrf_token, s.created_at, \
     s.last_seen_at, s.expires_at, s.revoked_at, s.revoked_by, s.token_id";

fn session_from_row(row: &Row) -> Result<SessionRecord, StoreError> {
    Ok(SessionRecord {
        id: row.get(0)?,
        secret_hash: row.get(1)?,
        principal: row.get(2)?,
        role: text_enum(row, 3)?,
        csrf_token: row.get(4)?,
        created_at: timestamp(row, 5)?,
        last_seen_at: timestamp(row, 6)?,
        expires_at: timestamp(row, 7)?,
        revoked_at: optional_timestamp(row, 8)?,
        revoked_by: row.get(9)?,
        token_id: row.get(10)?,
    })
}

impl SessionTx for SqlTx<'_> {
    fn insert_login_request(&mut self, r: &LoginRequestRecord) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO login_requests
                 (state_hash, nonce, pkce_verifier, return_to, created_at, expires_at,
                  browser_hash)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            vals![
                r.state_hash.clone(),
                r.nonce,
                r.pkce_verifier,
                r.return_to.clone(),
                r.created_at.unix_millis(),
                r.expires_at.unix_millis(),
                r.browser_hash.clone(),
            ],
        )?;
        Ok(())
    }

    fn get_login_request(
        &mut self,
        state_hash: &[u8],
    ) -> Result<Option<LoginRequestRecord>, StoreError> {
        self.one(
            "SELECT state_hash, browser_hash, nonce, pkce_verifier, return_to, created_at,
                    expires_at
             FROM login_requests WHERE state_hash = $1",
            vals![state_hash.to_vec()],
            |row| {
                Ok(LoginRequestRecord {
                    state_hash: row.get(0)?,
                    browser_hash: row.get(1)?,
                    nonce: row.get(2)?,
                    pkce_verifier: row.get(3)?,
                    return_to: row.get(4)?,
                    created_at: timestamp(row, 5)?,
                    expires_at: timestamp(row, 6)?,
                })
            },
        )
    }

    fn take_login_request(
        &mut self,
        state_hash: &[u8],
    ) -> Result<Option<LoginRequestRecord>, StoreError> {
        let found = self.get_login_request(state_hash)?;
        if found.is_none() {
            return Ok(None);
        }
        // Only the transaction that deletes the row has used the state.
        let deleted = self.execute(
            "DELETE FROM login_requests WHERE state_hash = $1",
            vals![state_hash.to_vec()],
        )?;
        Ok(found.filter(|_| deleted == 1))
    }

    fn count_login_requests(&mut self) -> Result<u64, StoreError> {
        self.count("SELECT count(*) FROM login_requests", vals![])
    }

    fn purge_login_requests(&mut self, now: Timestamp) -> Result<u64, StoreError> {
        self.execute(
            "DELETE FROM login_requests WHERE expires_at < $1",
            vals![now.unix_millis()],
        )
    }

    fn insert_session(&mut self, s: &SessionRecord) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO sessions
                 (id, secret_hash, principal, csrf_token, created_at, last_seen_at, expires_at,
                  revoked_at, revoked_by, token_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            vals![
                s.id,
                s.secret_hash.clone(),
                s.principal,
                s.csrf_token,
                s.created_at.unix_millis(),
                s.last_seen_at.unix_millis(),
                s.expires_at.unix_millis(),
                s.revoked_at.map(Timestamp::unix_millis),
                s.revoked_by.clone(),
                s.token_id.clone(),
            ],
        )?;
        Ok(())
    }

    fn get_session(&mut self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        self.one(
            &format!("SELECT {SESSION_COLUMNS} FROM sessions s WHERE s.id = $1"),
            [id],
            session_from_row,
        )
    }

    fn touch_session(&mut self, id: &str, at: Timestamp) -> Result<bool, StoreError> {
        let changed = self.execute(
            "UPDATE sessions SET last_seen_at = $2
             WHERE id = $1 AND revoked_at IS NULL AND last_seen_at < $2",
            vals![id, at.unix_millis()],
        )?;
        Ok(changed == 1)
    }

    fn list_sessions(&mut self) -> Result<Vec<SessionRecord>, StoreError> {
        self.collect(
            &format!("SELECT {SESSION_COLUMNS} FROM sessions s ORDER BY s.created_at DESC, s.id"),
            vals![],
            session_from_row,
        )
    }

    fn revoke_session(&mut self, id: &str, by: &str, at: Timestamp) -> Result<bool, StoreError> {
        let changed = self.execute(
            "UPDATE sessions SET revoked_at = $2, revoked_by = $3
             WHERE id = $1 AND revoked_at IS NULL",
            vals![id, at.unix_millis(), by],
        )?;
        Ok(changed == 1)
    }

    fn revoke_sessions_of(
        &mut self,
        principal: &str,
        by: &str,
        at: Timestamp,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let active = self.collect(
            &format!(
                "SELECT {SESSION_COLUMNS} FROM sessions s
                 WHERE s.principal = $1 AND s.revoked_at IS NULL ORDER BY s.created_at DESC, s.id"
            ),
            [principal],
            session_from_row,
        )?;
        self.execute(
            "UPDATE sessions SET revoked_at = $2, revoked_by = $3
             WHERE principal = $1 AND revoked_at IS NULL",
            vals![principal, at.unix_millis(), by],
        )?;
        Ok(active
            .into_iter()
            .map(|s| SessionRecord {
                revoked_at: Some(at),
                revoked_by: Some(by.to_owned()),
                ..s
            })
            .collect())
    }

    fn revoke_sessions_of_token(
        &mut self,
        token_id: &str,
        by: &str,
        at: Timestamp,
    ) -> Result<u64, StoreError> {
        self.execute(
            "UPDATE sessions SET revoked_at = $2, revoked_by = $3
             WHERE token_id = $1 AND revoked_at IS NULL",
            vals![token_id, at.unix_millis(), by],
        )
    }
}
