//! The checkpoint writer (SPEC §20) driven by `tick(now)` on a manual clock: a checkpoint every
//! interval whether or not entries were appended, signed over the chain's head, stored,
//! appended to the checkpoint file, announced to webhooks; never two for one interval, even
//! from two writers on one database.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use deploy_safety_api_types::CheckRequest;
use deploy_safety_app::{App, AppSettings, CheckpointSettings, Clock, ManualClock, Webhook};
use deploy_safety_core::{
    Action, CheckpointKey, Environment, EventType, GENESIS_HASH, Role, SignedCheckpoint, Timestamp,
};
use deploy_safety_engine::CheckpointWriter;
use deploy_safety_store::{OutboxKind, Store};

/// 2026-12-01T00:00:00Z.
const START: Timestamp = Timestamp::from_unix_millis(1_764_547_200_000);

struct World {
    dir: tempfile::TempDir,
    app: App,
    clock: Arc<ManualClock>,
    writer: CheckpointWriter,
    key: CheckpointKey,
}

fn settings(key: &CheckpointKey, file: std::path::PathBuf) -> AppSettings {
    AppSettings {
        checkpoints: Some(CheckpointSettings {
            key: key.clone(),
            interval: Duration::from_secs(60),
            file: Some(file),
        }),
        webhooks: vec![Webhook {
            name: "siem".to_owned(),
            url: "http://127.0.0.1:9/never-called".to_owned(),
            secret: "a-secret-of-sixteen-chars".to_owned(),
            events: Some(vec![EventType::AuditCheckpoint]),
            timeout: Duration::from_secs(1),
        }],
        ..AppSettings::default()
    }
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
        let store = Store::open(&url).unwrap();
        let clock = Arc::new(ManualClock::new(START));
        let key = CheckpointKey::from_secret(&[9; 32]);
        let app = App::new(
            store,
            clock.clone(),
            settings(&key, dir.path().join("checkpoints.jsonl")),
        );
        World {
            writer: CheckpointWriter::new(app.clone()),
            dir,
            app,
            clock,
            key,
        }
    }

    fn file_lines(&self) -> Vec<SignedCheckpoint> {
        std::fs::read_to_string(self.dir.path().join("checkpoints.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    async fn append_an_entry(&self) {
        let issued = self
            .app
            .create_token(
                &format!("ci-{}", self.clock.now().unix_millis()),
                Role::Developer,
                "test",
            )
            .await
            .unwrap();
        let caller = self.app.authenticate(&issued.token).await.unwrap();
        self.app
            .check(
                &caller,
                CheckRequest {
                    service: None,
                    action: Action::CanaryStart,
                    environment: Environment::STAGING,
                    release_id: None,
                },
            )
            .await
            .unwrap();
    }

    async fn head(&self) -> (u64, String) {
        self.app
            .store()
            .read(|tx| tx.audit_chain_head())
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn a_checkpoint_every_interval_also_without_new_entries() {
    let w = World::new();
    // An empty log is checkpointed too: entry 0, the genesis hash.
    let first = w.writer.tick(w.clock.now()).await.unwrap().unwrap();
    assert_eq!((first.seq, first.head_hash.as_str()), (0, GENESIS_HASH));
    assert_eq!(first.at, START);

    // Not due again within the interval.
    w.append_an_entry().await;
    w.clock.advance_millis(59_999);
    assert_eq!(w.writer.tick(w.clock.now()).await.unwrap(), None);

    // Due at the interval: it signs the head as it is now.
    w.clock.advance_millis(1);
    let second = w.writer.tick(w.clock.now()).await.unwrap().unwrap();
    let (seq, hash) = w.head().await;
    assert_eq!((second.seq, &second.head_hash), (seq, &hash));
    assert!(seq >= 2, "a token creation and a check were appended");

    // A heartbeat: nothing appended, a new checkpoint of the same head, a minute later.
    w.clock.advance_millis(60_000);
    let heartbeat = w.writer.tick(w.clock.now()).await.unwrap().unwrap();
    assert_eq!((heartbeat.seq, &heartbeat.head_hash), (seq, &hash));
    assert_eq!(heartbeat.at, START.plus_millis(120_000));
    assert_ne!(heartbeat.signature, second.signature);

    // After a pause longer than the interval: one checkpoint, not one per missed interval.
    w.clock.advance_millis(10 * 60_000);
    assert!(w.writer.tick(w.clock.now()).await.unwrap().is_some());
    assert_eq!(w.writer.tick(w.clock.now()).await.unwrap(), None);

    // Each is stored, signed by the key, in the file, and announced to the webhook.
    let latest = w.app.latest_checkpoint().await.unwrap();
    assert_eq!(latest.at, START.plus_millis(720_000));
    let lines = w.file_lines();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[1], SignedCheckpoint::from(&second));
    for line in &lines {
        assert_eq!(line.verify(&[w.key.verifying_key()]), Ok(()));
        assert_eq!(line.key_id, w.key.key_id());
    }
    let events = w.app.events_after(0, 100).await.unwrap();
    let announced: Vec<u64> = events
        .iter()
        .filter(|e| e.event_type == EventType::AuditCheckpoint)
        .map(|e| e.data["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(announced, [0, seq, seq, seq]);
    let checkpoint_event = events
        .iter()
        .find(|e| e.event_type == EventType::AuditCheckpoint && e.data["seq"] == seq)
        .unwrap();
    assert_eq!(
        serde_json::from_value::<SignedCheckpoint>(checkpoint_event.data.clone()).unwrap(),
        SignedCheckpoint::from(&second),
        "the event carries the checkpoint exactly as signed"
    );
    let deliveries = w.app.deliveries(OutboxKind::Webhook, "siem").await.unwrap();
    assert_eq!(deliveries.len(), 4);
}

#[tokio::test]
async fn checkpoints_are_not_audit_entries() {
    let w = World::new();
    w.append_an_entry().await;
    let before = w.head().await;
    for _ in 0..3 {
        w.writer.tick(w.clock.now()).await.unwrap().unwrap();
        w.clock.advance_millis(60_000);
    }
    assert_eq!(w.head().await, before);
}

#[tokio::test]
async fn two_writers_on_one_database_make_one_checkpoint_per_interval() {
    let w = World::new();
    // A second application on the same database, as a second replica overlapping the leader
    // during a change of leader would be.
    let url = format!("sqlite://{}", w.dir.path().join("db.sqlite").display());
    let other = App::new(
        Store::open(&url).unwrap(),
        w.clock.clone(),
        settings(&w.key, w.dir.path().join("other.jsonl")),
    );
    let other = CheckpointWriter::new(other);
    for _ in 0..5 {
        let now = w.clock.now();
        let (a, b) = tokio::join!(w.writer.tick(now), other.tick(now));
        let made = [a.unwrap(), b.unwrap()];
        assert_eq!(made.iter().flatten().count(), 1, "{made:?}");
        w.clock.advance_millis(60_000);
    }
}

#[tokio::test]
async fn a_writer_without_a_key_makes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("db").display())).unwrap();
    let app = App::new(
        store,
        Arc::new(ManualClock::new(START)),
        AppSettings::default(),
    );
    assert_eq!(
        CheckpointWriter::new(app.clone())
            .tick(START)
            .await
            .unwrap(),
        None
    );
    assert!(app.audit_public_key().is_err());
}

/// The running leader notices when the log no longer holds what its last checkpoint signed —
/// even with the stored checkpoints deleted and the head record set back — and says so
/// (event `audit.chain_broken`, an error in the log), while it goes on signing what is there.
#[tokio::test]
async fn a_log_cut_behind_the_servers_back_is_announced_at_the_next_checkpoint() {
    let w = World::new();
    for _ in 0..3 {
        w.append_an_entry().await;
    }
    let before = w.writer.tick(w.clock.now()).await.unwrap().unwrap();
    assert!(before.seq >= 6);
    let conn = rusqlite::Connection::open(w.dir.path().join("db.sqlite")).unwrap();
    conn.execute_batch(&format!(
        "DELETE FROM audit_log WHERE seq > {keep};
         UPDATE audit_head SET seq = {keep}, hash = (SELECT hash FROM audit_log WHERE seq = {keep});
         DELETE FROM audit_checkpoints;",
        keep = before.seq - 2
    ))
    .unwrap();
    w.clock.advance_millis(60_000);
    let after = w.writer.tick(w.clock.now()).await.unwrap().unwrap();
    assert_eq!(after.seq, before.seq - 2, "it signs what the log holds");
    let events = w.app.events_after(0, 100).await.unwrap();
    let broken: Vec<_> = events
        .iter()
        .filter(|e| e.event_type == EventType::AuditChainBroken)
        .collect();
    assert_eq!(broken.len(), 1, "{events:?}");
    let problem = broken[0].data["problem"].as_str().unwrap();
    assert!(problem.contains("truncated"), "{problem}");
    assert_eq!(broken[0].data["previous"]["seq"], before.seq);

    // Nothing is wrong from then on: no more announcements.
    w.clock.advance_millis(60_000);
    w.writer.tick(w.clock.now()).await.unwrap().unwrap();
    let events = w.app.events_after(0, 100).await.unwrap();
    assert_eq!(
        events
            .iter()
            .filter(|e| e.event_type == EventType::AuditChainBroken)
            .count(),
        1
    );
}

/// An altered checkpoint row (one that no longer reads, or dated in the future) neither stops
/// the checkpoints nor makes them fail: the next one is made, and an unreadable one is
/// announced as `audit.chain_broken`.
#[tokio::test]
async fn altered_checkpoint_rows_do_not_stop_the_checkpoints() {
    let w = World::new();
    w.writer.tick(w.clock.now()).await.unwrap().unwrap();
    let conn = rusqlite::Connection::open(w.dir.path().join("db.sqlite")).unwrap();

    // Dated in the year 9999: waiting for it would stop checkpoints for good.
    conn.execute_batch("UPDATE audit_checkpoints SET at = 253402300799000;")
        .unwrap();
    w.clock.advance_millis(60_000);
    assert!(w.writer.tick(w.clock.now()).await.unwrap().is_some());

    // No longer readable: verification says so (no error), and the writer goes on.
    conn.execute_batch(
        "UPDATE audit_checkpoints SET seq = -1 WHERE id = (SELECT max(id) FROM audit_checkpoints);",
    )
    .unwrap();
    let verification = w.app.verify_audit().await.unwrap();
    assert!(!verification.valid);
    assert!(
        verification
            .first_broken
            .unwrap()
            .problem
            .contains("cannot be read")
    );
    assert!(w.app.latest_checkpoint().await.is_err());
    w.clock.advance_millis(1);
    let made = w.writer.tick(w.clock.now()).await.unwrap();
    assert!(
        made.is_some(),
        "an unreadable latest checkpoint is no reason to wait"
    );
    let events = w.app.events_after(0, 100).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.event_type == EventType::AuditChainBroken
                && e.data["problem"]
                    .as_str()
                    .unwrap()
                    .contains("cannot be read")),
        "{events:?}"
    );
    assert_eq!(w.app.latest_checkpoint().await.unwrap(), made.unwrap());
    assert!(w.app.verify_audit().await.unwrap().valid);
}
