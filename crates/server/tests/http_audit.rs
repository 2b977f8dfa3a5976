//! The audit log over HTTP (SPEC §12): filters, paging, the hash chain and its verification,
//! and concurrent decisions that each get their own entry.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;

use axum::http::{Method, StatusCode};
use common::{API, Harness, at_minutes, override_body, send};
use deploy_safety_app::Clock;
use serde_json::{Value, json};

const CANARY: &str = "deploy.canary.start";

fn seqs(entries: &[Value]) -> Vec<u64> {
    entries.iter().map(|e| e["seq"].as_u64().unwrap()).collect()
}

/// A log with entries at START (token creation), +10, +20 and +30 minutes.
async fn populated() -> Harness {
    let h = Harness::new().await;
    h.clock.advance_minutes(10);
    h.check(&h.tokens.developer, CANARY, "staging", None).await; // allowed, staging
    h.check(&h.tokens.developer, CANARY, "production", None)
        .await; // denied, production
    h.clock.advance_minutes(10);
    h.create_override(&h.tokens.eng_lead, override_body(CANARY, "production", 60))
        .await; // override.create, allowed, production
    let (status, _) = h
        .post(
            "/security-gate/mode",
            &h.tokens.developer,
            json!({"mode": "monitor"}),
        )
        .await; // denied
    assert_eq!(status, StatusCode::FORBIDDEN);
    h.clock.advance_minutes(10);
    h.check(&h.tokens.eng_lead, CANARY, "production", None)
        .await; // allowed by override
    h
}

#[tokio::test]
async fn audit_lists_newest_first_and_every_role_may_read_it() {
    let h = populated().await;
    let all = h.audit("limit=1000").await;
    assert_eq!(all.len(), 5 + 5, "5 token creations and 5 requests");
    let listed = seqs(&all);
    let expected: Vec<u64> = (1..=10).rev().collect();
    assert_eq!(listed, expected, "newest first, no gaps");
    let newest = &all[0];
    assert_eq!(newest["action"], "security-gate.check");
    assert_eq!(newest["principal"], "eng-lead");
    assert_eq!(newest["role"], "eng-lead");
    assert_eq!(newest["environment"], "production");
    assert_eq!(newest["decision"], "allowed");
    assert_eq!(newest["reason"], "OVERRIDE");
    assert_eq!(newest["at"], at_minutes(30));
    assert!(newest["details"]["overrideId"].is_string());
    let oldest = &all[9];
    assert_eq!(oldest["action"], "token.create");
    assert_eq!(oldest["principal"], "test");
    assert_eq!(oldest["decision"], "recorded");
    assert_eq!(oldest["details"]["name"], "security-team");
    assert!(
        !oldest["details"].to_string().contains("ds_"),
        "the token itself is never logged"
    );

    for token in [
        &h.tokens.security,
        &h.tokens.eng_lead,
        &h.tokens.oncall,
        &h.tokens.developer,
    ] {
        let (status, body) = h.get("/audit?limit=1", token).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["entries"][0]["seq"], 10);
    }
}

#[tokio::test]
async fn audit_filters_by_action_environment_principal_and_decision() {
    let h = populated().await;

    let checks = h.audit("action=security-gate.check").await;
    assert_eq!(seqs(&checks), [10, 7, 6]);
    assert!(checks.iter().all(|e| e["action"] == "security-gate.check"));

    let production = h.audit("environment=production").await;
    assert_eq!(seqs(&production), [10, 8, 7]);
    assert!(production.iter().all(|e| e["environment"] == "production"));

    let developer = h.audit("principal=developer").await;
    assert_eq!(seqs(&developer), [9, 7, 6]);
    assert!(developer.iter().all(|e| e["principal"] == "developer"));

    let denied = h.audit("decision=denied").await;
    assert_eq!(seqs(&denied), [9, 7]);
    assert_eq!(denied[0]["action"], "security-gate.mode.set");
    assert_eq!(denied[0]["reason"], "ROLE_NOT_PERMITTED");
    assert_eq!(denied[1]["reason"], "OVERRIDE_REQUIRED");

    let recorded = h.audit("decision=recorded").await;
    assert_eq!(recorded.len(), 5);

    let combined = h
        .audit("action=security-gate.check&environment=production&decision=allowed")
        .await;
    assert_eq!(seqs(&combined), [10]);
    assert!(h.audit("principal=nobody").await.is_empty());
    assert!(h.audit("action=override.revoke").await.is_empty());
}

#[tokio::test]
async fn audit_filters_by_time_since_inclusive_until_exclusive() {
    let h = populated().await;
    let between = h
        .audit(&format!(
            "since={}&until={}",
            at_minutes(10),
            at_minutes(20)
        ))
        .await;
    assert_eq!(seqs(&between), [7, 6]);
    assert!(between.iter().all(|e| e["at"] == at_minutes(10)));

    let since = h.audit(&format!("since={}", at_minutes(20))).await;
    assert_eq!(seqs(&since), [10, 9, 8]);

    let until = h.audit(&format!("until={}", at_minutes(10))).await;
    assert_eq!(seqs(&until), [5, 4, 3, 2, 1]);

    // Any RFC 3339 offset names the same instant: 01:10+01:00 is 00:10Z.
    let offset = h
        .audit("since=2026-01-01T01:10:00%2B01:00&until=2026-01-01T00:20:00Z")
        .await;
    assert_eq!(seqs(&offset), [7, 6]);

    let none = h.audit(&format!("since={}", at_minutes(31))).await;
    assert!(none.is_empty());
}

#[tokio::test]
async fn audit_pages_with_a_cursor_without_gaps_or_repeats() {
    let h = populated().await;
    let mut collected = Vec::new();
    let mut cursor: Option<u64> = None;
    let mut pages = 0;
    loop {
        let query = match cursor {
            Some(c) => format!("/audit?limit=3&cursor={c}"),
            None => "/audit?limit=3".to_owned(),
        };
        let (status, page) = h.get(&query, &h.tokens.developer).await;
        assert_eq!(status, StatusCode::OK);
        let entries = page["entries"].as_array().unwrap();
        assert!(entries.len() <= 3);
        collected.extend(seqs(entries));
        pages += 1;
        assert!(pages <= 5, "paging must end");
        match page["nextCursor"].as_u64() {
            Some(next) => {
                assert_eq!(Some(next), entries.last().and_then(|e| e["seq"].as_u64()));
                cursor = Some(next);
            }
            None => {
                assert_eq!(page["nextCursor"], Value::Null);
                break;
            }
        }
    }
    let expected: Vec<u64> = (1..=10).rev().collect();
    assert_eq!(collected, expected);

    // Paging combines with filters.
    let (_, first) = h
        .get("/audit?principal=developer&limit=2", &h.tokens.developer)
        .await;
    assert_eq!(seqs(first["entries"].as_array().unwrap()), [9, 7]);
    let next = first["nextCursor"].as_u64().unwrap();
    let (_, second) = h
        .get(
            &format!("/audit?principal=developer&limit=2&cursor={next}"),
            &h.tokens.developer,
        )
        .await;
    assert_eq!(seqs(second["entries"].as_array().unwrap()), [6]);
    assert_eq!(second["nextCursor"], Value::Null);

    // Default page size is 50.
    for _ in 0..50 {
        h.check(&h.tokens.developer, CANARY, "staging", None).await;
    }
    let (_, page) = h.get("/audit", &h.tokens.developer).await;
    assert_eq!(page["entries"].as_array().unwrap().len(), 50);
    assert_eq!(page["nextCursor"], 11);
}

#[tokio::test]
async fn audit_entries_form_a_hash_chain_that_verifies() {
    let h = populated().await;
    let all = h.audit("limit=1000").await;
    for pair in all.windows(2) {
        assert_eq!(
            pair[0]["prevHash"], pair[1]["hash"],
            "seq {}",
            pair[0]["seq"]
        );
    }
    assert_eq!(
        all.last().unwrap()["prevHash"],
        "0000000000000000000000000000000000000000000000000000000000000000"
    );

    let (status, verify) = h.get("/audit/verify", &h.tokens.developer).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(verify["valid"], true);
    assert_eq!(verify["entriesVerified"], 10);
    assert_eq!(verify["headHash"], all[0]["hash"]);
    assert_eq!(verify["firstBroken"], Value::Null);
}

#[tokio::test]
async fn audit_verify_names_the_first_tampered_entry() {
    let h = populated().await;
    h.db.exec("UPDATE audit_log SET reason = 'ALLOWED' WHERE seq = 7;");
    let (status, verify) = h.get("/audit/verify", &h.tokens.security).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(verify["valid"], false);
    assert_eq!(verify["firstBroken"]["seq"], 7);
    assert!(
        verify["firstBroken"]["problem"]
            .as_str()
            .is_some_and(|p| !p.is_empty())
    );
    assert_eq!(verify["entriesVerified"], 6);
}

#[tokio::test]
async fn audit_verify_names_the_entry_after_a_deleted_one() {
    let h = populated().await;
    h.db.exec("DELETE FROM audit_log WHERE seq = 4;");
    let (_, verify) = h.get("/audit/verify", &h.tokens.security).await;
    assert_eq!(verify["valid"], false);
    // SPEC §20: the first stored entry that fails is the one after the gap; the problem
    // names the entry that is missing.
    assert_eq!(verify["firstBroken"]["seq"], 5);
    assert!(
        verify["firstBroken"]["problem"]
            .as_str()
            .unwrap()
            .contains("entry 4 is missing"),
        "{verify}"
    );
}

#[tokio::test]
async fn audit_verify_catches_entries_cut_off_the_end() {
    let h = populated().await;
    h.db.exec("DELETE FROM audit_log WHERE seq >= 9;");
    let (status, verify) = h.get("/audit/verify", &h.tokens.security).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(verify["valid"], false);
    assert_eq!(verify["firstBroken"]["seq"], 9, "{verify}");
    assert_eq!(verify["entriesVerified"], 8);

    // Cut off and covered up (the head record set back too): the stored checkpoint that was
    // made before still names entry 10.
    let h = populated().await;
    h.app.make_checkpoint(h.clock.now()).await.unwrap().unwrap();
    h.db.exec(
        "DELETE FROM audit_log WHERE seq >= 9; \
         UPDATE audit_head SET seq = 8, hash = (SELECT hash FROM audit_log WHERE seq = 8);",
    );
    let (_, verify) = h.get("/audit/verify", &h.tokens.security).await;
    assert_eq!(verify["valid"], false);
    assert_eq!(verify["firstBroken"]["seq"], 9, "{verify}");
    assert!(
        verify["firstBroken"]["problem"]
            .as_str()
            .unwrap()
            .contains("truncated"),
        "{verify}"
    );
    assert_eq!(verify["latestCheckpoint"]["seq"], 10);
}

/// An entry whose `details` no longer parse: verification names it; listing shows it as
/// corrupt, with every stored column, and filters and paging work around it.
#[tokio::test]
async fn a_corrupt_entry_is_listed_as_corrupt_and_named_by_verify() {
    let h = populated().await;
    h.db.exec("UPDATE audit_log SET details = details || 'x' WHERE seq = 7;");

    let (status, verify) = h.get("/audit/verify", &h.tokens.developer).await;
    assert_eq!(status, StatusCode::OK, "never a 5xx: {verify}");
    assert_eq!(verify["valid"], false);
    assert_eq!(verify["firstBroken"]["seq"], 7);

    let all = h.audit("limit=1000").await;
    assert_eq!(seqs(&all), (1..=10).rev().collect::<Vec<u64>>());
    let corrupt = &all[3];
    assert_eq!(corrupt["seq"], 7);
    assert_eq!(corrupt["corrupt"], true);
    assert!(
        corrupt["problem"].as_str().unwrap().contains("details"),
        "{corrupt}"
    );
    assert_eq!(corrupt["raw"]["principal"], "developer");
    assert_eq!(corrupt["raw"]["reason"], "OVERRIDE_REQUIRED");
    assert!(corrupt["raw"]["details"].as_str().unwrap().ends_with("}x"));
    assert!(all.iter().filter(|e| e["corrupt"] == true).count() == 1);
    assert!(
        all[0].get("corrupt").is_none(),
        "intact entries are listed as before"
    );

    // Filters still select on the stored columns, the corrupt entry included.
    let developer = h.audit("principal=developer").await;
    assert_eq!(seqs(&developer), [9, 7, 6]);
    let (status, _) = h
        .get(
            &format!("/audit?since={}", at_minutes(10)),
            &h.tokens.developer,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // Paging passes over it.
    let (_, page) = h.get("/audit?limit=4", &h.tokens.developer).await;
    assert_eq!(page["nextCursor"], 7);
    let (_, next) = h.get("/audit?limit=4&cursor=7", &h.tokens.developer).await;
    assert_eq!(seqs(next["entries"].as_array().unwrap()), [6, 5, 4, 3]);
}

#[tokio::test]
async fn the_public_key_and_the_latest_checkpoint_are_served() {
    let h = populated().await;
    let (status, none) = h
        .get("/audit/checkpoints/latest", &h.tokens.developer)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{none}");

    let (status, key) = h.get("/audit/public-key", &h.tokens.developer).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(key["algorithm"], "Ed25519");
    let pem = key["publicKey"].as_str().unwrap();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
    let public = deploy_safety_core::checkpoint::public_key_from_pem(pem).unwrap();
    assert_eq!(key["keyId"], deploy_safety_core::key_id(&public));

    let made = h.app.make_checkpoint(h.clock.now()).await.unwrap().unwrap();
    let (status, latest) = h
        .get("/audit/checkpoints/latest", &h.tokens.developer)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(latest["seq"], 10);
    assert_eq!(latest["headHash"], h.audit("limit=1").await[0]["hash"]);
    assert_eq!(latest["at"], at_minutes(30));
    assert_eq!(latest["keyId"], key["keyId"]);
    assert_eq!(latest["signature"], made.signature);
    let signed: deploy_safety_core::SignedCheckpoint =
        serde_json::from_value(latest.clone()).unwrap();
    assert_eq!(signed.verify(&[public]), Ok(()));

    let (_, verify) = h.get("/audit/verify", &h.tokens.developer).await;
    assert_eq!(verify["valid"], true);
    assert_eq!(verify["latestCheckpoint"], latest);

    for path in ["/audit/public-key", "/audit/checkpoints/latest"] {
        let (status, _) = h.get(path, "ds_0000000000000000.nope").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_checks_each_get_their_own_entry_and_share_commits() {
    let h = Harness::new().await;
    let before = h.app.store().stats();
    let authorization = format!("Bearer {}", h.tokens.developer);
    let mut tasks = Vec::new();
    for i in 0..100 {
        let router = h.router.clone();
        let authorization = authorization.clone();
        let environment = if i % 2 == 0 { "staging" } else { "production" };
        tasks.push(tokio::spawn(async move {
            let body = json!({"action": CANARY, "environment": environment}).to_string();
            send(
                &router,
                Method::POST,
                &format!("{API}/security-gate/check"),
                Some(&authorization),
                Some(&body),
            )
            .await
        }));
    }
    let mut audit_seqs = HashSet::new();
    for task in tasks {
        let reply = task.await.unwrap();
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        let decision = reply.json();
        let expected = if decision["environment"] == "staging" {
            "ALLOWED"
        } else {
            "OVERRIDE_REQUIRED"
        };
        assert_eq!(decision["reason"], expected);
        assert!(audit_seqs.insert(decision["auditSeq"].as_u64().unwrap()));
    }
    assert_eq!(audit_seqs.len(), 100, "every check has its own entry");
    let after = h.app.store().stats();
    let writes = after.writes - before.writes;
    let commits = after.commits - before.commits;
    assert_eq!(writes, 100);
    assert!(
        commits < writes,
        "group commit: {commits} commits for {writes} writes"
    );

    let (_, verify) = h.get("/audit/verify", &h.tokens.security).await;
    assert_eq!(verify["valid"], true);
    assert_eq!(verify["entriesVerified"], 105);
    let checks = h.audit("action=security-gate.check&limit=1000").await;
    let listed: HashSet<u64> = seqs(&checks).into_iter().collect();
    assert_eq!(
        listed, audit_seqs,
        "the seqs answered are the seqs recorded"
    );
}

/// SPEC §18: every entry made on a caller's behalf says how the caller authenticated, so an
/// investigation can tell a pipeline from a person. Entries the server makes on its own are
/// `system`'s.
#[tokio::test]
async fn every_entry_made_for_a_caller_says_how_it_authenticated() {
    let h = populated().await;
    h.set_threat("high", "INC-1: credential leak").await;
    h.set_threat("low", "INC-1 contained").await;
    let incident = h
        .open_incident(
            &h.tokens.oncall,
            json!({"title": "payments errors", "severity": "critical", "category": "security"}),
        )
        .await;
    let id = incident["id"].as_str().unwrap();
    let (status, body) = h
        .post(
            &format!("/incidents/{id}/resolve"),
            &h.tokens.security,
            json!({"reason": "rotated the keys"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    h.validate("v1.2.3", "staging").await;
    let (status, body) = h
        .post(
            "/rollback/create",
            &h.tokens.oncall,
            json!({"environment": "production", "fromVersion": "v1.2.3", "toVersion": "v1.2.2",
                   "reason": "INC-2: errors"}),
        )
        .await;
    assert!(status.is_success(), "{status} {body}");

    let entries = h.audit("limit=1000").await;
    assert!(entries.len() >= 12, "{entries:?}");
    let mut callers = 0;
    for entry in &entries {
        let by = &entry["details"]["authenticatedBy"];
        match entry["principal"].as_str().unwrap() {
            "system" => {}
            // Tokens are made on the database directly (the CLI), or here by the harness.
            _ if entry["action"] == "token.create" => assert_eq!(by, "cli", "{entry}"),
            _ => {
                callers += 1;
                assert_eq!(by, "token", "{entry}");
            }
        }
    }
    assert!(callers >= 10, "{entries:?}");
}
