//! The SQLite schema's migrations.

use crate::migrations::Migration;

pub(super) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "gate_tokens_overrides_audit",
        sql: include_str!("../../migrations/sqlite/0001_gate_tokens_overrides_audit.sql"),
    },
    Migration {
        version: 2,
        name: "incidents_validations_probes",
        sql: include_str!("../../migrations/sqlite/0002_incidents_validations_probes.sql"),
    },
    Migration {
        version: 3,
        name: "canaries_rollbacks_events",
        sql: include_str!("../../migrations/sqlite/0003_canaries_rollbacks_events.sql"),
    },
    Migration {
        version: 4,
        name: "audit_checkpoints",
        sql: include_str!("../../migrations/sqlite/0004_audit_checkpoints.sql"),
    },
    Migration {
        version: 5,
        name: "soaks",
        sql: include_str!("../../migrations/sqlite/0005_soaks.sql"),
    },
    Migration {
        version: 6,
        name: "services_freezes",
        sql: include_str!("../../migrations/sqlite/0006_services_freezes.sql"),
    },
    Migration {
        version: 7,
        name: "github_requests",
        sql: include_str!("../../migrations/sqlite/0007_github_requests.sql"),
    },
    Migration {
        version: 8,
        name: "sessions",
        sql: include_str!("../../migrations/sqlite/0008_sessions.sql"),
    },
    Migration {
        version: 9,
        name: "override_requests",
        sql: include_str!("../../migrations/sqlite/0009_override_requests.sql"),
    },
    Migration {
        version: 10,
        name: "session_token",
        sql: include_str!("../../migrations/sqlite/0010_session_token.sql"),
    },
    Migration {
        version: 11,
        name: "state_version",
        sql: include_str!("../../migrations/sqlite/0011_state_version.sql"),
    },
];
