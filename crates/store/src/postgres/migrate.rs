//! The PostgreSQL schema's migrations.

use crate::migrations::Migration;

pub(super) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "gate_tokens_overrides_audit",
        sql: include_str!("../../migrations/postgres/0001_gate_tokens_overrides_audit.sql"),
    },
    Migration {
        version: 2,
        name: "incidents_validations_probes",
        sql: include_str!("../../migrations/postgres/0002_incidents_validations_probes.sql"),
    },
    Migration {
        version: 3,
        name: "canaries_rollbacks_events",
        sql: include_str!("../../migrations/postgres/0003_canaries_rollbacks_events.sql"),
    },
    Migration {
        version: 4,
        name: "leader",
        sql: include_str!("../../migrations/postgres/0004_leader.sql"),
    },
    Migration {
        version: 5,
        name: "audit_checkpoints",
        sql: include_str!("../../migrations/postgres/0005_audit_checkpoints.sql"),
    },
    Migration {
        version: 6,
        name: "soaks",
        sql: include_str!("../../migrations/postgres/0006_soaks.sql"),
    },
    Migration {
        version: 7,
        name: "services_freezes",
        sql: include_str!("../../migrations/postgres/0007_services_freezes.sql"),
    },
    Migration {
        version: 8,
        name: "github_requests",
        sql: include_str!("../../migrations/postgres/0008_github_requests.sql"),
    },
    Migration {
        version: 9,
        name: "sessions",
        sql: include_str!("../../migrations/postgres/0009_sessions.sql"),
    },
    Migration {
        version: 10,
        name: "override_requests",
        sql: include_str!("../../migrations/postgres/0010_override_requests.sql"),
    },
    Migration {
        version: 11,
        name: "session_token",
        sql: include_str!("../../migrations/postgres/0011_session_token.sql"),
    },
    Migration {
        version: 12,
        name: "state_version",
        sql: include_str!("../../migrations/postgres/0012_state_version.sql"),
    },
];
