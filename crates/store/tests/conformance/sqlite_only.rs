//! Behaviour specific to the SQLite backend.

use deploy_safety_store::{Store, StoreError};

use crate::{SqliteDatabase, TestDatabase};

#[tokio::test]
async fn read_only_open_never_creates_or_writes() {
    let db = SqliteDatabase::new().unwrap();
    let missing = Store::open_read_only(&db.url());
    assert!(matches!(missing, Err(StoreError::Config(_))), "{missing:?}");
    assert!(
        !db.path().exists(),
        "a read-only open must not create the file"
    );

    drop(db.open());
    let store = Store::open_read_only(&db.url()).unwrap();
    let state = store.read(|tx| tx.gate_state()).await.unwrap();
    assert_eq!(state.mode, deploy_safety_core::SecurityMode::Enforce);
    let refused = store.write(|tx| tx.count_tokens()).await;
    assert!(matches!(refused, Err(StoreError::Config(_))), "{refused:?}");
}

#[tokio::test]
async fn a_database_from_a_newer_version_is_refused() {
    let db = SqliteDatabase::new().unwrap();
    drop(db.open());
    let conn = rusqlite::Connection::open(db.path()).unwrap();
    conn.execute(
        "INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (999, 'future', 'x', 0)",
        [],
    )
    .unwrap();
    let refused = Store::open(&db.url());
    assert!(
        matches!(&refused, Err(StoreError::Config(m)) if m.contains("newer")),
        "{refused:?}"
    );
}

#[tokio::test]
async fn an_edited_migration_is_refused() {
    let db = SqliteDatabase::new().unwrap();
    drop(db.open());
    let conn = rusqlite::Connection::open(db.path()).unwrap();
    conn.execute(
        "UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1",
        [],
    )
    .unwrap();
    let refused = Store::open(&db.url());
    assert!(
        matches!(&refused, Err(StoreError::Config(m)) if m.contains("differs")),
        "{refused:?}"
    );
}

#[tokio::test]
async fn durability_settings_are_wal_and_full_sync() {
    let db = SqliteDatabase::new().unwrap();
    let store = db.open();
    store.write(|tx| tx.count_tokens()).await.unwrap();
    let conn = rusqlite::Connection::open(db.path()).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn urls() {
    use deploy_safety_store::sqlite::path_from_url;
    assert_eq!(
        path_from_url("sqlite://deploy-safety.db").unwrap(),
        std::path::Path::new("deploy-safety.db")
    );
    assert_eq!(
        path_from_url("sqlite:///var/lib/ds.db").unwrap(),
        std::path::Path::new("/var/lib/ds.db")
    );
    assert!(path_from_url("postgres://x").is_none());
    assert!(matches!(
        Store::open("mysql://x"),
        Err(StoreError::Config(_))
    ));
    assert!(matches!(
        Store::open("sqlite://"),
        Err(StoreError::Config(_))
    ));
}

#[tokio::test]
async fn offline_reading_of_a_closed_database_creates_no_files() {
    let db = SqliteDatabase::new().unwrap();
    let store = db.open();
    store.write(|tx| tx.count_tokens()).await.unwrap();
    drop(store);
    let sidecar = |suffix: &str| {
        let mut name = db.path().into_os_string();
        name.push(suffix);
        std::path::PathBuf::from(name)
    };
    // The writer thread closes the last connection, which checkpoints and removes the WAL.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while sidecar("-wal").exists() || sidecar("-shm").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the database was never closed"
        );
        std::thread::yield_now();
    }
    let before = std::fs::read(db.path()).unwrap();
    let store = Store::open_read_only(&db.url()).unwrap();
    assert_eq!(store.read(|tx| tx.count_tokens()).await.unwrap(), 0);
    drop(store);
    assert!(!sidecar("-wal").exists() && !sidecar("-shm").exists());
    assert_eq!(
        std::fs::read(db.path()).unwrap(),
        before,
        "not a byte changed"
    );
}

#[tokio::test]
async fn new_databases_are_private_to_their_owner() {
    use std::os::unix::fs::PermissionsExt;
    let db = SqliteDatabase::new().unwrap();
    drop(db.open());
    let mode = std::fs::metadata(db.path()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn in_memory_databases_are_refused() {
    for url in [
        "sqlite::memory:",
        "sqlite://:memory:",
        "sqlite:file::memory:?cache=shared",
    ] {
        assert!(
            matches!(Store::open(url), Err(StoreError::Config(_))),
            "{url}"
        );
    }
}

/// When the COMMIT itself fails, every write of the batch is told so, nothing of it remains,
/// and the next batch chains on correctly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_fails_every_write_of_its_batch() {
    use deploy_safety_core::{AuditDecision, AuditDraft, Timestamp};
    let db = SqliteDatabase::new().unwrap();
    let store = db.open();
    // A deferred foreign key is checked only at COMMIT: the heartbeat trigger inserts a
    // dangling row, so any batch that touches the heartbeat fails to commit.
    let conn = rusqlite::Connection::open(db.path()).unwrap();
    conn.execute_batch(
        "CREATE TABLE dangling (v TEXT REFERENCES validations (id) DEFERRABLE INITIALLY DEFERRED);
         CREATE TRIGGER break_commit AFTER UPDATE ON heartbeat
         BEGIN INSERT INTO dangling (v) VALUES ('missing'); END;",
    )
    .unwrap();
    drop(conn);
    let draft = |n: u64| AuditDraft {
        principal: "p".into(),
        role: None,
        action: "x".into(),
        environment: None,
        decision: AuditDecision::Recorded,
        reason: "RECORDED".into(),
        details: serde_json::json!({ "n": n }),
    };
    let t = Timestamp::from_unix_millis(1);
    let outcome = store
        .write(move |tx| {
            tx.append_audit(draft(1), t)?;
            tx.touch_heartbeat(t)
        })
        .await;
    assert!(
        matches!(outcome, Err(StoreError::Database(_))),
        "{outcome:?}"
    );
    assert_eq!(store.read(|tx| tx.audit_head()).await.unwrap(), None);
    let next = store
        .write(move |tx| tx.append_audit(draft(2), t))
        .await
        .unwrap();
    assert_eq!(next.seq, 1, "nothing of the failed batch remains");
}
