//! The conformance suite: what every backend must do.

use deploy_safety_core::GithubRequest;
use deploy_safety_core::{
    Action, AuditDecision, AuditDraft, ChainVerifier, CheckOutcome, CheckStatus, Environment,
    GateKind, GateResult, GateState, Incident, IncidentCategory, IncidentStatus, Override,
    OverrideRequest, Probe, ProbeDefinition, ProbeKind, ProbeResult, ProbeSource, ProbeState,
    ProbeStatus, Reason, RequestStatus, Role, SecurityMode, Severity, StatusRange, ThreatLevel,
    Timestamp, Validation, ValidationRun, ValidationStatus, Vote, VoteKind,
};
use deploy_safety_store::{
    AuditQuery, IncidentQuery, LoginRequestRecord, SessionRecord, Store, StoreError, TokenRecord,
    Tx,
};
use serde_json::json;

use crate::TestDatabase;

const T0: Timestamp = Timestamp::from_unix_millis(1_800_000_000_000);

fn at(minutes: i64) -> Timestamp {
    T0.plus_minutes(minutes)
}

fn an_override(id: &str, action: Action, environment: Environment, expires_min: i64) -> Override {
    Override {
        service: None,
        id: id.to_owned(),
        action,
        environment,
        release_id: None,
        reason: "because".to_owned(),
        approver: "eve".to_owned(),
        approvers: vec!["eve".to_owned()],
        approver_role: Role::EngLead,
        request_id: None,
        created_at: T0,
        expires_at: at(expires_min),
        revoked_at: None,
        revoked_by: None,
        use_count: 0,
        last_used_at: None,
    }
}

fn a_token(id: &str, name: &str) -> TokenRecord {
    TokenRecord {
        id: id.to_owned(),
        name: name.to_owned(),
        role: Role::Developer,
        secret_hash: vec![7; 32],
        created_at: T0,
        created_by: "test".to_owned(),
        revoked_at: None,
    }
}

fn draft(n: u64, principal: &str, action: &str, environment: Option<Environment>) -> AuditDraft {
    AuditDraft {
        principal: principal.to_owned(),
        role: Some(Role::SecurityTeam),
        action: action.to_owned(),
        environment,
        decision: if n.is_multiple_of(3) {
            AuditDecision::Denied
        } else {
            AuditDecision::Allowed
        },
        reason: "ALLOWED".to_owned(),
        details: json!({ "n": n }),
    }
}

async fn write<T: Send + 'static>(
    store: &Store,
    work: impl FnOnce(&mut dyn Tx) -> Result<T, StoreError> + Send + 'static,
) -> T {
    store.write(work).await.unwrap()
}

async fn read<T: Send + 'static>(
    store: &Store,
    work: impl FnOnce(&mut dyn Tx) -> Result<T, StoreError> + Send + 'static,
) -> T {
    store.read(work).await.unwrap()
}

async fn verify(store: &Store) -> u64 {
    let entries = read(store, |tx| tx.audit_after(0, 100_000)).await;
    let mut verifier = ChainVerifier::new();
    for e in &entries {
        verifier.check(e).unwrap();
    }
    let head = read(store, |tx| tx.audit_recorded_head()).await;
    verifier
        .finish(head.as_ref().map(|(seq, hash)| (*seq, hash.as_str())))
        .unwrap();
    verifier.verified()
}

pub async fn new_database_has_default_gate_state(db: &impl TestDatabase) {
    let store = db.open();
    let state = read(&store, |tx| tx.gate_state()).await;
    assert_eq!(state, GateState::default());
    assert_eq!(state.mode, SecurityMode::Enforce);
    assert_eq!(state.threat_level, ThreatLevel::None);
    assert_eq!(read(&store, |tx| tx.audit_head()).await, None);
    assert_eq!(read(&store, |tx| tx.count_tokens()).await, 0);
}

pub async fn gate_state_round_trips(db: &impl TestDatabase) {
    let store = db.open();
    let state = GateState {
        mode: SecurityMode::Lockdown,
        threat_level: ThreatLevel::Critical,
        lockdown_reason: Some("breach".into()),
        lockdown_since: Some(at(1)),
        mode_reason: Some("breach".into()),
        mode_changed_at: Some(at(1)),
        mode_changed_by: Some("sec".into()),
        threat_reason: Some("intel".into()),
        threat_changed_at: Some(at(2)),
        threat_changed_by: Some("sec2".into()),
    };
    let saved = state.clone();
    write(&store, move |tx| tx.put_gate_state(&saved)).await;
    assert_eq!(read(&store, |tx| tx.gate_state()).await, state);
}

pub async fn overrides_are_found_by_scope_and_time(db: &impl TestDatabase) {
    let store = db.open();
    write(&store, |tx| {
        tx.insert_override(&an_override(
            "a",
            Action::CanaryStart,
            Environment::PRODUCTION,
            60,
        ))?;
        tx.insert_override(&an_override(
            "b",
            Action::CanaryStart,
            Environment::STAGING,
            60,
        ))?;
        tx.insert_override(&an_override(
            "c",
            Action::Rollback,
            Environment::PRODUCTION,
            60,
        ))?;
        tx.insert_override(&an_override(
            "d",
            Action::CanaryStart,
            Environment::PRODUCTION,
            10,
        ))?;
        let bound = Override {
            release_id: Some("v1".into()),
            ..an_override("e", Action::CanaryStart, Environment::PRODUCTION, 60)
        };
        tx.insert_override(&bound)
    })
    .await;

    let ids = |list: Vec<Override>| {
        let mut ids: Vec<String> = list.into_iter().map(|o| o.id).collect();
        ids.sort();
        ids
    };
    let found = read(&store, |tx| {
        tx.unexpired_overrides(Action::CanaryStart, Environment::PRODUCTION, at(5))
    })
    .await;
    assert_eq!(ids(found), ["a", "d", "e"]);
    let found = read(&store, |tx| {
        tx.unexpired_overrides(Action::CanaryStart, Environment::PRODUCTION, at(10))
    })
    .await;
    assert_eq!(
        ids(found),
        ["a", "e"],
        "an override expiring exactly now is gone"
    );

    let e = read(&store, |tx| tx.get_override("e")).await.unwrap();
    assert_eq!(e.release_id.as_deref(), Some("v1"));
    assert_eq!(e.expires_at, at(60));
    assert_eq!(read(&store, |tx| tx.get_override("nope")).await, None);

    assert_eq!(read(&store, |tx| tx.count_active_overrides(at(5))).await, 5);
    assert_eq!(
        read(&store, |tx| tx.count_active_overrides(at(10))).await,
        4
    );
    assert_eq!(
        read(&store, |tx| tx.count_active_overrides(at(60))).await,
        0
    );
    let active = read(&store, |tx| tx.list_overrides(at(30), false, 100)).await;
    assert_eq!(active.len(), 4);
    let all = read(&store, |tx| tx.list_overrides(at(30), true, 100)).await;
    assert_eq!(all.len(), 5);
    let limited = read(&store, |tx| tx.list_overrides(at(30), true, 2)).await;
    assert_eq!(limited.len(), 2);
}

pub async fn override_revocation_and_use(db: &impl TestDatabase) {
    let store = db.open();
    write(&store, |tx| {
        tx.insert_override(&an_override(
            "a",
            Action::Rollback,
            Environment::PRODUCTION,
            60,
        ))
    })
    .await;
    write(&store, |tx| tx.record_override_use("a", at(1))).await;
    write(&store, |tx| tx.record_override_use("a", at(2))).await;
    let used = read(&store, |tx| tx.get_override("a")).await.unwrap();
    assert_eq!(used.use_count, 2);
    assert_eq!(used.last_used_at, Some(at(2)));

    assert!(write(&store, |tx| tx.revoke_override("a", "sec", at(3))).await);
    assert!(!write(&store, |tx| tx.revoke_override("a", "sec", at(4))).await);
    assert!(!write(&store, |tx| tx.revoke_override("nope", "sec", at(4))).await);
    let revoked = read(&store, |tx| tx.get_override("a")).await.unwrap();
    assert_eq!(revoked.revoked_at, Some(at(3)));
    assert_eq!(revoked.revoked_by.as_deref(), Some("sec"));
    let found = read(&store, |tx| {
        tx.unexpired_overrides(Action::Rollback, Environment::PRODUCTION, at(5))
    })
    .await;
    assert!(found.is_empty(), "revoked overrides are never candidates");
}

pub async fn principals_keep_their_role_and_hold_tokens(db: &impl TestDatabase) {
    let store = db.open();
    assert_eq!(read(&store, |tx| tx.principal_role("alice")).await, None);
    write(&store, |tx| {
        tx.insert_principal("alice", Role::Developer, T0)?;
        tx.insert_token(&a_token("t1", "alice"))?;
        tx.insert_token(&a_token("t2", "alice"))
    })
    .await;
    assert_eq!(
        read(&store, |tx| tx.principal_role("alice")).await,
        Some(Role::Developer)
    );
    let duplicate = store
        .write(|tx| tx.insert_principal("alice", Role::EngLead, T0))
        .await;
    assert!(
        matches!(duplicate, Err(StoreError::Conflict(_))),
        "{duplicate:?}"
    );
    let orphan = store
        .write(|tx| tx.insert_token(&a_token("t3", "nobody")))
        .await;
    assert!(orphan.is_err(), "a token needs its principal: {orphan:?}");
    assert_eq!(read(&store, |tx| tx.count_tokens()).await, 2);

    let found = read(&store, |tx| tx.get_token("t1")).await.unwrap();
    assert_eq!(found, a_token("t1", "alice"));
    assert_eq!(
        found.role,
        Role::Developer,
        "a token's role is its principal's"
    );

    assert!(write(&store, |tx| tx.revoke_token("t1", at(1))).await);
    assert!(!write(&store, |tx| tx.revoke_token("t1", at(2))).await);
    let revoked = write(&store, |tx| tx.revoke_tokens_of("alice", at(3))).await;
    assert_eq!(
        revoked.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        ["t2"],
        "only tokens still active"
    );
    assert_eq!(revoked[0].revoked_at, Some(at(3)));
    let listed = read(&store, |tx| tx.list_tokens()).await;
    assert_eq!(
        listed
            .iter()
            .map(|t| (t.id.as_str(), t.revoked_at))
            .collect::<Vec<_>>(),
        [("t1", Some(at(1))), ("t2", Some(at(3)))]
    );
}

pub async fn audit_chain_is_sealed_in_order(db: &impl TestDatabase) {
    let store = db.open();
    let first = write(&store, |tx| {
        tx.append_audit(draft(1, "alice", "x", None), at(1))
    })
    .await;
    assert_eq!(first.seq, 1);
    assert_eq!(first.prev_hash, deploy_safety_core::GENESIS_HASH);
    let (second, third) = write(&store, |tx| {
        let a = tx.append_audit(draft(2, "bob", "y", Some(Environment::STAGING)), at(2))?;
        let b = tx.append_audit(draft(3, "bob", "y", None), at(3))?;
        Ok((a, b))
    })
    .await;
    assert_eq!((second.seq, third.seq), (2, 3));
    assert_eq!(second.prev_hash, first.hash);
    assert_eq!(third.prev_hash, second.hash);
    assert_eq!(
        read(&store, |tx| tx.audit_head()).await,
        Some((3, third.hash.clone()))
    );
    let stored = read(&store, |tx| tx.audit_after(1, 10)).await;
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0], second.to_stored(), "stored exactly as sealed");
    let parsed = stored[0].parse().unwrap();
    assert_eq!(parsed.hash, second.hash);
    assert_eq!(parsed.details.get(), r#"{"n":2}"#);
    assert_eq!(parsed.environment, Some(Environment::STAGING));
    assert_eq!(
        read(&store, |tx| tx.audit_recorded_head()).await,
        Some((3, third.hash.clone()))
    );
    assert_eq!(verify(&store).await, 3);
}

pub async fn audit_pages_filter_and_page(db: &impl TestDatabase) {
    let store = db.open();
    write(&store, |tx| {
        for n in 1..=30u64 {
            let principal = if n % 2 == 0 { "even" } else { "odd" };
            let action = if n % 5 == 0 { "five" } else { "other" };
            let environment = (n % 4 == 0).then_some(Environment::PRODUCTION);
            tx.append_audit(draft(n, principal, action, environment), at(n as i64))?;
        }
        Ok(())
    })
    .await;
    let page = |q: AuditQuery| {
        let store = store.clone();
        async move {
            read(&store, move |tx| tx.audit_page(&q))
                .await
                .into_iter()
                .map(|e| e.seq)
                .collect::<Vec<i64>>()
        }
    };
    let q = |limit| AuditQuery {
        limit,
        ..AuditQuery::default()
    };
    assert_eq!(page(q(3)).await, [30, 29, 28], "newest first");
    assert_eq!(
        page(AuditQuery {
            before_seq: Some(28),
            ..q(3)
        })
        .await,
        [27, 26, 25]
    );
    assert_eq!(
        page(AuditQuery {
            action: Some("five".into()),
            ..q(100)
        })
        .await,
        [30, 25, 20, 15, 10, 5]
    );
    assert_eq!(
        page(AuditQuery {
            principal: Some("even".into()),
            environment: Some(Environment::PRODUCTION),
            ..q(100)
        })
        .await,
        [28, 24, 20, 16, 12, 8, 4]
    );
    assert_eq!(
        page(AuditQuery {
            decision: Some(AuditDecision::Denied),
            ..q(100)
        })
        .await,
        [30, 27, 24, 21, 18, 15, 12, 9, 6, 3]
    );
    assert_eq!(
        page(AuditQuery {
            since: Some(at(10)),
            until: Some(at(13)),
            ..q(100)
        })
        .await,
        [12, 11, 10],
        "since is inclusive, until exclusive"
    );
    assert!(
        page(AuditQuery {
            principal: Some("nobody".into()),
            ..q(100)
        })
        .await
        .is_empty()
    );
}

pub async fn everything_survives_reopening(db: &impl TestDatabase) {
    let first_hash = {
        let store = db.open();
        let state = GateState {
            mode: SecurityMode::Monitor,
            ..GateState::default()
        };
        write(&store, move |tx| {
            tx.put_gate_state(&state)?;
            tx.insert_principal("alice", Role::Developer, T0)?;
            tx.insert_token(&a_token("t1", "alice"))?;
            tx.insert_override(&an_override(
                "o",
                Action::LoadShed,
                Environment::STAGING,
                60,
            ))?;
            tx.append_audit(draft(1, "alice", "x", None), at(1))
        })
        .await
        .hash
    };
    let store = db.open();
    assert_eq!(
        read(&store, |tx| tx.gate_state()).await.mode,
        SecurityMode::Monitor
    );
    assert!(read(&store, |tx| tx.get_token("t1")).await.is_some());
    assert!(read(&store, |tx| tx.get_override("o")).await.is_some());
    let next = write(&store, |tx| {
        tx.append_audit(draft(2, "bob", "y", None), at(2))
    })
    .await;
    assert_eq!(next.seq, 2);
    assert_eq!(
        next.prev_hash, first_hash,
        "the chain continues across restarts"
    );
    assert_eq!(verify(&store).await, 2);
}

pub async fn a_failing_write_changes_nothing(db: &impl TestDatabase) {
    let store = db.open();
    let failed = store
        .write(|tx| {
            tx.insert_override(&an_override(
                "o",
                Action::LoadShed,
                Environment::STAGING,
                60,
            ))?;
            tx.append_audit(draft(1, "alice", "x", None), at(1))?;
            Err::<(), _>(StoreError::Database("refused".into()))
        })
        .await;
    assert_eq!(failed, Err(StoreError::Database("refused".into())));
    assert_eq!(read(&store, |tx| tx.get_override("o")).await, None);
    assert_eq!(read(&store, |tx| tx.audit_head()).await, None);
    let next = write(&store, |tx| {
        tx.append_audit(draft(1, "alice", "x", None), at(1))
    })
    .await;
    assert_eq!(next.seq, 1, "the rolled back entry left no gap");
    assert_eq!(verify(&store).await, 1);
}

pub async fn a_panicking_write_is_rolled_back_and_the_writer_survives(db: &impl TestDatabase) {
    let store = db.open();
    let panicked = store
        .write(|tx| -> Result<(), StoreError> {
            tx.append_audit(draft(1, "alice", "x", None), at(1))?;
            panic!("bug in a use case");
        })
        .await;
    assert_eq!(panicked, Err(StoreError::Closed));
    assert_eq!(read(&store, |tx| tx.audit_head()).await, None);
    let next = write(&store, |tx| {
        tx.append_audit(draft(1, "alice", "x", None), at(1))
    })
    .await;
    assert_eq!(next.seq, 1);
}

/// Group commit: writes that arrive while the writer is busy share the next transaction.
pub async fn concurrent_writes_share_one_commit(db: &impl TestDatabase) {
    let store = db.open();
    let before = store.stats();
    // The first write holds the writer until every other write is queued behind it.
    let (release, hold) = std::sync::mpsc::channel::<()>();
    let (started, running) = tokio::sync::oneshot::channel::<()>();
    let first = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .write(move |tx| {
                    started.send(()).ok();
                    hold.recv().ok();
                    tx.append_audit(draft(0, "first", "x", None), at(0))
                })
                .await
        })
    };
    running.await.unwrap();
    let writers = 199;
    let handles: Vec<_> = (1..=writers)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .write(move |tx| tx.append_audit(draft(n, "many", "x", None), at(1)))
                    .await
            })
        })
        .collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while store.queued_writes() < writers as usize {
        assert!(std::time::Instant::now() < deadline, "writes never queued");
        tokio::task::yield_now().await;
    }
    release.send(()).unwrap();
    first.await.unwrap().unwrap();
    let mut seqs: Vec<u64> = Vec::new();
    for h in handles {
        seqs.push(h.await.unwrap().unwrap().seq);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (2..=200).collect::<Vec<u64>>());
    let after = store.stats();
    assert_eq!(after.writes - before.writes, 200);
    assert_eq!(
        after.commits - before.commits,
        2,
        "the first write alone, then the 199 that queued behind it together"
    );
    assert_eq!(verify(&store).await, 200);
}

/// SPEC §12: when the audit entry cannot be written, the action is not performed.
pub async fn writes_fail_closed_when_audit_cannot_be_written(db: &impl TestDatabase) {
    let store = db.open();
    db.refuse_audit_writes();
    let state = GateState {
        mode: SecurityMode::Lockdown,
        lockdown_reason: Some("x".into()),
        ..GateState::default()
    };
    let outcome = store
        .write(move |tx| {
            tx.put_gate_state(&state)?;
            tx.append_audit(draft(1, "alice", "security-gate.mode.set", None), at(1))
        })
        .await;
    assert!(
        matches!(outcome, Err(StoreError::Database(_))),
        "{outcome:?}"
    );
    assert_eq!(
        read(&store, |tx| tx.gate_state()).await.mode,
        SecurityMode::Enforce,
        "the state change was rolled back with its audit entry"
    );
    assert_eq!(read(&store, |tx| tx.audit_head()).await, None);
}

/// A failing and a panicking write in the middle of one batch are rolled back alone; the others
/// commit, and the chain has no gap.
pub async fn failures_inside_a_batch_leave_no_gap(db: &impl TestDatabase) {
    let store = db.open();
    let (release, hold) = std::sync::mpsc::channel::<()>();
    let (started, running) = tokio::sync::oneshot::channel::<()>();
    let first = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .write(move |tx| {
                    started.send(()).ok();
                    hold.recv().ok();
                    tx.append_audit(draft(1, "first", "x", None), at(0))
                })
                .await
        })
    };
    running.await.unwrap();
    let spawn = |n: u64, outcome: &'static str| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .write(move |tx| {
                    let entry = tx.append_audit(draft(n, outcome, "x", None), at(1))?;
                    match outcome {
                        "fail" => Err(StoreError::Database("refused".into())),
                        "panic" => panic!("bug"),
                        _ => Ok(entry.seq),
                    }
                })
                .await
        })
    };
    let ok_a = spawn(2, "ok");
    tokio::task::yield_now().await;
    let failing = spawn(3, "fail");
    let panicking = spawn(4, "panic");
    let ok_b = spawn(5, "ok");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while store.queued_writes() < 4 {
        assert!(std::time::Instant::now() < deadline, "writes never queued");
        tokio::task::yield_now().await;
    }
    release.send(()).unwrap();
    first.await.unwrap().unwrap();
    let mut committed = vec![ok_a.await.unwrap().unwrap(), ok_b.await.unwrap().unwrap()];
    committed.sort_unstable();
    assert_eq!(committed, [2, 3], "the two good writes took the next seqs");
    assert!(failing.await.unwrap().is_err());
    assert_eq!(panicking.await.unwrap(), Err(StoreError::Closed));
    assert_eq!(verify(&store).await, 3);
    let principals: Vec<String> = read(&store, |tx| tx.audit_after(0, 10))
        .await
        .into_iter()
        .map(|e| e.parse().unwrap().principal)
        .collect();
    assert!(!principals.iter().any(|p| p == "fail" || p == "panic"));
}

fn an_incident(
    id: &str,
    severity: Severity,
    environment: Option<Environment>,
    opened: i64,
) -> Incident {
    Incident::open(
        id.to_owned(),
        &Reason::parse("database down").unwrap(),
        severity,
        IncidentCategory::Operational,
        environment,
        "alice",
        at(opened),
    )
}

pub async fn incidents_round_trip_and_filter(db: &impl TestDatabase) {
    let store = db.open();
    write(&store, |tx| {
        tx.insert_incident(&an_incident("i1", Severity::Critical, None, 1))?;
        tx.insert_incident(&an_incident(
            "i2",
            Severity::Low,
            Some(Environment::STAGING),
            2,
        ))?;
        tx.insert_incident(&an_incident(
            "i3",
            Severity::Critical,
            Some(Environment::PRODUCTION),
            3,
        ))
    })
    .await;
    let stored = read(&store, |tx| tx.get_incident("i2")).await.unwrap();
    assert_eq!(
        stored,
        an_incident("i2", Severity::Low, Some(Environment::STAGING), 2)
    );

    let escalated = stored
        .escalate(
            Severity::High,
            &Reason::parse("spreading").unwrap(),
            "bob",
            at(4),
        )
        .unwrap();
    let saved = escalated.clone();
    write(&store, move |tx| tx.update_incident(&saved)).await;
    assert_eq!(
        read(&store, |tx| tx.get_incident("i2")).await,
        Some(escalated.clone())
    );
    let resolved = escalated
        .resolve(&Reason::parse("fixed").unwrap(), "carol", at(5))
        .unwrap();
    let saved = resolved.clone();
    write(&store, move |tx| tx.update_incident(&saved)).await;

    let ids = |q: IncidentQuery| {
        let store = store.clone();
        async move {
            read(&store, move |tx| tx.list_incidents(&q))
                .await
                .into_iter()
                .map(|i| i.id)
                .collect::<Vec<String>>()
        }
    };
    let all = IncidentQuery {
        limit: 10,
        ..IncidentQuery::default()
    };
    assert_eq!(ids(all.clone()).await, ["i3", "i2", "i1"], "newest first");
    assert_eq!(
        ids(IncidentQuery {
            status: Some(IncidentStatus::Open),
            ..all.clone()
        })
        .await,
        ["i3", "i1"]
    );
    assert_eq!(
        ids(IncidentQuery {
            severity: Some(Severity::Critical),
            ..all.clone()
        })
        .await,
        ["i3", "i1"]
    );
    assert_eq!(
        ids(IncidentQuery {
            environment: Some(Environment::STAGING),
            ..all.clone()
        })
        .await,
        ["i2", "i1"],
        "an incident naming no environment concerns every one"
    );
    assert_eq!(ids(IncidentQuery { limit: 1, ..all }).await, ["i3"]);

    let open = read(&store, |tx| tx.open_incidents()).await;
    assert_eq!(
        open.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
        ["i1", "i3"]
    );
    assert_eq!(open[1].environment, Some(Environment::PRODUCTION));
    assert_eq!(open[1].severity, Severity::Critical);
}

fn a_validation(id: &str, release: &str, environment: Environment, created: i64) -> Validation {
    Validation {
        service: None,
        id: id.to_owned(),
        release_id: release.to_owned(),
        environment,
        created_at: at(created),
        created_by: "ci".to_owned(),
    }
}

fn a_run(number: u32, status: ValidationStatus) -> ValidationRun {
    ValidationRun {
        number,
        status,
        started_at: at(i64::from(number)),
        started_by: "ci".to_owned(),
        finished_at: None,
        gates: vec![GateResult {
            name: "health".to_owned(),
            kind: GateKind::Builtin,
            status: CheckStatus::Pending,
            message: "not run yet".to_owned(),
            duration_ms: 0,
        }],
    }
}

pub async fn validation_runs_are_records(db: &impl TestDatabase) {
    let store = db.open();
    write(&store, |tx| {
        tx.insert_validation(&a_validation("v1", "1.0", Environment::STAGING, 1))?;
        tx.insert_validation(&a_validation("v2", "1.0", Environment::PRODUCTION, 2))?;
        tx.insert_validation(&a_validation("v3", "2.0", Environment::STAGING, 3))?;
        tx.insert_validation_run("v1", &a_run(1, ValidationStatus::Running))
    })
    .await;
    assert!(
        !read(&store, |tx| tx.release_passed_validation(
            "1.0",
            Environment::STAGING,
            None
        ))
        .await
    );

    let gates = vec![GateResult {
        name: "health".to_owned(),
        kind: GateKind::Builtin,
        status: CheckStatus::Passed,
        message: "overall health is healthy".to_owned(),
        duration_ms: 3,
    }];
    let finished_gates = gates.clone();
    assert!(
        write(&store, move |tx| {
            tx.finish_validation_run("v1", 1, ValidationStatus::Passed, at(9), &finished_gates)
        })
        .await
    );
    let again = gates.clone();
    assert!(
        !write(&store, move |tx| {
            tx.finish_validation_run("v1", 1, ValidationStatus::Failed, at(10), &again)
        })
        .await,
        "a finished run never changes"
    );
    let runs = read(&store, |tx| tx.validation_runs("v1")).await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, ValidationStatus::Passed);
    assert_eq!(runs[0].finished_at, Some(at(9)));
    assert_eq!(runs[0].gates, gates);
    assert!(
        read(&store, |tx| tx.release_passed_validation(
            "1.0",
            Environment::STAGING,
            None
        ))
        .await
    );
    assert!(
        !read(&store, |tx| tx.release_passed_validation(
            "1.0",
            Environment::PRODUCTION,
            None
        ))
        .await
    );
    assert!(
        !read(&store, |tx| tx.release_passed_validation(
            "2.0",
            Environment::STAGING,
            None
        ))
        .await
    );

    let duplicate = store
        .write(|tx| tx.insert_validation_run("v1", &a_run(1, ValidationStatus::Running)))
        .await;
    assert!(duplicate.is_err(), "run numbers are unique per validation");
    write(&store, |tx| {
        tx.insert_validation_run("v1", &a_run(2, ValidationStatus::Running))
    })
    .await;
    let numbers: Vec<u32> = read(&store, |tx| tx.validation_runs("v1"))
        .await
        .iter()
        .map(|r| r.number)
        .collect();
    assert_eq!(numbers, [1, 2]);

    let ids = |release: Option<&'static str>, environment: Option<Environment>| {
        let store = store.clone();
        async move {
            read(&store, move |tx| {
                tx.list_validations(release, environment, None, 10)
            })
            .await
            .into_iter()
            .map(|v| v.id)
            .collect::<Vec<String>>()
        }
    };
    assert_eq!(ids(None, None).await, ["v3", "v2", "v1"]);
    assert_eq!(ids(Some("1.0"), None).await, ["v2", "v1"]);
    assert_eq!(ids(Some("1.0"), Some(Environment::STAGING)).await, ["v1"]);
    assert_eq!(
        read(&store, |tx| tx.get_validation("v2")).await,
        Some(a_validation("v2", "1.0", Environment::PRODUCTION, 2))
    );
    assert_eq!(read(&store, |tx| tx.get_validation("nope")).await, None);
}

fn a_probe(id: &str, name: &str, next: i64) -> Probe {
    Probe {
        id: id.to_owned(),
        definition: ProbeDefinition {
            name: name.to_owned(),
            kind: ProbeKind::Http,
            target: "http://127.0.0.1:1/health".to_owned(),
            method: Some("GET".to_owned()),
            expected_status: Some(StatusRange::SUCCESS),
            timeout_ms: 500,
            interval_ms: 10_000,
            failure_threshold: 3,
            success_threshold: 1,
            critical: true,
        },
        source: ProbeSource::Api,
        created_at: T0,
        created_by: "ops".to_owned(),
        state: ProbeState::default(),
        next_check_at: at(next),
    }
}

pub async fn probes_keep_state_and_a_bounded_history(db: &impl TestDatabase) {
    let store = db.open();
    write(&store, |tx| {
        tx.insert_probe(&a_probe("p1", "api", 0))?;
        tx.insert_probe(&a_probe("p2", "cache", 5))
    })
    .await;
    assert_eq!(
        read(&store, |tx| tx.get_probe("p1")).await,
        Some(a_probe("p1", "api", 0))
    );
    assert_eq!(
        read(&store, |tx| tx.probe_by_name("cache"))
            .await
            .map(|p| p.id)
            .as_deref(),
        Some("p2")
    );
    let duplicate = store
        .write(|tx| tx.insert_probe(&a_probe("p3", "api", 0)))
        .await;
    assert!(duplicate.is_err(), "probe names are unique");

    let due = |minutes| {
        let store = store.clone();
        async move {
            read(&store, move |tx| tx.due_probes(at(minutes)))
                .await
                .into_iter()
                .map(|p| p.id)
                .collect::<Vec<String>>()
        }
    };
    assert_eq!(due(1).await, ["p1"]);
    assert_eq!(due(5).await, ["p1", "p2"]);

    for n in 0..15u64 {
        let state = ProbeState {
            status: ProbeStatus::Failing,
            consecutive_failures: u32::try_from(n).unwrap() + 1,
            consecutive_successes: 0,
            last_checked_at: Some(at(n as i64)),
            last_error: Some(format!("HTTP 50{}", n % 10)),
        };
        let result = ProbeResult {
            at: at(n as i64),
            outcome: CheckOutcome::Failure,
            latency_ms: n,
            error: state.last_error.clone(),
        };
        assert!(
            write(&store, move |tx| tx.record_probe_check(
                "p1",
                &state,
                at(100),
                &result,
                10
            ))
            .await
        );
    }
    let probe = read(&store, |tx| tx.get_probe("p1")).await.unwrap();
    assert_eq!(probe.state.consecutive_failures, 15);
    assert_eq!(probe.state.status, ProbeStatus::Failing);
    assert_eq!(probe.next_check_at, at(100));
    let history = read(&store, |tx| tx.probe_results("p1", 100)).await;
    assert_eq!(history.len(), 10, "only the newest 10 are kept");
    assert_eq!(history[0].latency_ms, 14, "newest first");
    assert_eq!(history[9].latency_ms, 5);
    assert_eq!(read(&store, |tx| tx.probe_results("p1", 3)).await.len(), 3);

    let mut changed = a_probe("p2", "cache", 5).definition;
    changed.kind = ProbeKind::Tcp;
    changed.target = "127.0.0.1:6379".to_owned();
    changed.method = None;
    changed.expected_status = None;
    let saved = changed.clone();
    write(&store, move |tx| tx.update_probe_definition("p2", &saved)).await;
    assert_eq!(
        read(&store, |tx| tx.get_probe("p2"))
            .await
            .unwrap()
            .definition,
        changed
    );

    assert!(write(&store, |tx| tx.delete_probe("p1")).await);
    assert!(!write(&store, |tx| tx.delete_probe("p1")).await);
    assert!(
        read(&store, |tx| tx.probe_results("p1", 100))
            .await
            .is_empty()
    );
    let state = ProbeState::default();
    let result = ProbeResult {
        at: T0,
        outcome: CheckOutcome::Success,
        latency_ms: 1,
        error: None,
    };
    assert!(
        !write(&store, move |tx| tx
            .record_probe_check("p1", &state, T0, &result, 10))
        .await,
        "a deleted probe records nothing"
    );
    assert_eq!(
        read(&store, |tx| tx.list_probes())
            .await
            .iter()
            .map(|p| p.id.as_str())
            .collect::<Vec<_>>(),
        ["p2"]
    );
    write(&store, |tx| tx.touch_heartbeat(at(1))).await;
}

fn a_soak(
    id: &str,
    release: &str,
    service: Option<&str>,
    started: Timestamp,
) -> deploy_safety_core::Soak {
    deploy_safety_core::Soak::start(
        id.to_owned(),
        release.to_owned(),
        Environment::STAGING,
        service.map(str::to_owned),
        release.to_owned(),
        deploy_safety_core::SoakConfig::default(),
        "ci",
        started,
    )
}

pub async fn soaks_round_trip_filter_and_schedule(db: &impl TestDatabase) {
    use deploy_safety_core::SoakStatus;
    use deploy_safety_store::SoakQuery;
    let store = db.open();
    let first = a_soak("sok_1", "v1", None, at(0));
    let payments = a_soak("sok_2", "v1", Some("payments/api"), at(1));
    let other = a_soak("sok_3", "v2", None, at(2));
    for soak in [&first, &payments, &other] {
        let soak = soak.clone();
        write(&store, move |tx| tx.insert_soak(&soak)).await;
    }
    assert_eq!(
        read(&store, |tx| tx.get_soak("sok_1")).await,
        Some(first.clone())
    );
    assert_eq!(read(&store, |tx| tx.get_soak("sok_9")).await, None);

    // One running soak per (release, environment, service): the store refuses a second.
    let twin = a_soak("sok_4", "v1", None, at(3));
    let refused = store.write(move |tx| tx.insert_soak(&twin)).await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(_))),
        "{refused:?}"
    );
    let found = read(&store, |tx| {
        tx.running_soak("v1", Environment::STAGING, None)
    })
    .await;
    assert_eq!(found.map(|s| s.id), Some("sok_1".to_owned()));
    let found = read(&store, |tx| {
        tx.running_soak("v1", Environment::STAGING, Some("payments/api"))
    })
    .await;
    assert_eq!(found.map(|s| s.id), Some("sok_2".to_owned()));
    assert_eq!(
        read(&store, |tx| tx.running_soak(
            "v1",
            Environment::PRODUCTION,
            None
        ))
        .await,
        None
    );

    // The schedule: due soaks are the running ones whose next evaluation has come.
    let due = |now: Timestamp| {
        let store = store.clone();
        async move {
            read(&store, move |tx| tx.due_soaks(now))
                .await
                .into_iter()
                .map(|s| s.id)
                .collect::<Vec<String>>()
        }
    };
    assert!(due(at(0)).await.is_empty());
    assert_eq!(due(at(2)).await, ["sok_1", "sok_2"]);
    assert_eq!(due(at(60)).await, ["sok_1", "sok_2", "sok_3"]);

    // Passed, and no longer running or due.
    let mut passed = first.clone();
    passed.status = SoakStatus::Passed;
    passed.next_evaluation_at = None;
    let update = passed.clone();
    write(&store, move |tx| tx.update_soak(&update)).await;
    assert_eq!(read(&store, |tx| tx.get_soak("sok_1")).await, Some(passed));
    assert_eq!(due(at(60)).await, ["sok_2", "sok_3"]);
    assert!(
        read(&store, |tx| tx.release_passed_soak(
            "v1",
            Environment::STAGING,
            None
        ))
        .await
    );
    // A soak of the environment as a whole covers every service (SPEC §15).
    assert!(
        read(&store, |tx| tx.release_passed_soak(
            "v1",
            Environment::STAGING,
            Some("payments/api")
        ))
        .await
    );
    assert!(
        !read(&store, |tx| tx.release_passed_soak(
            "v1",
            Environment::PRODUCTION,
            None
        ))
        .await
    );
    assert!(
        !read(&store, |tx| tx.release_passed_soak(
            "v2",
            Environment::STAGING,
            None
        ))
        .await
    );

    let list = |query: SoakQuery| {
        let store = store.clone();
        async move {
            read(&store, move |tx| tx.list_soaks(&query))
                .await
                .into_iter()
                .map(|s| s.id)
                .collect::<Vec<String>>()
        }
    };
    let all = SoakQuery {
        limit: 50,
        ..SoakQuery::default()
    };
    assert_eq!(list(all.clone()).await, ["sok_3", "sok_2", "sok_1"]);
    assert_eq!(
        list(SoakQuery {
            release_id: Some("v1".into()),
            ..all.clone()
        })
        .await,
        ["sok_2", "sok_1"]
    );
    assert_eq!(
        list(SoakQuery {
            service: Some("payments/api".into()),
            ..all.clone()
        })
        .await,
        ["sok_2"]
    );
    assert_eq!(
        list(SoakQuery {
            status: Some(SoakStatus::Passed),
            ..all.clone()
        })
        .await,
        ["sok_1"]
    );
    assert_eq!(
        list(SoakQuery {
            environment: Some(Environment::PRODUCTION),
            ..all.clone()
        })
        .await,
        Vec::<String>::new()
    );
    assert_eq!(list(SoakQuery { limit: 1, ..all }).await, ["sok_3"]);
}

pub async fn stored_entries_heads_and_checkpoints(db: &impl TestDatabase) {
    let store = db.open();
    let entries = write(&store, |tx| {
        (1..=3u64)
            .map(|n| {
                tx.append_audit(
                    draft(n, "alice", "x", Some(Environment::PRODUCTION)),
                    at(n as i64),
                )
            })
            .collect::<Result<Vec<_>, _>>()
    })
    .await;
    // Entries read back exactly as they were sealed, column by column.
    let stored = read(&store, |tx| tx.audit_after(0, 10)).await;
    let sealed: Vec<_> = entries.iter().map(|e| e.to_stored()).collect();
    assert_eq!(stored, sealed);
    let page = read(&store, |tx| {
        tx.audit_page(&AuditQuery {
            limit: 10,
            ..AuditQuery::default()
        })
    })
    .await;
    assert_eq!(page.into_iter().rev().collect::<Vec<_>>(), sealed);
    assert_eq!(
        read(&store, |tx| tx.audit_stored_hash(2)).await,
        Some(deploy_safety_core::StoredValue::Text(
            entries[1].hash.clone().into_bytes()
        ))
    );
    assert_eq!(read(&store, |tx| tx.audit_stored_hash(9)).await, None);
    assert_eq!(
        read(&store, |tx| tx.audit_recorded_head()).await,
        Some((3, entries[2].hash.clone()))
    );

    // Checkpoints: stored beside the log, the latest found; they are not audit entries.
    let key = deploy_safety_core::CheckpointKey::from_secret(&[3; 32]);
    assert_eq!(read(&store, |tx| tx.latest_checkpoint()).await, None);
    let first = key.sign(3, &entries[2].hash, at(10));
    let second = key.sign(3, &entries[2].hash, at(11));
    let (a, b) = (first.clone(), second.clone());
    let head = write(&store, move |tx| {
        tx.insert_checkpoint(&a)?;
        tx.insert_checkpoint(&b)?;
        tx.audit_chain_head()
    })
    .await;
    assert_eq!(head, (3, entries[2].hash.clone()));
    assert_eq!(
        read(&store, |tx| tx.latest_checkpoint()).await,
        Some(Ok(second))
    );
    assert_eq!(
        read(&store, |tx| tx.audit_head()).await.map(|(s, _)| s),
        Some(3)
    );
    assert_eq!(verify(&store).await, 3);
}

fn a_github_request(id: &str, run: u32, received: Timestamp) -> deploy_safety_core::GithubRequest {
    use deploy_safety_core::{GithubRequest, GithubRequestState, ReasonCode};
    GithubRequest {
        id: id.to_owned(),
        received_at: received,
        github_environment: "production".to_owned(),
        environment: Some(Environment::PRODUCTION),
        service: "acme/payments".to_owned(),
        release_id: "0123abc".to_owned(),
        action: Action::CanaryStart,
        installation_id: 7,
        deployment_id: u64::from(run) * 10,
        callback_url: format!(
            "https://api.github.com/repos/acme/payments/actions/runs/{run}/deployment_protection_rule"
        ),
        sender: Some("octocat".to_owned()),
        state: GithubRequestState::Pending,
        reason: ReasonCode::OverrideRequired,
        message: "Production actions require explicit override".to_owned(),
        commented: false,
        next_decision_at: Some(received.plus_minutes(1)),
        decided_at: None,
        expires_at: received.plus_minutes(30 * 24 * 60),
        audit_seq: 0,
    }
}

pub async fn github_requests_round_trip_dedupe_and_come_due(db: &impl TestDatabase) {
    use deploy_safety_core::GithubRequestState;
    use deploy_safety_store::OutboxKind;
    let store = db.open();
    let first = a_github_request("ghr_1", 41, at(0));
    let second = a_github_request("ghr_2", 42, at(1));
    for request in [&first, &second] {
        let request = request.clone();
        assert!(write(&store, move |tx| tx.insert_github_request(&request)).await);
    }
    // One request per (callback URL, GitHub environment): a redelivery stores nothing.
    let twin = GithubRequest {
        id: "ghr_3".to_owned(),
        ..first.clone()
    };
    assert!(!write(&store, move |tx| tx.insert_github_request(&twin)).await);
    assert_eq!(
        read(&store, |tx| tx.get_github_request("ghr_3")).await,
        None
    );
    let url = first.callback_url.clone();
    assert_eq!(
        read(&store, move |tx| tx.find_github_request(
            &url,
            "production",
            410
        ))
        .await,
        Some(first.clone())
    );
    let url = first.callback_url.clone();
    assert_eq!(
        read(&store, move |tx| tx
            .find_github_request(&url, "staging", 410))
        .await,
        None
    );
    // A re-run of the workflow is a new deployment of the same run: a request of its own.
    let rerun = GithubRequest {
        id: "ghr_4".to_owned(),
        deployment_id: 411,
        received_at: at(3),
        next_decision_at: Some(at(9)),
        ..first.clone()
    };
    assert!(write(&store, move |tx| tx.insert_github_request(&rerun)).await);
    let url = first.callback_url.clone();
    assert_eq!(
        read(&store, move |tx| tx.find_github_request(
            &url,
            "production",
            411
        ))
        .await
        .map(|r| r.id),
        Some("ghr_4".to_owned())
    );
    let url = first.callback_url.clone();
    assert_eq!(
        read(&store, move |tx| tx.find_github_request(
            &url,
            "production",
            412
        ))
        .await,
        None
    );
    // Pending ones, oldest first; with a due time, only those due by then.
    let ids = |list: Vec<GithubRequest>| list.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(
        ids(read(&store, |tx| tx.pending_github_requests(None, 10)).await),
        ["ghr_1", "ghr_2", "ghr_4"]
    );
    assert_eq!(
        ids(read(&store, |tx| tx.pending_github_requests(Some(at(1)), 10)).await),
        ["ghr_1"]
    );
    assert_eq!(
        ids(read(&store, |tx| tx.pending_github_requests(Some(at(0)), 10)).await),
        Vec::<String>::new()
    );
    assert_eq!(
        ids(read(&store, |tx| tx.pending_github_requests(None, 1)).await),
        ["ghr_1"]
    );
    // Decided: no longer pending; the body is replaced whole.
    let mut approved = first.clone();
    approved.state = GithubRequestState::Approved;
    approved.decided_at = Some(at(2));
    approved.next_decision_at = None;
    approved.audit_seq = 12;
    let stored = approved.clone();
    write(&store, move |tx| tx.update_github_request(&stored)).await;
    assert_eq!(
        read(&store, |tx| tx.get_github_request("ghr_1")).await,
        Some(approved)
    );
    assert_eq!(
        ids(read(&store, |tx| tx.pending_github_requests(None, 10)).await),
        ["ghr_2", "ghr_4"]
    );
    // Its callbacks go through the outbox, naming the request.
    let id = write(&store, |tx| {
        tx.enqueue_github_callback("answer", "ghr_1", at(2))
    })
    .await;
    let claimed = write(&store, |tx| tx.claim_outbox(at(2), at(3), 10)).await;
    let entry = claimed.iter().find(|e| e.id == id).expect("claimed");
    assert_eq!(entry.kind, OutboxKind::GithubCallback);
    assert_eq!(entry.target, "answer");
    assert_eq!(entry.github_request_id.as_deref(), Some("ghr_1"));
    assert_eq!(entry.rollback_id, None);
}

fn a_rollback(
    id: &str,
    service: Option<&str>,
    from: &str,
    status: deploy_safety_core::RollbackStatus,
    created: i64,
) -> deploy_safety_core::Rollback {
    deploy_safety_core::Rollback {
        id: id.to_owned(),
        environment: Environment::STAGING,
        service: service.map(str::to_owned),
        from_version: from.to_owned(),
        to_version: "v0".to_owned(),
        reason: "errors up".to_owned(),
        created_at: at(created),
        created_by: "oncall".to_owned(),
        known_target: true,
        warning: None,
        status,
        automatic: false,
        canary_id: None,
        executed_at: None,
        executed_by: None,
        override_id: None,
        outcome_at: None,
        outcome_message: None,
    }
}

/// The lookups behind a deploy engine's `deny` (SPEC §17): each for exactly one
/// (environment, service) — `None` is the environment as a whole, not "any service".
pub async fn verdict_lookups_are_per_release_and_exact_service(db: &impl TestDatabase) {
    use deploy_safety_core::RollbackStatus;
    let store = db.open();
    let whole = a_validation("val_1", "v1", Environment::STAGING, 0);
    let payments = Validation {
        service: Some("payments".to_owned()),
        ..a_validation("val_2", "v1", Environment::STAGING, 1)
    };
    let newer = Validation {
        service: Some("payments".to_owned()),
        ..a_validation("val_3", "v1", Environment::STAGING, 2)
    };
    for v in [whole, payments, newer] {
        write(&store, move |tx| tx.insert_validation(&v)).await;
    }
    let found = |release: &'static str, service: Option<&'static str>| {
        let store = store.clone();
        async move {
            read(&store, move |tx| {
                tx.latest_validation_of(release, Environment::STAGING, service)
            })
            .await
            .map(|v| v.id)
        }
    };
    assert_eq!(found("v1", None).await.as_deref(), Some("val_1"));
    assert_eq!(
        found("v1", Some("payments")).await.as_deref(),
        Some("val_3")
    );
    assert_eq!(found("v1", Some("checkout")).await, None);
    assert_eq!(found("v2", None).await, None);

    let rollbacks = [
        a_rollback("rbk_1", Some("payments"), "v5", RollbackStatus::Pending, 0),
        a_rollback(
            "rbk_2",
            Some("payments"),
            "v5",
            RollbackStatus::Succeeded,
            1,
        ),
        a_rollback("rbk_3", Some("payments"), "v5", RollbackStatus::Pending, 2),
        a_rollback("rbk_4", None, "v6", RollbackStatus::Executed, 3),
    ];
    for r in rollbacks {
        write(&store, move |tx| tx.insert_rollback(&r)).await;
    }
    let rollback = |service: Option<&'static str>, from: &'static str, executed: bool| {
        let store = store.clone();
        async move {
            read(&store, move |tx| {
                tx.latest_rollback_from(Environment::STAGING, service, from, executed)
            })
            .await
            .map(|r| r.id)
        }
    };
    assert_eq!(
        rollback(Some("payments"), "v5", false).await.as_deref(),
        Some("rbk_3")
    );
    assert_eq!(
        rollback(Some("payments"), "v5", true).await.as_deref(),
        Some("rbk_2")
    );
    assert_eq!(rollback(None, "v5", false).await, None);
    assert_eq!(rollback(None, "v6", true).await.as_deref(), Some("rbk_4"));
    assert_eq!(rollback(Some("payments"), "v6", false).await, None);
    // An update keeps the version it rolled back from findable.
    let mut executed = read(&store, |tx| tx.get_rollback("rbk_3")).await.unwrap();
    executed.status = RollbackStatus::Executing;
    write(&store, move |tx| tx.update_rollback(&executed)).await;
    assert_eq!(
        rollback(Some("payments"), "v5", true).await.as_deref(),
        Some("rbk_3")
    );
}

fn a_session(id: &str, principal: &str, created_min: i64) -> SessionRecord {
    SessionRecord {
        id: id.to_owned(),
        secret_hash: vec![9; 32],
        principal: principal.to_owned(),
        role: Role::EngLead,
        csrf_token: format!("csrf-{id}"),
        created_at: at(created_min),
        last_seen_at: at(created_min),
        expires_at: at(created_min + 720),
        revoked_at: None,
        revoked_by: None,
        token_id: None,
    }
}

fn a_login(state: u8, expires_min: i64) -> LoginRequestRecord {
    LoginRequestRecord {
        state_hash: vec![state; 32],
        browser_hash: vec![state.wrapping_add(100); 32],
        nonce: format!("nonce-{state}"),
        pkce_verifier: format!("verifier-{state}"),
        return_to: Some("/canaries".to_owned()),
        created_at: T0,
        expires_at: at(expires_min),
    }
}

/// A login's state is taken once, whatever happens next; expired logins are purged; sessions
/// belong to a principal with its role, record activity only forwards, and are revoked one by
/// one or all of a principal's at once.
pub async fn logins_are_single_use_and_sessions_revocable(db: &impl TestDatabase) {
    let store = db.open();
    write(&store, |tx| {
        tx.insert_login_request(&a_login(1, 10))?;
        tx.insert_login_request(&a_login(2, 5))
    })
    .await;
    assert_eq!(
        read(&store, |tx| tx.get_login_request(&[1; 32])).await,
        Some(a_login(1, 10)),
        "looking does not use it"
    );
    let taken = write(&store, |tx| tx.take_login_request(&[1; 32])).await;
    assert_eq!(taken, Some(a_login(1, 10)));
    assert_eq!(
        write(&store, |tx| tx.take_login_request(&[1; 32])).await,
        None,
        "a state is used once"
    );
    assert_eq!(read(&store, |tx| tx.count_login_requests()).await, 1);
    assert_eq!(write(&store, |tx| tx.purge_login_requests(at(6))).await, 1);
    assert_eq!(read(&store, |tx| tx.count_login_requests()).await, 0);
    assert_eq!(
        write(&store, |tx| tx.take_login_request(&[2; 32])).await,
        None
    );

    write(&store, |tx| {
        tx.insert_principal("alice@example.com", Role::EngLead, T0)?;
        tx.insert_session(&a_session("s1", "alice@example.com", 0))?;
        tx.insert_session(&a_session("s2", "alice@example.com", 1))
    })
    .await;
    let orphan = store
        .write(|tx| tx.insert_session(&a_session("s3", "nobody", 0)))
        .await;
    assert!(orphan.is_err(), "a session needs its principal: {orphan:?}");
    assert_eq!(
        read(&store, |tx| tx.get_session("s1")).await,
        Some(a_session("s1", "alice@example.com", 0))
    );
    assert!(write(&store, |tx| tx.touch_session("s1", at(5))).await);
    assert!(
        !write(&store, |tx| tx.touch_session("s1", at(4))).await,
        "activity never moves back"
    );
    assert_eq!(
        read(&store, |tx| tx.get_session("s1"))
            .await
            .unwrap()
            .last_seen_at,
        at(5)
    );
    let listed: Vec<String> = read(&store, |tx| tx.list_sessions())
        .await
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(listed, ["s2", "s1"], "newest first");

    assert!(write(&store, |tx| tx.revoke_session("s1", "cli:ops", at(6))).await);
    assert!(!write(&store, |tx| tx.revoke_session("s1", "cli:ops", at(7))).await);
    assert!(
        !write(&store, |tx| tx.touch_session("s1", at(8))).await,
        "a revoked session records no activity"
    );
    let revoked = read(&store, |tx| tx.get_session("s1")).await.unwrap();
    assert_eq!(
        (revoked.revoked_at, revoked.revoked_by.as_deref()),
        (Some(at(6)), Some("cli:ops"))
    );
    let of_alice = write(&store, |tx| {
        tx.revoke_sessions_of("alice@example.com", "sec", at(9))
    })
    .await;
    assert_eq!(
        of_alice.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        ["s2"],
        "only sessions still active"
    );
    assert!(
        read(&store, |tx| tx.get_session("s2"))
            .await
            .unwrap()
            .revoked_at
            .is_some()
    );
}

fn a_request(id: &str, created_min: i64, expires_min: i64) -> OverrideRequest {
    OverrideRequest {
        id: id.to_owned(),
        action: Action::CanaryStart,
        environment: Environment::PRODUCTION,
        service: Some("payments/api".to_owned()),
        release_id: Some("v1.2.3".to_owned()),
        reason: "CHG-1: hotfix".to_owned(),
        ttl_minutes: 30,
        requested_by: "dev".to_owned(),
        requested_by_role: Role::Developer,
        required: 2,
        approver_roles: vec![Role::SecurityTeam, Role::EngLead],
        status: RequestStatus::Pending,
        votes: Vec::new(),
        created_at: at(created_min),
        expires_at: at(expires_min),
        decided_at: None,
        override_id: None,
    }
}

fn a_vote(principal: &str, role: Role, vote: VoteKind, at_min: i64) -> Vote {
    Vote {
        principal: principal.to_owned(),
        role,
        vote,
        comment: (vote == VoteKind::Deny).then(|| format!("{principal} says no")),
        at: at(at_min),
        authenticated_by: "token".to_owned(),
    }
}

fn request_ids(list: &[OverrideRequest]) -> Vec<&str> {
    list.iter().map(|r| r.id.as_str()).collect()
}

/// Override requests (SPEC §19): stored with their votes in the order cast; listed newest
/// first by where they stand at `now` (a pending request past its time is expired, marked or
/// not); one vote per person; decided once; due for expiry while pending and past their time;
/// and at most one override per request.
pub async fn override_requests_votes_and_decisions(db: &impl TestDatabase) {
    let store = db.open();
    // r1 waits until 60 and already holds two votes (not in name order); r2 until 30; r3
    // until 120.
    let mut r1 = a_request("oreq_1", 0, 60);
    r1.votes = vec![
        a_vote("zed", Role::SecurityTeam, VoteKind::Approve, 1),
        a_vote("amy", Role::EngLead, VoteKind::Approve, 2),
    ];
    let r2 = a_request("oreq_2", 1, 30);
    let mut r3 = a_request("oreq_3", 2, 120);
    r3.service = None;
    r3.release_id = None;
    r3.approver_roles = vec![Role::SecurityTeam];
    let stored = [r1.clone(), r2.clone(), r3.clone()];
    write(&store, move |tx| {
        for r in &stored {
            tx.insert_override_request(r)?;
        }
        Ok(())
    })
    .await;
    assert_eq!(
        read(&store, |tx| tx.get_override_request("oreq_1")).await,
        Some(r1.clone())
    );
    assert_eq!(
        read(&store, |tx| tx.get_override_request("oreq_2")).await,
        Some(r2.clone())
    );
    assert_eq!(
        read(&store, |tx| tx.get_override_request("oreq_3")).await,
        Some(r3.clone())
    );
    assert_eq!(
        read(&store, |tx| tx.get_override_request("nope")).await,
        None
    );

    // A third vote, in order; a second vote by the same person is a conflict and changes nothing.
    let bob = a_vote("bob", Role::EngLead, VoteKind::Approve, 5);
    let saved = bob.clone();
    write(&store, move |tx| tx.insert_vote("oreq_1", &saved)).await;
    let again = a_vote("bob", Role::EngLead, VoteKind::Deny, 6);
    let refused = store
        .write(move |tx| tx.insert_vote("oreq_1", &again))
        .await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(_))),
        "{refused:?}"
    );
    let amy_again = a_vote("amy", Role::EngLead, VoteKind::Approve, 7);
    let refused = store
        .write(move |tx| tx.insert_vote("oreq_1", &amy_again))
        .await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(_))),
        "{refused:?}"
    );
    let found = read(&store, |tx| tx.get_override_request("oreq_1"))
        .await
        .unwrap();
    let voters: Vec<&str> = found.votes.iter().map(|v| v.principal.as_str()).collect();
    assert_eq!(voters, ["zed", "amy", "bob"], "in the order cast");
    assert_eq!(found.votes[2], bob);
    // Votes on another request by the same person are fine.
    let on_r3 = a_vote("bob", Role::SecurityTeam, VoteKind::Deny, 8);
    let saved = on_r3.clone();
    write(&store, move |tx| tx.insert_vote("oreq_3", &saved)).await;
    assert_eq!(
        read(&store, |tx| tx.get_override_request("oreq_3"))
            .await
            .unwrap()
            .votes,
        [on_r3]
    );

    // Listed newest first, by where each stands at `now`.
    let list = |status: Option<RequestStatus>, now: i64, limit: u32| {
        let store = store.clone();
        async move {
            read(&store, move |tx| {
                tx.list_override_requests(status, at(now), limit)
            })
            .await
        }
    };
    let all = list(None, 10, 100).await;
    assert_eq!(request_ids(&all), ["oreq_3", "oreq_2", "oreq_1"]);
    assert_eq!(all[2].votes.len(), 3, "listed with their votes");
    assert_eq!(all[0].votes.len(), 1);
    assert_eq!(request_ids(&list(None, 10, 1).await), ["oreq_3"]);
    assert_eq!(
        request_ids(&list(Some(RequestStatus::Pending), 29, 100).await),
        ["oreq_3", "oreq_2", "oreq_1"]
    );
    // r2's time ends at 30: expired from that instant, though nobody marked it.
    assert_eq!(
        request_ids(&list(Some(RequestStatus::Pending), 30, 100).await),
        ["oreq_3", "oreq_1"]
    );
    assert_eq!(
        request_ids(&list(Some(RequestStatus::Expired), 30, 100).await),
        ["oreq_2"]
    );
    assert!(list(Some(RequestStatus::Expired), 29, 100).await.is_empty());
    assert!(
        list(Some(RequestStatus::Approved), 30, 100)
            .await
            .is_empty()
    );

    // Due: pending and past their time, oldest deadline first, with their votes.
    let due = |now: i64, limit: u32| {
        let store = store.clone();
        async move { read(&store, move |tx| tx.override_requests_due(at(now), limit)).await }
    };
    assert!(due(29, 10).await.is_empty());
    assert_eq!(request_ids(&due(30, 10).await), ["oreq_2"]);
    let both = due(60, 10).await;
    assert_eq!(request_ids(&both), ["oreq_2", "oreq_1"]);
    assert_eq!(both[1].votes.len(), 3);
    assert_eq!(request_ids(&due(60, 1).await), ["oreq_2"]);

    // Decided once: a second decision of any kind is refused.
    let decide = |id: &'static str, status: RequestStatus, now: i64, made: Option<&'static str>| {
        let store = store.clone();
        async move {
            write(&store, move |tx| {
                tx.decide_override_request(id, status, at(now), made)
            })
            .await
        }
    };
    assert!(decide("oreq_2", RequestStatus::Expired, 31, None).await);
    assert!(!decide("oreq_2", RequestStatus::Expired, 32, None).await);
    assert!(!decide("oreq_2", RequestStatus::Approved, 32, Some("ovr_x")).await);
    assert!(!decide("nope", RequestStatus::Denied, 32, None).await);
    let expired = read(&store, |tx| tx.get_override_request("oreq_2"))
        .await
        .unwrap();
    assert_eq!(expired.status, RequestStatus::Expired);
    assert_eq!(expired.decided_at, Some(at(31)));
    assert_eq!(expired.override_id, None);

    assert!(decide("oreq_1", RequestStatus::Approved, 40, Some("ovr_1")).await);
    assert!(!decide("oreq_1", RequestStatus::Denied, 41, None).await);
    let approved = read(&store, |tx| tx.get_override_request("oreq_1"))
        .await
        .unwrap();
    assert_eq!(approved.status, RequestStatus::Approved);
    assert_eq!(approved.decided_at, Some(at(40)));
    assert_eq!(approved.override_id.as_deref(), Some("ovr_1"));
    assert_eq!(approved.votes.len(), 3);
    assert!(decide("oreq_3", RequestStatus::Denied, 42, None).await);

    // Decided requests are never due nor expired, however late.
    assert!(due(10_000, 10).await.is_empty());
    assert_eq!(
        request_ids(&list(Some(RequestStatus::Approved), 10_000, 100).await),
        ["oreq_1"]
    );
    assert_eq!(
        request_ids(&list(Some(RequestStatus::Denied), 10_000, 100).await),
        ["oreq_3"]
    );
    assert_eq!(
        request_ids(&list(Some(RequestStatus::Expired), 10_000, 100).await),
        ["oreq_2"]
    );
    assert!(
        list(Some(RequestStatus::Pending), 10_000, 100)
            .await
            .is_empty()
    );

    // One override per request, whoever inserts it; overrides made directly name none.
    let made = |id: &str, request: Option<&str>| Override {
        approver: "amy, bob".to_owned(),
        approvers: vec!["amy".to_owned(), "bob".to_owned()],
        request_id: request.map(str::to_owned),
        ..an_override(id, Action::CanaryStart, Environment::PRODUCTION, 60)
    };
    let first = made("ovr_1", Some("oreq_1"));
    write(&store, move |tx| tx.insert_override(&first)).await;
    let second = made("ovr_2", Some("oreq_1"));
    let refused = store.write(move |tx| tx.insert_override(&second)).await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(_))),
        "{refused:?}"
    );
    assert_eq!(read(&store, |tx| tx.get_override("ovr_2")).await, None);
    let direct = [made("ovr_3", None), made("ovr_4", None)];
    write(&store, move |tx| {
        for o in &direct {
            tx.insert_override(o)?;
        }
        Ok(())
    })
    .await;
    let found = read(&store, |tx| tx.get_override("ovr_1")).await.unwrap();
    assert_eq!(found.request_id.as_deref(), Some("oreq_1"));
    assert_eq!(found.approvers, ["amy", "bob"]);
    assert_eq!(found.approver, "amy, bob");
    assert_eq!(
        read(&store, |tx| tx.list_overrides(at(1), true, 100))
            .await
            .len(),
        3
    );

    // All of it survives reopening.
    drop(store);
    let store = db.open();
    let reopened = read(&store, |tx| tx.get_override_request("oreq_1"))
        .await
        .unwrap();
    assert_eq!(reopened, approved);
}

/// Votes cast in the same millisecond keep the order cast (SPEC §19: `approver` lists every
/// approver in order). Not yet registered per backend: the store reads votes back
/// `ORDER BY at, principal`, so this fails (see `main.rs`).
pub async fn votes_at_the_same_instant_keep_the_order_cast(db: &impl TestDatabase) {
    let store = db.open();
    let request = a_request("oreq_1", 0, 60);
    write(&store, move |tx| tx.insert_override_request(&request)).await;
    for name in ["zed", "amy", "mia"] {
        let vote = a_vote(name, Role::EngLead, VoteKind::Approve, 1);
        write(&store, move |tx| tx.insert_vote("oreq_1", &vote)).await;
    }
    let found = read(&store, |tx| tx.get_override_request("oreq_1"))
        .await
        .unwrap();
    let voters: Vec<&str> = found.votes.iter().map(|v| v.principal.as_str()).collect();
    assert_eq!(voters, ["zed", "amy", "mia"]);
}

fn a_freeze(id: &str, end_min: Option<i64>) -> deploy_safety_store::FreezeRecord {
    deploy_safety_store::FreezeRecord {
        freeze: deploy_safety_core::Freeze {
            id: id.to_owned(),
            name: "holidays".to_owned(),
            reason: "CHG-1 year end".to_owned(),
            environments: vec![Environment::PRODUCTION],
            services: Vec::new(),
            actions: vec![Action::CanaryStart],
            start: T0,
            end: end_min.map(at),
            schedule: None,
            hard: false,
            created_by: "alice".to_owned(),
            created_at: T0,
            ended_at: None,
            ended_by: None,
            end_reason: None,
        },
        announced_window_start: None,
        next_check_at: None,
    }
}

/// What a decision reads of the gate's inputs, in one write.
#[derive(Debug, PartialEq)]
struct Inputs {
    mode: SecurityMode,
    overrides: Vec<String>,
    incidents: Vec<String>,
    freezes: Vec<String>,
    token_revoked: Option<bool>,
}

fn read_inputs(tx: &mut dyn Tx, now: Timestamp) -> Result<Inputs, StoreError> {
    Ok(Inputs {
        mode: tx.gate_state()?.mode,
        overrides: tx
            .unexpired_overrides(Action::Rollback, Environment::PRODUCTION, now)?
            .into_iter()
            .map(|o| o.id)
            .collect(),
        incidents: tx.open_incidents()?.into_iter().map(|i| i.id).collect(),
        freezes: tx
            .freezes_for(Action::CanaryStart, Environment::PRODUCTION, None, now)?
            .into_iter()
            .map(|f| f.id)
            .collect(),
        token_revoked: tx.get_token("t1")?.map(|t| t.revoked_at.is_some()),
    })
}

/// A change made through a store handle.
type Change = Box<dyn Fn(&mut dyn Tx) -> Result<(), StoreError> + Send + Sync>;

/// A decision's audited read: the inputs, then the entry (as the gate does).
async fn decide(store: &Store, now: Timestamp) -> Inputs {
    write(store, move |tx| {
        let inputs = read_inputs(tx, now)?;
        tx.append_audit(draft(1, "ci", "security-gate.check", None), now)?;
        Ok(inputs)
    })
    .await
}

/// SPEC §22: the writer keeps the gate's inputs from batch to batch only while the database's
/// `state_version` says nothing changed them, so a change made through another handle on the
/// same database (another replica, the CLI) is seen by the very next write: the cache is never
/// stale.
pub async fn gate_inputs_changed_elsewhere_are_seen_by_the_next_write(db: &impl TestDatabase) {
    let store = db.open();
    let other = db.open();
    write(&other, |tx| {
        tx.insert_principal("ci", Role::Developer, T0)?;
        tx.insert_token(&a_token("t1", "ci"))
    })
    .await;
    let quiet = Inputs {
        mode: SecurityMode::Enforce,
        overrides: vec![],
        incidents: vec![],
        freezes: vec![],
        token_revoked: Some(false),
    };
    // Twice: the second is answered from what the first read.
    assert_eq!(decide(&store, at(1)).await, quiet);
    assert_eq!(decide(&store, at(1)).await, quiet);

    let steps: Vec<(&str, Change)> = vec![
        (
            "mode",
            Box::new(|tx| {
                tx.put_gate_state(&GateState {
                    mode: SecurityMode::Lockdown,
                    lockdown_reason: Some("INC-1".into()),
                    ..GateState::default()
                })
            }),
        ),
        (
            "override",
            Box::new(|tx| {
                tx.insert_override(&an_override(
                    "o1",
                    Action::Rollback,
                    Environment::PRODUCTION,
                    30,
                ))
            }),
        ),
        (
            "incident",
            Box::new(|tx| tx.insert_incident(&an_incident("i1", Severity::Critical, None, 1))),
        ),
        (
            "freeze",
            Box::new(|tx| tx.insert_freeze(&a_freeze("f1", Some(60)))),
        ),
        (
            "revocation",
            Box::new(|tx| tx.revoke_token("t1", at(2)).map(|_| ())),
        ),
        (
            "override revocation",
            Box::new(|tx| tx.revoke_override("o1", "eve", at(2)).map(|_| ())),
        ),
    ];
    let mut expected = quiet;
    for (what, change) in steps {
        let change = std::sync::Arc::new(change);
        write(&other, move |tx| change(tx)).await;
        match what {
            "mode" => expected.mode = SecurityMode::Lockdown,
            "override" => expected.overrides = vec!["o1".into()],
            "incident" => expected.incidents = vec!["i1".into()],
            "freeze" => expected.freezes = vec!["f1".into()],
            "revocation" => expected.token_revoked = Some(true),
            _ => expected.overrides = vec![],
        }
        assert_eq!(decide(&store, at(3)).await, expected, "after the {what}");
        assert_eq!(
            decide(&store, at(3)).await,
            expected,
            "again after the {what}"
        );
    }
    assert_eq!(verify(&store).await, 2 + 2 * 6);
}

/// Time only takes rows out of the time-bounded answers a batch keeps: an override or a freeze
/// past its end is gone at once, and a clock set back reads the database again.
pub async fn kept_inputs_follow_the_clock(db: &impl TestDatabase) {
    let store = db.open();
    write(&store, |tx| {
        tx.insert_override(&an_override(
            "o1",
            Action::Rollback,
            Environment::PRODUCTION,
            5,
        ))?;
        tx.insert_freeze(&a_freeze("f1", Some(5)))
    })
    .await;
    let at_4 = decide(&store, at(4)).await;
    assert_eq!(
        (at_4.overrides, at_4.freezes),
        (vec!["o1".to_owned()], vec!["f1".to_owned()])
    );
    let at_6 = decide(&store, at(6)).await;
    assert_eq!(
        (at_6.overrides, at_6.freezes),
        (vec![], vec![]),
        "both ended at minute 5"
    );
    let back = decide(&store, at(4)).await;
    assert_eq!(
        (back.overrides, back.freezes),
        (vec!["o1".to_owned()], vec!["f1".to_owned()]),
        "read at minute 6, the answer does not serve minute 4"
    );
}

/// Inside one batch, a job sees what the jobs before it changed, and nothing of a job that failed
/// after it changed an input and appended its entry.
pub async fn jobs_of_one_batch_see_each_others_changes(db: &impl TestDatabase) {
    let store = db.open();
    decide(&store, at(1)).await;
    let (release, hold) = std::sync::mpsc::channel::<()>();
    let (started, running) = tokio::sync::oneshot::channel::<()>();
    let first = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .write(move |_tx| {
                    started.send(()).ok();
                    hold.recv().ok();
                    Ok(())
                })
                .await
        })
    };
    running.await.unwrap();
    let lockdown = GateState {
        mode: SecurityMode::Lockdown,
        lockdown_reason: Some("INC-1".into()),
        ..GateState::default()
    };
    // Queued one after another, so the batch runs them in this order.
    let queued = |n: usize| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let store = store.clone();
        async move {
            while store.queued_writes() < n {
                assert!(std::time::Instant::now() < deadline, "writes never queued");
                tokio::task::yield_now().await;
            }
        }
    };
    let decide_later = |now: Timestamp| {
        let store = store.clone();
        tokio::spawn(async move { decide(&store, now).await })
    };
    let seen_before = decide_later(at(2));
    queued(1).await;
    let failed = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .write(move |tx| {
                    tx.append_audit(draft(2, "fail", "security-gate.mode.set", None), at(2))?;
                    tx.put_gate_state(&lockdown)?;
                    tx.insert_incident(&an_incident("i9", Severity::Critical, None, 2))?;
                    Err::<(), _>(StoreError::Database("refused".into()))
                })
                .await
        })
    };
    queued(2).await;
    let seen_after_failure = decide_later(at(2));
    queued(3).await;
    let changed = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .write(move |tx| {
                    tx.insert_override(&an_override(
                        "o1",
                        Action::Rollback,
                        Environment::PRODUCTION,
                        30,
                    ))?;
                    tx.append_audit(draft(3, "lead", "override.create", None), at(2))
                })
                .await
        })
    };
    queued(4).await;
    let seen_after_change = decide_later(at(2));
    queued(5).await;
    let commits = store.stats().commits;
    release.send(()).unwrap();
    first.await.unwrap().unwrap();
    let before = seen_before.await.unwrap();
    assert!(failed.await.unwrap().is_err());
    let after_failure = seen_after_failure.await.unwrap();
    changed.await.unwrap().unwrap();
    let after_change = seen_after_change.await.unwrap();
    assert_eq!(
        store.stats().commits - commits,
        2,
        "the held write, then one batch of five"
    );
    assert_eq!(before, after_failure, "the failed job left nothing behind");
    assert_eq!(
        (after_failure.mode, after_failure.incidents),
        (SecurityMode::Enforce, vec![])
    );
    assert_eq!(after_change.overrides, vec!["o1".to_owned()]);
    assert_eq!(
        verify(&store).await,
        5,
        "four decisions and the override; not the failure"
    );
}
