//! The audit log in SQL.

use super::tx::*;

const AUDIT_COLUMNS: &str =
    "seq, at, principal, role, action, environment, decision, reason, details, prev_hash, hash";

fn audit_from_row(row: &Row) -> Result<AuditEntry, StoreError> {
    let details: String = row.get(8)?;
    let details = RawValue::from_string(details).map_err(|e| corrupt(8, e))?;
    Ok(AuditEntry {
        seq: unsigned(row, 0)?,
        at: timestamp(row, 1)?,
        principal: row.get(2)?,
        role: optional_enum(row, 3)?,
        action: row.get(4)?,
        environment: optional_enum(row, 5)?,
        decision: text_enum(row, 6)?,
        reason: row.get(7)?,
        details,
        prev_hash: row.get(9)?,
        hash: row.get(10)?,
    })
}

impl AuditTx for SqlTx<'_> {
    fn append_audit(&mut self, draft: AuditDraft, at: Timestamp) -> Result<AuditEntry, StoreError> {
        let (seq, prev_hash) = self.chain_head()?;
        let entry = AuditEntry::seal(draft, seq + 1, at, &prev_hash);
        self.execute(
            &format!(
                "INSERT INTO audit_log ({AUDIT_COLUMNS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
            ),
            vals![
                signed(entry.seq),
                entry.at.unix_millis(),
                entry.principal,
                entry.role.map(|r| r.as_str()),
                entry.action,
                entry.environment.map(|e| e.as_str()),
                entry.decision.as_str(),
                entry.reason,
                entry.details.get(),
                entry.prev_hash,
                entry.hash,
            ],
        )?;
        self.execute(
            "UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1",
            vals![signed(entry.seq), entry.hash],
        )?;
        *self.tail = Tail::Known {
            seq: entry.seq,
            hash: entry.hash.clone(),
        };
        Ok(entry)
    }

    fn audit_page(&mut self, q: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let mut conditions = Vec::new();
        let mut values: Vec<Value> = Vec::new();
        let mut condition = |sql: &str, value: Value| {
            values.push(value);
            conditions.push(format!("{sql} ${}", values.len()));
        };
        if let Some(action) = &q.action {
            condition("action =", Value::Text(action.clone()));
        }
        if let Some(environment) = q.environment {
            condition("environment =", Value::Text(environment.as_str().into()));
        }
        if let Some(principal) = &q.principal {
            condition("principal =", Value::Text(principal.clone()));
        }
        if let Some(decision) = q.decision {
            condition("decision =", Value::Text(decision.as_str().into()));
        }
        if let Some(since) = q.since {
            condition("at >=", Value::Int(since.unix_millis()));
        }
        if let Some(until) = q.until {
            condition("at <", Value::Int(until.unix_millis()));
        }
        if let Some(before) = q.before_seq {
            condition("seq <", Value::Int(signed(before)));
        }
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        values.push(Value::Int(i64::from(q.limit)));
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log {filter} ORDER BY seq DESC LIMIT ${}",
            values.len()
        );
        self.collect(&sql, values, audit_from_row)
    }

    fn audit_after(&mut self, after_seq: u64, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        self.collect(
            &format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2"),
            vals![signed(after_seq), limit],
            audit_from_row,
        )
    }

    fn audit_head(&mut self) -> Result<Option<(u64, String)>, StoreError> {
        self.one(
            "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
            vals![],
            |row| Ok((unsigned(row, 0)?, row.get(1)?)),
        )
    }
}
