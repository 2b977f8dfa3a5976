//! Principals and their tokens in SQL.

use super::tx::*;

// The role comes from a scalar subquery, not a join: SQLite (built with STAT4) re-prepares a
// cached join statement every time `t.id` is bound to a new value, which made every
// authentication parse its SQL again.
pub(super) const TOKEN_COLUMNS: &str = "t.id, t.name, (SELECT role FROM principals WHERE name = t.name), \
     t.secret_hash, t.created_at, t.created_by, t.revoked_at";
pub(super) const TOKENS: &str = "tokens t";

fn token_from_row(row: &Row) -> Result<TokenRecord, StoreError> {
    Ok(TokenRecord {
        id: row.get(0)?,
        name: row.get(1)?,
        role: text_enum(row, 2)?,
        secret_hash: row.get(3)?,
        created_at: timestamp(row, 4)?,
        created_by: row.get(5)?,
        revoked_at: optional_timestamp(row, 6)?,
    })
}

impl TokenTx for SqlTx<'_> {
    fn principal_role(&mut self, name: &str) -> Result<Option<Role>, StoreError> {
        self.one(
            "SELECT role FROM principals WHERE name = $1",
            [name],
            |row| text_enum(row, 0),
        )
    }

    fn insert_principal(
        &mut self,
        name: &str,
        role: Role,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO principals (name, role, created_at) VALUES ($1, $2, $3)",
            vals![name, role.as_str(), at.unix_millis()],
        )?;
        Ok(())
    }

    fn insert_token(&mut self, t: &TokenRecord) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO tokens (id, name, secret_hash, created_at, created_by, revoked_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
            vals![
                t.id,
                t.name,
                t.secret_hash,
                t.created_at.unix_millis(),
                t.created_by,
                t.revoked_at.map(Timestamp::unix_millis),
            ],
        )?;
        Ok(())
    }

    fn get_token(&mut self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        if let Some(cached) = self.state.cache.token(id) {
            return Ok(cached.clone());
        }
        let found = self.one(
            &format!("SELECT {TOKEN_COLUMNS} FROM {TOKENS} WHERE t.id = $1"),
            [id],
            token_from_row,
        )?;
        self.state.cache.put_token(id, &found);
        Ok(found)
    }

    fn list_tokens(&mut self) -> Result<Vec<TokenRecord>, StoreError> {
        self.collect(
            &format!("SELECT {TOKEN_COLUMNS} FROM {TOKENS} ORDER BY t.created_at, t.id"),
            vals![],
            token_from_row,
        )
    }

    fn count_tokens(&mut self) -> Result<u64, StoreError> {
        self.count("SELECT count(*) FROM tokens", vals![])
    }

    fn revoke_token(&mut self, id: &str, at: Timestamp) -> Result<bool, StoreError> {
        let changed = self.execute(
            "UPDATE tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
            vals![id, at.unix_millis()],
        )?;
        Ok(changed == 1)
    }

    fn revoke_tokens_of(
        &mut self,
        name: &str,
        at: Timestamp,
    ) -> Result<Vec<TokenRecord>, StoreError> {
        let active = self.collect(
            &format!(
                "SELECT {TOKEN_COLUMNS} FROM {TOKENS}
                 WHERE t.name = $1 AND t.revoked_at IS NULL ORDER BY t.created_at, t.id"
            ),
            [name],
            token_from_row,
        )?;
        self.execute(
            "UPDATE tokens SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL",
            vals![name, at.unix_millis()],
        )?;
        Ok(active
            .into_iter()
            .map(|t| TokenRecord {
                revoked_at: Some(at),
                ..t
            })
            .collect())
    }
}
