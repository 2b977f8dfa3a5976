//! A property of the stored log (SPEC §20): for random chains written through the store and a
//! random single-byte change anywhere in any stored column of any entry — made in the SQLite
//! file by another connection, as someone with the file would — verification names exactly the
//! edited entry; deleting any entry names the one after it (the last: the first one missing).
//!
//! The reference is independent of the verifier: which entry was edited is known by
//! construction.

#![allow(clippy::unwrap_used)]

use deploy_safety_app::verify_chain;
use deploy_safety_core::{AuditDecision, AuditDraft, Environment, Role, STORED_COLUMNS, Timestamp};
use deploy_safety_store::Store;
use proptest::prelude::*;
use serde_json::json;

/// A chain of `len` entries with varied columns (some without role or environment).
fn write_chain(dir: &tempfile::TempDir, len: u64, seed: u64) -> String {
    let url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
    let store = Store::open(&url).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        store
            .write(move |tx| {
                for n in 1..=len {
                    let k = n + seed;
                    tx.append_audit(
                        AuditDraft {
                            principal: format!("principal-{}", k % 5),
                            role: (!k.is_multiple_of(3)).then_some(Role::EngLead),
                            action: if k.is_multiple_of(2) {
                                "security-gate.check"
                            } else {
                                "override.create"
                            }
                            .to_owned(),
                            environment: (!k.is_multiple_of(4)).then_some(Environment::PRODUCTION),
                            decision: if k.is_multiple_of(2) {
                                AuditDecision::Allowed
                            } else {
                                AuditDecision::Denied
                            },
                            reason: "OVERRIDE_REQUIRED".to_owned(),
                            details: json!({"n": k, "text": "x".repeat((k % 7) as usize)}),
                        },
                        Timestamp::from_unix_millis(1_764_547_200_000 + (k as i64) * 1_000),
                    )?;
                }
                Ok(())
            })
            .await
            .unwrap();
    });
    url
}

fn verify(url: &str) -> Option<u64> {
    let store = Store::open_read_only(url).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let verification = runtime.block_on(store.read(verify_chain)).unwrap();
    verification.first_broken.map(|b| b.seq)
}

fn connection(dir: &tempfile::TempDir) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.path().join("db.sqlite")).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn a_single_byte_change_in_any_stored_column_names_its_entry(
        len in 1u64..8,
        seed in any::<u64>(),
        pick in any::<prop::sample::Index>(),
        column in 0usize..STORED_COLUMNS.len(),
        position in any::<usize>(),
        byte in any::<u8>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let url = write_chain(&dir, len, seed % 1_000);
        prop_assert_eq!(verify(&url), None, "the chain verifies before the edit");
        let target = pick.index(len as usize) as i64 + 1;
        let name = STORED_COLUMNS[column];
        let conn = connection(&dir);
        // The column's stored bytes (an integer by its digits, NULL as no bytes).
        let stored: Option<Vec<u8>> = conn
            .query_row(&format!("SELECT CAST({name} AS BLOB) FROM audit_log WHERE seq = ?1"), [target], |r| r.get(0))
            .unwrap();
        let mut bytes = stored.clone().unwrap_or_default();
        if bytes.is_empty() {
            bytes.push(byte);
        } else {
            let i = position % bytes.len();
            bytes[i] = if bytes[i] == byte { byte.wrapping_add(1) } else { byte };
        }
        if name == "at" {
            // An integer column: a change that leaves digits stays an integer; anything else
            // needs the table without STRICT, as someone rewriting the file could make it.
            match std::str::from_utf8(&bytes).ok().and_then(|t| t.parse::<i64>().ok()) {
                Some(number) => {
                    conn.execute("UPDATE audit_log SET at = ?1 WHERE seq = ?2", rusqlite::params![number, target]).unwrap();
                }
                None => {
                    let version: i64 = conn.query_row("PRAGMA schema_version", [], |r| r.get(0)).unwrap();
                    conn.execute_batch(&format!(
                        "PRAGMA writable_schema = ON;
                         UPDATE sqlite_schema SET sql = replace(sql, ') STRICT', ')') WHERE name = 'audit_log';
                         PRAGMA writable_schema = OFF; PRAGMA schema_version = {};",
                        version + 1
                    )).unwrap();
                    drop(conn);
                    connection(&dir)
                        .execute("UPDATE audit_log SET at = CAST(?1 AS TEXT) WHERE seq = ?2", rusqlite::params![bytes, target])
                        .unwrap();
                }
            }
        } else {
            conn.execute(
                &format!("UPDATE audit_log SET {name} = CAST(?1 AS TEXT) WHERE seq = ?2"),
                rusqlite::params![bytes, target],
            )
            .unwrap();
        }
        prop_assert_eq!(verify(&url), Some(target as u64), "{} of entry {}", name, target);
    }

    #[test]
    fn a_deleted_entry_names_the_one_after_it(len in 1u64..8, pick in any::<prop::sample::Index>()) {
        let dir = tempfile::tempdir().unwrap();
        let url = write_chain(&dir, len, 0);
        let target = pick.index(len as usize) as u64 + 1;
        connection(&dir).execute("DELETE FROM audit_log WHERE seq = ?1", [target as i64]).unwrap();
        let expected = if target == len { len } else { target + 1 };
        prop_assert_eq!(verify(&url), Some(expected));
    }
}
