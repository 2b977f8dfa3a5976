//! What the writer keeps of the gate's inputs between batches (SPEC §22).
//!
//! A decision reads the gate's state, the overrides and freezes that may apply, the open
//! incidents and the caller's token. They change rarely and are read by nearly every write, so
//! the writer keeps what it read, but only while the database says nothing changed: every change
//! to those tables increments `audit_head.state_version` in its own transaction, by trigger,
//! whoever makes it (migrations `0011`/`0012_state_version`). Each batch reads the version with
//! the chain's head, under the write lock, before any job runs; a different version empties the
//! cache. So what a job reads from the cache is what the database holds at that moment: the
//! cache is never stale, and a change made by another replica or by the CLI is seen by the next
//! batch, as without it.
//!
//! Inside a batch, a job that writes anything that might be an input (any statement but those
//! named as leaving the inputs alone), or that fails, turns the cache off until the batch ends,
//! so no job reads a cached value that an earlier job of the batch changed or rolled back.
//!
//! Overrides and freezes are read for a time (`expires_at > now`, `over_at > now`); time only
//! removes rows from those answers, so an answer read at `t` serves any later `now` once those
//! columns are checked again, and a `now` before `t` (a clock set back) reads the database.

use std::collections::HashMap;

use deploy_safety_core::{Environment, Freeze, GateState, OpenIncident, Override, Timestamp};

use crate::TokenRecord;

/// Keys beyond this many in one map empty it: callers choose services and token ids.
const MAX_KEYS: usize = 4_096;

/// The answer to a time-bounded read, and when it was read.
#[derive(Clone)]
pub(crate) struct Snapshot<T> {
    pub(crate) read_at: Timestamp,
    pub(crate) rows: Vec<T>,
}

/// A freeze and the time it is over (ended by hand or past its end), as the query filtered.
pub(crate) type FreezeRow = (Option<i64>, Freeze);

#[derive(Default)]
pub(crate) struct GateCache {
    /// The version the contents belong to; `None` until a batch read one.
    version: Option<i64>,
    /// Whether this transaction may use the cache (a writer's batch, nothing written yet).
    enabled: bool,
    gate_state: Option<GateState>,
    overrides: HashMap<(&'static str, Environment), Snapshot<Override>>,
    open_incidents: Option<Vec<OpenIncident>>,
    freezes: HashMap<(&'static str, Environment, String), Snapshot<FreezeRow>>,
    tokens: HashMap<String, Option<TokenRecord>>,
}

impl GateCache {
    /// A cache that is never used (reads outside the writer, offline tools).
    pub(crate) fn off() -> Self {
        GateCache::default()
    }

    /// A batch begins and the database's inputs are at `version`.
    pub(crate) fn begin_batch(&mut self, version: i64) {
        if self.version != Some(version) {
            self.clear();
            self.version = Some(version);
        }
        self.enabled = true;
    }

    /// Something this batch did may have changed an input, or was rolled back: read the
    /// database until the batch ends, and start again from the next batch's version.
    pub(crate) fn turn_off(&mut self) {
        self.enabled = false;
        self.clear();
        self.version = None;
    }

    /// The batch ended (committed or not).
    pub(crate) fn end_batch(&mut self) {
        self.enabled = false;
    }

    fn clear(&mut self) {
        self.gate_state = None;
        self.overrides.clear();
        self.open_incidents = None;
        self.freezes.clear();
        self.tokens.clear();
    }

    pub(crate) fn gate_state(&self) -> Option<&GateState> {
        self.enabled.then_some(self.gate_state.as_ref()).flatten()
    }

    pub(crate) fn put_gate_state(&mut self, state: &GateState) {
        if self.enabled {
            self.gate_state = Some(state.clone());
        }
    }

    pub(crate) fn open_incidents(&self) -> Option<&[OpenIncident]> {
        self.enabled
            .then_some(self.open_incidents.as_deref())
            .flatten()
    }

    pub(crate) fn put_open_incidents(&mut self, incidents: &[OpenIncident]) {
        if self.enabled {
            self.open_incidents = Some(incidents.to_vec());
        }
    }

    pub(crate) fn token(&self, id: &str) -> Option<&Option<TokenRecord>> {
        self.enabled.then(|| self.tokens.get(id)).flatten()
    }

    pub(crate) fn put_token(&mut self, id: &str, record: &Option<TokenRecord>) {
        if self.enabled {
            bounded_insert(&mut self.tokens, id.to_owned(), record.clone());
        }
    }

    /// The unexpired, unrevoked overrides for (action, environment) at `now`, if known.
    pub(crate) fn overrides(
        &self,
        action: &'static str,
        environment: Environment,
        now: Timestamp,
    ) -> Option<Vec<Override>> {
        let snapshot = self
            .enabled
            .then(|| self.overrides.get(&(action, environment)))??;
        (snapshot.read_at <= now).then(|| {
            snapshot
                .rows
                .iter()
                .filter(|o| o.expires_at > now)
                .cloned()
                .collect()
        })
    }

    pub(crate) fn put_overrides(
        &mut self,
        action: &'static str,
        environment: Environment,
        now: Timestamp,
        rows: &[Override],
    ) {
        if self.enabled {
            let snapshot = Snapshot {
                read_at: now,
                rows: rows.to_vec(),
            };
            bounded_insert(&mut self.overrides, (action, environment), snapshot);
        }
    }

    /// The freezes not over at `now` whose scope covers (action, environment, service), if
    /// known.
    pub(crate) fn freezes(
        &self,
        action: &'static str,
        environment: Environment,
        service: &str,
        now: Timestamp,
    ) -> Option<Vec<Freeze>> {
        let key = (action, environment, service.to_owned());
        let snapshot = self.enabled.then(|| self.freezes.get(&key))??;
        (snapshot.read_at <= now).then(|| {
            snapshot
                .rows
                .iter()
                .filter(|(over_at, _)| over_at.is_none_or(|at| at > now.unix_millis()))
                .map(|(_, freeze)| freeze.clone())
                .collect()
        })
    }

    pub(crate) fn put_freezes(
        &mut self,
        action: &'static str,
        environment: Environment,
        service: &str,
        now: Timestamp,
        rows: &[FreezeRow],
    ) {
        if self.enabled {
            let snapshot = Snapshot {
                read_at: now,
                rows: rows.to_vec(),
            };
            let key = (action, environment, service.to_owned());
            bounded_insert(&mut self.freezes, key, snapshot);
        }
    }
}

fn bounded_insert<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>, key: K, value: V) {
    if map.len() >= MAX_KEYS && !map.contains_key(&key) {
        map.clear();
    }
    map.insert(key, value);
}
