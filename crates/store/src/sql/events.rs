//! Events and the outbox of deliveries in SQL.

use super::tx::*;

fn event_from_row(row: &Row) -> Result<Event, StoreError> {
    Ok(Event {
        seq: unsigned(row, 0)?,
        event_type: text_enum(row, 1)?,
        at: timestamp(row, 2)?,
        environment: optional_environment(row, 3)?,
        data: json_column(row, 4)?,
    })
}

const OUTBOX_COLUMNS: &str = "id, kind, target, event_seq, rollback_id, attempts, \
     next_attempt_at, done_at, failed_at, last_error, github_request_id";

fn outbox_from_row(row: &Row) -> Result<OutboxEntry, StoreError> {
    let kind: String = row.get(1)?;
    let kind = OutboxKind::parse(&kind)
        .ok_or_else(|| corrupt(1, format!("unknown outbox kind `{kind}`")))?;
    Ok(OutboxEntry {
        id: unsigned(row, 0)?,
        kind,
        target: row.get(2)?,
        event_seq: row
            .get::<Option<i64>>(3)?
            .map(|v| u64::try_from(v).unwrap_or_default()),
        rollback_id: row.get(4)?,
        attempts: small(row, 5)?,
        next_attempt_at: optional_timestamp(row, 6)?,
        done_at: optional_timestamp(row, 7)?,
        failed_at: optional_timestamp(row, 8)?,
        last_error: row.get(9)?,
        github_request_id: row.get(10)?,
    })
}

impl EventTx for SqlTx<'_> {
    fn append_event(
        &mut self,
        event_type: EventType,
        at: Timestamp,
        environment: Option<Environment>,
        data: &serde_json::Value,
    ) -> Result<Event, StoreError> {
        // Events take the chain's lock too, so their seqs are in commit order across
        // replicas: a reader that has seen seq N never later finds a smaller one appear.
        self.chain_head()?;
        let seq: i64 = self
            .one(
                "SELECT coalesce(max(seq), 0) + 1 FROM events",
                vals![],
                |r| r.get(0),
            )?
            .unwrap_or(1);
        self.execute(
            "INSERT INTO events (seq, type, at, environment, data) VALUES ($1, $2, $3, $4, $5)",
            vals![
                seq,
                event_type.as_str(),
                at.unix_millis(),
                environment.as_ref().map(Environment::as_str),
                data.to_string(),
            ],
        )?;
        Ok(Event {
            seq: u64::try_from(seq).unwrap_or_default(),
            event_type,
            at,
            environment,
            data: data.clone(),
        })
    }

    fn events_after(&mut self, after: u64, limit: u32) -> Result<Vec<Event>, StoreError> {
        self.collect(
            "SELECT seq, type, at, environment, data FROM events WHERE seq > $1
             ORDER BY seq LIMIT $2",
            vals![signed(after), limit],
            event_from_row,
        )
    }

    fn get_event(&mut self, seq: u64) -> Result<Option<Event>, StoreError> {
        self.one(
            "SELECT seq, type, at, environment, data FROM events WHERE seq = $1",
            [signed(seq)],
            event_from_row,
        )
    }

    fn last_event_seq(&mut self) -> Result<u64, StoreError> {
        self.count("SELECT coalesce(max(seq), 0) FROM events", vals![])
    }

    fn enqueue(
        &mut self,
        kind: OutboxKind,
        target: &str,
        event_seq: Option<u64>,
        rollback_id: Option<&str>,
        at: Timestamp,
    ) -> Result<u64, StoreError> {
        let id: i64 = self
            .one(
                "INSERT INTO outbox (kind, target, event_seq, rollback_id, next_attempt_at)
                 VALUES ($1, $2, $3, $4, $5) RETURNING id",
                vals![
                    kind.as_str(),
                    target,
                    event_seq.map(signed),
                    rollback_id,
                    at.unix_millis(),
                ],
                |row| row.get(0),
            )?
            .unwrap_or_default();
        Ok(u64::try_from(id).unwrap_or_default())
    }

    fn enqueue_github_callback(
        &mut self,
        target: &str,
        request_id: &str,
        at: Timestamp,
    ) -> Result<u64, StoreError> {
        let id: i64 = self
            .one(
                "INSERT INTO outbox (kind, target, github_request_id, next_attempt_at)
                 VALUES ($1, $2, $3, $4) RETURNING id",
                vals![
                    OutboxKind::GithubCallback.as_str(),
                    target,
                    request_id,
                    at.unix_millis(),
                ],
                |row| row.get(0),
            )?
            .unwrap_or_default();
        Ok(u64::try_from(id).unwrap_or_default())
    }

    fn claim_outbox(
        &mut self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let skip_claimed = match self.driver.dialect() {
            Dialect::Sqlite => "",
            Dialect::Postgres => "FOR UPDATE SKIP LOCKED",
        };
        let due = self.collect(
            &format!(
                "SELECT {OUTBOX_COLUMNS} FROM outbox
                 WHERE done_at IS NULL AND failed_at IS NULL AND next_attempt_at <= $1
                 ORDER BY next_attempt_at, id LIMIT $2 {skip_claimed}"
            ),
            vals![now.unix_millis(), limit],
            outbox_from_row,
        )?;
        for entry in &due {
            self.execute(
                "UPDATE outbox SET next_attempt_at = $2 WHERE id = $1",
                vals![signed(entry.id), lease_until.unix_millis()],
            )?;
        }
        Ok(due)
    }

    fn get_outbox(&mut self, id: u64) -> Result<Option<OutboxEntry>, StoreError> {
        self.one(
            &format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id = $1"),
            [signed(id)],
            outbox_from_row,
        )
    }

    fn put_outbox(&mut self, e: &OutboxEntry) -> Result<(), StoreError> {
        self.execute(
            "UPDATE outbox SET attempts = $2, next_attempt_at = $3, done_at = $4, failed_at = $5,
                    last_error = $6
             WHERE id = $1",
            vals![
                signed(e.id),
                e.attempts,
                e.next_attempt_at.map(Timestamp::unix_millis),
                e.done_at.map(Timestamp::unix_millis),
                e.failed_at.map(Timestamp::unix_millis),
                e.last_error,
            ],
        )?;
        Ok(())
    }

    fn outbox_for(
        &mut self,
        kind: OutboxKind,
        target: &str,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        self.collect(
            &format!(
                "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE kind = $1 AND target = $2 ORDER BY id"
            ),
            vals![kind.as_str(), target],
            outbox_from_row,
        )
    }
}
