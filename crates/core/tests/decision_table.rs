//! Table-driven tests of the gate decision (SPEC §3, §4, §15, §16) and of the gate's state
//! changes (SPEC §5).
//!
//! Every row names the SPEC step it exercises; a failing row is reported by its description.

use std::sync::Arc;

use deploy_safety_core::{
    Action, ApprovalPolicy, DEFAULT_ACTIONS, Decision, Environment, EnvironmentSpec, Environments,
    Freeze, FreezeIndex, GateInputs, GateRequest, GateState, KnownEnvironment, LockdownTrigger,
    ModeChangeError, OpenIncident, Override, OverrideIndex, Reason, ReasonCode, Role, Schedule,
    SecurityMode, Severity, ThreatLevel, Tier, Timestamp, change_mode, change_threat_level, decide,
    trigger_lockdown,
};

const NOW: Timestamp = Timestamp::from_unix_millis(1_700_000_000_000);
const LOCKDOWN_REASON: &str = "suspected credential leak in CI";
const MINUTE: i64 = 60_000;

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

/// An override as the table describes it: times are milliseconds relative to `NOW`.
#[derive(Clone, Debug)]
struct Ov {
    id: &'static str,
    action: Action,
    env: Environment,
    release: Option<&'static str>,
    service: Option<&'static str>,
    created: i64,
    expires: i64,
    revoked: bool,
}

/// An active, unbound override created ten minutes ago that expires in fifty.
fn ov(id: &'static str, action: Action, env: Environment) -> Ov {
    Ov {
        id,
        action,
        env,
        release: None,
        service: None,
        created: -10 * MINUTE,
        expires: 50 * MINUTE,
        revoked: false,
    }
}

impl Ov {
    fn bound(self, release: &'static str) -> Self {
        Ov {
            release: Some(release),
            ..self
        }
    }
    /// Bound to a service (SPEC §15): covers only requests naming it.
    fn svc(self, service: &'static str) -> Self {
        Ov {
            service: Some(service),
            ..self
        }
    }
    fn created(self, created: i64) -> Self {
        Ov { created, ..self }
    }
    fn expires(self, expires: i64) -> Self {
        Ov { expires, ..self }
    }
    fn revoked(self) -> Self {
        Ov {
            revoked: true,
            ..self
        }
    }
    fn build(&self) -> Override {
        Override {
            service: self.service.map(str::to_owned),
            id: self.id.to_owned(),
            action: self.action,
            environment: self.env,
            release_id: self.release.map(str::to_owned),
            reason: "approved change".to_owned(),
            approver: "alice".to_owned(),
            approvers: vec!["alice".to_owned()],
            approver_role: Role::SecurityTeam,
            request_id: None,
            created_at: NOW.plus_millis(self.created),
            expires_at: NOW.plus_millis(self.expires),
            revoked_at: self.revoked.then(|| NOW.plus_millis(-MINUTE)),
            revoked_by: self.revoked.then(|| "alice".to_owned()),
            use_count: 0,
            last_used_at: None,
        }
    }
}

/// A freeze as the table describes it (SPEC §16): times are milliseconds relative to `NOW`.
#[derive(Clone, Debug)]
struct Fz {
    id: &'static str,
    hard: bool,
    envs: Vec<Environment>,
    services: Vec<&'static str>,
    actions: Vec<Action>,
    start: i64,
    end: Option<i64>,
    ended: Option<i64>,
    schedule: Option<(&'static str, i64, &'static str)>,
}

/// A soft one-off freeze of every environment and service, for the default actions (canary
/// start and promote), in force from ten minutes ago until fifty minutes from now.
fn fz(id: &'static str) -> Fz {
    Fz {
        id,
        hard: false,
        envs: Vec::new(),
        services: Vec::new(),
        actions: DEFAULT_ACTIONS.to_vec(),
        start: -10 * MINUTE,
        end: Some(50 * MINUTE),
        ended: None,
        schedule: None,
    }
}

/// The reason a freeze of the table gives; a FREEZE message must quote it.
fn freeze_reason(id: &str) -> String {
    format!("{id}: year-end change freeze")
}

impl Fz {
    fn hard(self) -> Self {
        Fz { hard: true, ..self }
    }
    fn envs(self, envs: impl IntoIterator<Item = Environment>) -> Self {
        Fz {
            envs: envs.into_iter().collect(),
            ..self
        }
    }
    fn svcs(self, services: impl IntoIterator<Item = &'static str>) -> Self {
        Fz {
            services: services.into_iter().collect(),
            ..self
        }
    }
    fn acts(self, actions: impl IntoIterator<Item = Action>) -> Self {
        Fz {
            actions: actions.into_iter().collect(),
            ..self
        }
    }
    /// A one-off window `[start, end)`, relative to `NOW`; `end: None` lasts until ended by hand.
    fn window(self, start: i64, end: Option<i64>) -> Self {
        Fz { start, end, ..self }
    }
    fn ended(self, at: i64) -> Self {
        Fz {
            ended: Some(at),
            ..self
        }
    }
    /// Recurring: windows opening at each `cron` occurrence in `zone`, lasting `minutes`; the
    /// freeze itself starts thirty days ago and has no end.
    fn every(self, cron: &'static str, minutes: i64, zone: &'static str) -> Self {
        Fz {
            schedule: Some((cron, minutes, zone)),
            start: -30 * 24 * 60 * MINUTE,
            end: None,
            ..self
        }
    }
    fn build(&self) -> Freeze {
        Freeze {
            id: self.id.to_owned(),
            name: format!("freeze {}", self.id),
            reason: freeze_reason(self.id),
            environments: self.envs.clone(),
            services: self.services.iter().map(|s| (*s).to_owned()).collect(),
            actions: self.actions.clone(),
            start: NOW.plus_millis(self.start),
            end: self.end.map(|e| NOW.plus_millis(e)),
            schedule: self.schedule.map(|(cron, minutes, zone)| {
                Schedule::parse(cron, minutes, zone).expect("valid schedule")
            }),
            hard: self.hard,
            created_by: "alice".to_owned(),
            created_at: NOW.plus_millis(self.start),
            ended_at: self.ended.map(|e| NOW.plus_millis(e)),
            ended_by: self.ended.map(|_| "alice".to_owned()),
            end_reason: self.ended.map(|_| "done".to_owned()),
        }
    }
}

fn env_named(name: &str) -> Environment {
    Environment::parse(name).expect("valid environment name")
}

/// A settings file listing, beside the built-in names, `production-eu` (tier production) and
/// `qa` (tier staging) (SPEC §15).
fn configured() -> Environments {
    let spec = |name: &str, tier| EnvironmentSpec {
        name: env_named(name),
        tier,
        promotes_from: Vec::new(),
    };
    Environments::new(vec![
        spec("staging", Tier::Staging),
        spec("qa", Tier::Staging),
        spec("production", Tier::Production),
        spec("production-eu", Tier::Production),
    ])
    .expect("valid environments")
}

/// `name` with its tier: a built-in environment, else one of [`configured`].
fn resolve(name: Environment) -> KnownEnvironment {
    Environments::built_in()
        .resolve(name)
        .or_else(|| configured().resolve(name))
        .expect("a known environment")
}

fn inc(id: &'static str, severity: Severity, env: Option<Environment>) -> OpenIncident {
    OpenIncident {
        id: id.to_owned(),
        title: format!("incident {id}"),
        severity,
        environment: env,
    }
}

fn state(mode: SecurityMode, threat: ThreatLevel) -> GateState {
    GateState {
        mode,
        threat_level: threat,
        lockdown_reason: (mode == SecurityMode::Lockdown).then(|| LOCKDOWN_REASON.to_owned()),
        lockdown_since: (mode == SecurityMode::Lockdown).then_some(NOW.plus_minutes(-5)),
        ..GateState::default()
    }
}

/// One row of the decision table.
#[derive(Clone, Debug)]
struct Row {
    desc: &'static str,
    mode: SecurityMode,
    threat: ThreatLevel,
    env: Environment,
    action: Action,
    release: Option<&'static str>,
    start_override: Option<&'static str>,
    service: Option<&'static str>,
    overrides: Vec<Ov>,
    incidents: Vec<OpenIncident>,
    freezes: Vec<Fz>,
    allowed: bool,
    reason: ReasonCode,
    would_block: bool,
    override_id: Option<&'static str>,
    /// For a FREEZE row: the freeze the message must name.
    names: Option<&'static str>,
}

fn row(
    desc: &'static str,
    mode: SecurityMode,
    threat: ThreatLevel,
    env: Environment,
    action: Action,
) -> Row {
    Row {
        desc,
        mode,
        threat,
        env,
        action,
        release: None,
        start_override: None,
        service: None,
        overrides: Vec::new(),
        incidents: Vec::new(),
        freezes: Vec::new(),
        allowed: false,
        reason: ReasonCode::Allowed,
        would_block: false,
        override_id: None,
        names: None,
    }
}

impl Row {
    fn ovs(self, overrides: impl IntoIterator<Item = Ov>) -> Self {
        Row {
            overrides: overrides.into_iter().collect(),
            ..self
        }
    }
    fn incs(self, incidents: impl IntoIterator<Item = OpenIncident>) -> Self {
        Row {
            incidents: incidents.into_iter().collect(),
            ..self
        }
    }
    fn frz(self, freezes: impl IntoIterator<Item = Fz>) -> Self {
        Row {
            freezes: freezes.into_iter().collect(),
            ..self
        }
    }
    /// The request names this service (SPEC §15).
    fn svc(self, service: &'static str) -> Self {
        Row {
            service: Some(service),
            ..self
        }
    }
    /// Expected: denied (or, in monitor mode, would-block) by a freeze whose message names `id`.
    fn frozen_by(self, id: &'static str) -> Self {
        let monitor = self.mode == SecurityMode::Monitor;
        Row {
            allowed: monitor,
            reason: ReasonCode::Freeze,
            would_block: monitor,
            override_id: None,
            names: Some(id),
            ..self
        }
    }
    fn rel(self, release: &'static str) -> Self {
        Row {
            release: Some(release),
            ..self
        }
    }
    fn start(self, id: &'static str) -> Self {
        Row {
            start_override: Some(id),
            ..self
        }
    }
    /// Expected: (allowed, reason, wouldBlock), no override used.
    fn expect(self, allowed: bool, reason: ReasonCode, would_block: bool) -> Self {
        Row {
            allowed,
            reason,
            would_block,
            override_id: None,
            ..self
        }
    }
    /// Expected: allowed by this override (enforce verdict `OVERRIDE`, not a monitor replacement).
    fn by(self, id: &'static str) -> Self {
        Row {
            allowed: true,
            reason: ReasonCode::Override,
            would_block: false,
            override_id: Some(id),
            ..self
        }
    }

    fn decide(&self) -> Decision {
        self.decide_under(&ApprovalPolicy::NONE)
    }

    /// As [`Row::decide`], with a two-person rule policy (SPEC §19).
    fn decide_under(&self, approvals: &ApprovalPolicy) -> Decision {
        let state = state(self.mode, self.threat);
        let index = OverrideIndex::new(self.overrides.iter().map(Ov::build));
        let freezes = FreezeIndex::active_at(self.freezes.iter().map(|f| Arc::new(f.build())), NOW);
        let request = GateRequest {
            service: self.service,
            action: self.action,
            environment: resolve(self.env),
            release_id: self.release,
            start_override_id: self.start_override,
        };
        let inputs = GateInputs {
            freezes: &freezes,
            approvals,
            state: &state,
            overrides: &index,
            open_incidents: &self.incidents,
            now: NOW,
        };
        decide(&request, &inputs)
    }
}

// ---------------------------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------------------------

fn table() -> Vec<Row> {
    use Action::{CanaryPromote as CP, CanaryStart as CS, LoadShed as LS, Rollback as RB};
    const P: Environment = Environment::PRODUCTION;
    const S: Environment = Environment::STAGING;
    use ReasonCode::{
        Allowed as ALLOWED, CriticalIncident as CRITICAL_INCIDENT, Lockdown as LOCKDOWN,
        OverrideRequired as OVERRIDE_REQUIRED, ThreatLevel as THREAT_LEVEL,
    };
    use SecurityMode::{Enforce as E, Lockdown as L, Monitor as M};
    use Severity::{Critical as Crit, High as SevHigh, Low as SevLow, Medium as SevMed};
    use ThreatLevel::{
        Critical as TCrit, High as THigh, Low as TLow, Medium as TMed, None as TNone,
    };

    vec![
        // ---- Step 1: lockdown denies everything; overrides are not honored. ----
        row("1 lockdown: staging canary start", L, TNone, S, CS).expect(false, LOCKDOWN, false),
        row("1 lockdown: staging rollback", L, TNone, S, RB).expect(false, LOCKDOWN, false),
        row("1 lockdown: staging loadshed", L, TNone, S, LS).expect(false, LOCKDOWN, false),
        row("1 lockdown: production promote", L, TNone, P, CP).expect(false, LOCKDOWN, false),
        row(
            "1 lockdown: matching active override for production loadshed not honored",
            L,
            TNone,
            P,
            LS,
        )
        .ovs([ov("o-ls", LS, P)])
        .expect(false, LOCKDOWN, false),
        row(
            "1 lockdown: matching active override for staging canary start not honored",
            L,
            TNone,
            S,
            CS,
        )
        .ovs([ov("o-cs", CS, S)])
        .expect(false, LOCKDOWN, false),
        row(
            "1 lockdown: release-bound matching override not honored",
            L,
            TNone,
            P,
            RB,
        )
        .rel("v1")
        .ovs([ov("o-rb", RB, P).bound("v1")])
        .expect(false, LOCKDOWN, false),
        row(
            "1 lockdown: start override fallback for promote not honored",
            L,
            TNone,
            P,
            CP,
        )
        .start("o-start")
        .ovs([ov("o-start", CS, P)])
        .expect(false, LOCKDOWN, false),
        row(
            "1 lockdown precedes critical threat (with override)",
            L,
            TCrit,
            P,
            CS,
        )
        .ovs([ov("o-cs", CS, P)])
        .expect(false, LOCKDOWN, false),
        row(
            "1 lockdown precedes high threat on rollback (with override)",
            L,
            THigh,
            P,
            RB,
        )
        .ovs([ov("o-rb", RB, P)])
        .expect(false, LOCKDOWN, false),
        row(
            "1 lockdown precedes critical incident (with override)",
            L,
            TNone,
            S,
            CP,
        )
        .ovs([ov("o-cp", CP, S)])
        .incs([inc("i1", Crit, Some(S))])
        .expect(false, LOCKDOWN, false),
        row(
            "1 lockdown precedes threat + incident + override together",
            L,
            TCrit,
            P,
            CP,
        )
        .ovs([ov("o-cp", CP, P), ov("o-start", CS, P)])
        .start("o-start")
        .incs([inc("i1", Crit, None)])
        .expect(false, LOCKDOWN, false),
        // ---- Step 2.1: high/critical threat stops canary start and promote; no override lifts it. ----
        row("2.1 high threat: staging canary start", E, THigh, S, CS).expect(
            false,
            THREAT_LEVEL,
            false,
        ),
        row("2.1 critical threat: staging promote", E, TCrit, S, CP).expect(
            false,
            THREAT_LEVEL,
            false,
        ),
        row(
            "2.1 high threat: production canary start, override does not lift",
            E,
            THigh,
            P,
            CS,
        )
        .ovs([ov("o-cs", CS, P)])
        .expect(false, THREAT_LEVEL, false),
        row(
            "2.1 critical threat: production promote, direct override does not lift",
            E,
            TCrit,
            P,
            CP,
        )
        .ovs([ov("o-cp", CP, P)])
        .expect(false, THREAT_LEVEL, false),
        row(
            "2.1 high threat: promote, start override fallback does not lift",
            E,
            THigh,
            S,
            CP,
        )
        .ovs([ov("o-start", CS, S)])
        .start("o-start")
        .expect(false, THREAT_LEVEL, false),
        row(
            "2.1 high threat: staging canary start, staging override does not lift",
            E,
            THigh,
            S,
            CS,
        )
        .ovs([ov("o-cs", CS, S)])
        .expect(false, THREAT_LEVEL, false),
        row(
            "2.1 threat precedes production override requirement",
            E,
            THigh,
            P,
            CS,
        )
        .expect(false, THREAT_LEVEL, false),
        row("2.1 threat precedes critical incident", E, TCrit, S, CS)
            .ovs([ov("o-cs", CS, S)])
            .incs([inc("i1", Crit, Some(S))])
            .expect(false, THREAT_LEVEL, false),
        row(
            "2.1 medium threat: staging canary start allowed",
            E,
            TMed,
            S,
            CS,
        )
        .expect(true, ALLOWED, false),
        row("2.1 low threat: staging promote allowed", E, TLow, S, CP).expect(true, ALLOWED, false),
        row(
            "2.1 high threat: staging rollback not stopped",
            E,
            THigh,
            S,
            RB,
        )
        .expect(true, ALLOWED, false),
        row(
            "2.1 critical threat: staging rollback not stopped",
            E,
            TCrit,
            S,
            RB,
        )
        .expect(true, ALLOWED, false),
        row(
            "2.1 critical threat: staging loadshed not stopped",
            E,
            TCrit,
            S,
            LS,
        )
        .expect(true, ALLOWED, false),
        row(
            "2.1 critical threat: production rollback with override allowed",
            E,
            TCrit,
            P,
            RB,
        )
        .ovs([ov("o-rb", RB, P)])
        .by("o-rb"),
        row(
            "2.1 high threat: production loadshed with override allowed",
            E,
            THigh,
            P,
            LS,
        )
        .ovs([ov("o-ls", LS, P)])
        .by("o-ls"),
        row(
            "2.1 high threat: production loadshed without override -> override required",
            E,
            THigh,
            P,
            LS,
        )
        .expect(false, OVERRIDE_REQUIRED, false),
        row(
            "2.1 medium threat: production canary start with override allowed",
            E,
            TMed,
            P,
            CS,
        )
        .ovs([ov("o-cs", CS, P)])
        .by("o-cs"),
        // ---- Step 2.2: production requires an active override for (action, environment). ----
        row(
            "2.2 production canary start without override",
            E,
            TNone,
            P,
            CS,
        )
        .expect(false, OVERRIDE_REQUIRED, false),
        row("2.2 production promote without override", E, TNone, P, CP).expect(
            false,
            OVERRIDE_REQUIRED,
            false,
        ),
        row("2.2 production rollback without override", E, TNone, P, RB).expect(
            false,
            OVERRIDE_REQUIRED,
            false,
        ),
        row("2.2 production loadshed without override", E, TNone, P, LS).expect(
            false,
            OVERRIDE_REQUIRED,
            false,
        ),
        row(
            "2.2 production canary start, override is for staging",
            E,
            TNone,
            P,
            CS,
        )
        .ovs([ov("o-s", CS, S)])
        .expect(false, OVERRIDE_REQUIRED, false),
        row(
            "2.2 production canary start, override is for another action",
            E,
            TNone,
            P,
            CS,
        )
        .ovs([ov("o-cp", CP, P), ov("o-rb", RB, P), ov("o-ls", LS, P)])
        .expect(false, OVERRIDE_REQUIRED, false),
        row("2.2 production canary start with override", E, TNone, P, CS)
            .ovs([ov("o-cs", CS, P)])
            .by("o-cs"),
        row(
            "2.2 production promote with direct override",
            E,
            TNone,
            P,
            CP,
        )
        .ovs([ov("o-cp", CP, P)])
        .by("o-cp"),
        row("2.2 production rollback with override", E, TNone, P, RB)
            .ovs([ov("o-rb", RB, P)])
            .by("o-rb"),
        row("2.2 production loadshed with override", E, TNone, P, LS)
            .ovs([ov("o-ls", LS, P)])
            .by("o-ls"),
        row(
            "2.2 production override picked among unrelated overrides",
            E,
            TNone,
            P,
            RB,
        )
        .ovs([ov("o-s", RB, S), ov("o-rb", RB, P), ov("o-cs", CS, P)])
        .by("o-rb"),
        row(
            "2.2 production with override and critical incident -> override",
            E,
            TNone,
            P,
            CS,
        )
        .ovs([ov("o-cs", CS, P)])
        .incs([inc("i1", Crit, Some(P))])
        .by("o-cs"),
        row(
            "2.2 production without override and critical incident -> override required first",
            E,
            TNone,
            P,
            CS,
        )
        .incs([inc("i1", Crit, Some(P))])
        .expect(false, OVERRIDE_REQUIRED, false),
        row(
            "2.2 production rollback with critical incident, override",
            E,
            TNone,
            P,
            RB,
        )
        .ovs([ov("o-rb", RB, P)])
        .incs([inc("i1", Crit, None)])
        .by("o-rb"),
        // ---- Step 2.3: critical incident requires an override for canary start/promote, even in staging. ----
        row(
            "2.3 staging canary start, critical incident in staging",
            E,
            TNone,
            S,
            CS,
        )
        .incs([inc("i1", Crit, Some(S))])
        .expect(false, CRITICAL_INCIDENT, false),
        row(
            "2.3 staging promote, critical incident in staging",
            E,
            TNone,
            S,
            CP,
        )
        .incs([inc("i1", Crit, Some(S))])
        .expect(false, CRITICAL_INCIDENT, false),
        row(
            "2.3 staging canary start, critical incident for all environments",
            E,
            TNone,
            S,
            CS,
        )
        .incs([inc("i1", Crit, None)])
        .expect(false, CRITICAL_INCIDENT, false),
        row(
            "2.3 staging promote, critical incident for all environments",
            E,
            TLow,
            S,
            CP,
        )
        .incs([inc("i1", Crit, None)])
        .expect(false, CRITICAL_INCIDENT, false),
        row(
            "2.3 staging canary start, critical incident in production only",
            E,
            TNone,
            S,
            CS,
        )
        .incs([inc("i1", Crit, Some(P))])
        .expect(true, ALLOWED, false),
        row(
            "2.3 staging canary start, high incident in staging",
            E,
            TNone,
            S,
            CS,
        )
        .incs([inc("i1", SevHigh, Some(S))])
        .expect(true, ALLOWED, false),
        row(
            "2.3 staging promote, low/medium/high incidents for all",
            E,
            TNone,
            S,
            CP,
        )
        .incs([
            inc("i1", SevLow, None),
            inc("i2", SevMed, None),
            inc("i3", SevHigh, None),
        ])
        .expect(true, ALLOWED, false),
        row(
            "2.3 staging canary start, critical among non-critical incidents",
            E,
            TNone,
            S,
            CS,
        )
        .incs([
            inc("i1", SevHigh, Some(S)),
            inc("i2", Crit, Some(P)),
            inc("i3", Crit, Some(S)),
        ])
        .expect(false, CRITICAL_INCIDENT, false),
        row(
            "2.3 staging canary start, critical incident, staging override",
            E,
            TNone,
            S,
            CS,
        )
        .ovs([ov("o-cs", CS, S)])
        .incs([inc("i1", Crit, Some(S))])
        .by("o-cs"),
        row(
            "2.3 staging promote, critical incident, direct override",
            E,
            TNone,
            S,
            CP,
        )
        .ovs([ov("o-cp", CP, S)])
        .incs([inc("i1", Crit, None)])
        .by("o-cp"),
        row(
            "2.3 staging promote, critical incident, start override fallback",
            E,
            TNone,
            S,
            CP,
        )
        .ovs([ov("o-start", CS, S)])
        .start("o-start")
        .incs([inc("i1", Crit, Some(S))])
        .by("o-start"),
        row(
            "2.3 staging canary start, critical incident, override only for production",
            E,
            TNone,
            S,
            CS,
        )
        .ovs([ov("o-cs", CS, P)])
        .incs([inc("i1", Crit, None)])
        .expect(false, CRITICAL_INCIDENT, false),
        row(
            "2.3 staging canary start, critical incident, override for another action",
            E,
            TNone,
            S,
            CS,
        )
        .ovs([ov("o-rb", RB, S), ov("o-cp", CP, S)])
        .incs([inc("i1", Crit, Some(S))])
        .expect(false, CRITICAL_INCIDENT, false),
        row(
            "2.3 staging canary start, critical incident, override expiring exactly now",
            E,
            TNone,
            S,
            CS,
        )
        .ovs([ov("o-cs", CS, S).expires(0)])
        .incs([inc("i1", Crit, Some(S))])
        .expect(false, CRITICAL_INCIDENT, false),
        row(
            "2.3 staging rollback not affected by critical incident",
            E,
            TNone,
            S,
            RB,
        )
        .incs([inc("i1", Crit, Some(S))])
        .expect(true, ALLOWED, false),
        row(
            "2.3 staging loadshed not affected by critical incident",
            E,
            TNone,
            S,
            LS,
        )
        .incs([inc("i1", Crit, None)])
        .expect(true, ALLOWED, false),
        // ---- Step 2.4: otherwise allow; an unneeded override is not "used". ----
        row("2.4 staging canary start allowed", E, TNone, S, CS).expect(true, ALLOWED, false),
        row("2.4 staging promote allowed", E, TNone, S, CP).expect(true, ALLOWED, false),
        row("2.4 staging rollback allowed", E, TNone, S, RB).expect(true, ALLOWED, false),
        row("2.4 staging loadshed allowed", E, TNone, S, LS).expect(true, ALLOWED, false),
        row(
            "2.4 staging canary start with unneeded override -> ALLOWED, no override",
            E,
            TNone,
            S,
            CS,
        )
        .ovs([ov("o-cs", CS, S)])
        .expect(true, ALLOWED, false),
        row(
            "2.4 staging rollback with unneeded override and critical incident -> ALLOWED",
            E,
            TNone,
            S,
            RB,
        )
        .ovs([ov("o-rb", RB, S)])
        .incs([inc("i1", Crit, Some(S))])
        .expect(true, ALLOWED, false),
        // ---- Step 3: monitor mode allows and records the replaced verdict. ----
        row(
            "3 monitor: staging canary start allowed, nothing to block",
            M,
            TNone,
            S,
            CS,
        )
        .expect(true, ALLOWED, false),
        row("3 monitor: staging rollback allowed", M, TCrit, S, RB).expect(true, ALLOWED, false),
        row(
            "3 monitor: production without override would block",
            M,
            TNone,
            P,
            CS,
        )
        .expect(true, OVERRIDE_REQUIRED, true),
        row(
            "3 monitor: production loadshed without override would block",
            M,
            TNone,
            P,
            LS,
        )
        .expect(true, OVERRIDE_REQUIRED, true),
        row(
            "3 monitor: high threat would block canary start",
            M,
            THigh,
            S,
            CS,
        )
        .expect(true, THREAT_LEVEL, true),
        row(
            "3 monitor: critical threat would block promote even with override",
            M,
            TCrit,
            P,
            CP,
        )
        .ovs([ov("o-cp", CP, P)])
        .expect(true, THREAT_LEVEL, true),
        row(
            "3 monitor: critical incident would block staging canary start",
            M,
            TNone,
            S,
            CS,
        )
        .incs([inc("i1", Crit, None)])
        .expect(true, CRITICAL_INCIDENT, true),
        row(
            "3 monitor: production rollback with override -> OVERRIDE, no wouldBlock",
            M,
            TNone,
            P,
            RB,
        )
        .ovs([ov("o-rb", RB, P)])
        .by("o-rb"),
        row(
            "3 monitor: critical incident with override -> OVERRIDE",
            M,
            TNone,
            S,
            CP,
        )
        .ovs([ov("o-cp", CP, S)])
        .incs([inc("i1", Crit, Some(S))])
        .by("o-cp"),
        row(
            "3 monitor: expired override would block in production",
            M,
            TNone,
            P,
            RB,
        )
        .ovs([ov("o-rb", RB, P).expires(0)])
        .expect(true, OVERRIDE_REQUIRED, true),
        // ---- TTL edges (SPEC §4: active from creation until expiresAt, or revocation). ----
        row(
            "ttl: override expiring exactly now is not active",
            E,
            TNone,
            P,
            CS,
        )
        .ovs([ov("o-cs", CS, P).expires(0)])
        .expect(false, OVERRIDE_REQUIRED, false),
        row(
            "ttl: override expiring one ms from now is active",
            E,
            TNone,
            P,
            CS,
        )
        .ovs([ov("o-cs", CS, P).expires(1)])
        .by("o-cs"),
        row(
            "ttl: override expired one ms ago is not active",
            E,
            TNone,
            P,
            CS,
        )
        .ovs([ov("o-cs", CS, P).expires(-1)])
        .expect(false, OVERRIDE_REQUIRED, false),
        row(
            "ttl: override created exactly now is active",
            E,
            TNone,
            P,
            CS,
        )
        .ovs([ov("o-cs", CS, P).created(0)])
        .by("o-cs"),
        row(
            "ttl: override created one ms after now is not active",
            E,
            TNone,
            P,
            CS,
        )
        .ovs([ov("o-cs", CS, P).created(1)])
        .expect(false, OVERRIDE_REQUIRED, false),
        row(
            "ttl: override created in the future is not active",
            E,
            TNone,
            P,
            RB,
        )
        .ovs([ov("o-rb", RB, P).created(5 * MINUTE).expires(60 * MINUTE)])
        .expect(false, OVERRIDE_REQUIRED, false),
        row("ttl: revoked override is not active", E, TNone, P, CS)
            .ovs([ov("o-cs", CS, P).revoked()])
            .expect(false, OVERRIDE_REQUIRED, false),
        row(
            "ttl: revoked older override skipped, active newer used",
            E,
            TNone,
            P,
            CS,
        )
        .ovs([
            ov("o-old", CS, P).created(-30 * MINUTE).revoked(),
            ov("o-new", CS, P).created(-MINUTE),
        ])
        .by("o-new"),
        row(
            "ttl: expired older override skipped, active newer used",
            E,
            TNone,
            P,
            LS,
        )
        .ovs([
            ov("o-old", LS, P).created(-90 * MINUTE).expires(0),
            ov("o-new", LS, P).created(-MINUTE),
        ])
        .by("o-new"),
        // ---- Release binding (SPEC §4). ----
        row("release: bound v1 covers request v1", E, TNone, P, CS)
            .rel("v1")
            .ovs([ov("o-v1", CS, P).bound("v1")])
            .by("o-v1"),
        row(
            "release: bound v1 does not cover request v2",
            E,
            TNone,
            P,
            CS,
        )
        .rel("v2")
        .ovs([ov("o-v1", CS, P).bound("v1")])
        .expect(false, OVERRIDE_REQUIRED, false),
        row(
            "release: bound v1 does not cover a request naming no release",
            E,
            TNone,
            P,
            CS,
        )
        .ovs([ov("o-v1", CS, P).bound("v1")])
        .expect(false, OVERRIDE_REQUIRED, false),
        row(
            "release: bound v1 does not cover v2 under critical incident in staging",
            E,
            TNone,
            S,
            CS,
        )
        .rel("v2")
        .ovs([ov("o-v1", CS, S).bound("v1")])
        .incs([inc("i1", Crit, Some(S))])
        .expect(false, CRITICAL_INCIDENT, false),
        row("release: unbound covers request v1", E, TNone, P, CS)
            .rel("v1")
            .ovs([ov("o-any", CS, P)])
            .by("o-any"),
        row("release: unbound covers request v2", E, TNone, P, RB)
            .rel("v2")
            .ovs([ov("o-any", RB, P)])
            .by("o-any"),
        row(
            "release: unbound covers a request naming no release",
            E,
            TNone,
            P,
            CS,
        )
        .ovs([ov("o-any", CS, P)])
        .by("o-any"),
        row(
            "release: rollback bound to toVersion v1 covers v1",
            E,
            TNone,
            P,
            RB,
        )
        .rel("v1")
        .ovs([ov("o-v1", RB, P).bound("v1")])
        .by("o-v1"),
        row(
            "tie-break: bound (newer) beats unbound (older) for its release",
            E,
            TNone,
            P,
            CS,
        )
        .rel("v1")
        .ovs([
            ov("o-any", CS, P).created(-30 * MINUTE),
            ov("o-v1", CS, P).bound("v1").created(-MINUTE),
        ])
        .by("o-v1"),
        row(
            "tie-break: bound to another release ignored, unbound used",
            E,
            TNone,
            P,
            CS,
        )
        .rel("v2")
        .ovs([
            ov("o-any", CS, P).created(-MINUTE),
            ov("o-v1", CS, P).bound("v1").created(-30 * MINUTE),
        ])
        .by("o-any"),
        row(
            "tie-break: expired bound falls back to active unbound",
            E,
            TNone,
            P,
            CS,
        )
        .rel("v1")
        .ovs([ov("o-v1", CS, P).bound("v1").expires(0), ov("o-any", CS, P)])
        .by("o-any"),
        row("tie-break: oldest of two unbound wins", E, TNone, P, RB)
            .ovs([
                ov("o-b", RB, P).created(-MINUTE),
                ov("o-a", RB, P).created(-2 * MINUTE),
                ov("o-c", RB, P).created(-MINUTE),
            ])
            .by("o-a"),
        row(
            "tie-break: same createdAt -> smallest id wins",
            E,
            TNone,
            P,
            RB,
        )
        .ovs([
            ov("o-b", RB, P).created(-MINUTE),
            ov("o-a", RB, P).created(-MINUTE),
        ])
        .by("o-a"),
        row(
            "tie-break: oldest of two bound to the same release wins",
            E,
            TNone,
            P,
            CS,
        )
        .rel("v1")
        .ovs([
            ov("o-v1-new", CS, P).bound("v1").created(-MINUTE),
            ov("o-v1-old", CS, P).bound("v1").created(-20 * MINUTE),
            ov("o-any", CS, P).created(-40 * MINUTE),
        ])
        .by("o-v1-old"),
        // ---- Start override covers promotion of the canary started under it (SPEC §4). ----
        row(
            "start: promote covered by active start override",
            E,
            TNone,
            P,
            CP,
        )
        .start("o-start")
        .ovs([ov("o-start", CS, P)])
        .by("o-start"),
        row(
            "start: promote without start id, a start override alone does not cover",
            E,
            TNone,
            P,
            CP,
        )
        .ovs([ov("o-start", CS, P)])
        .expect(false, OVERRIDE_REQUIRED, false),
        row(
            "start: start override expiring exactly now does not cover promote",
            E,
            TNone,
            P,
            CP,
        )
        .start("o-start")
        .ovs([ov("o-start", CS, P).expires(0)])
        .expect(false, OVERRIDE_REQUIRED, false),
        row(
            "start: start override expiring in one ms covers promote",
            E,
            TNone,
            P,
            CP,
        )
        .start("o-start")
        .ovs([ov("o-start", CS, P).expires(1)])
        .by("o-start"),
        row(
            "start: revoked start override does not cover promote",
            E,
            TNone,
            P,
            CP,
        )
        .start("o-start")
        .ovs([ov("o-start", CS, P).revoked()])
        .expect(false, OVERRIDE_REQUIRED, false),
        row(
            "start: start override of another environment does not cover promote",
            E,
            TNone,
            P,
            CP,
        )
        .start("o-start")
        .ovs([ov("o-start", CS, S)])
        .expect(false, OVERRIDE_REQUIRED, false),
        row(
            "start: unknown start override id does not cover promote",
            E,
            TNone,
            P,
            CP,
        )
        .start("o-missing")
        .ovs([ov("o-start", CS, P)])
        .expect(false, OVERRIDE_REQUIRED, false),
        row(
            "start: start id naming a rollback override does not cover promote",
            E,
            TNone,
            P,
            CP,
        )
        .start("o-rb")
        .ovs([ov("o-rb", RB, P)])
        .expect(false, OVERRIDE_REQUIRED, false),
        row("start: start id is ignored for rollback", E, TNone, P, RB)
            .start("o-start")
            .ovs([ov("o-start", CS, P)])
            .expect(false, OVERRIDE_REQUIRED, false),
        row("start: start id is ignored for loadshed", E, TNone, P, LS)
            .start("o-start")
            .ovs([ov("o-start", CS, P)])
            .expect(false, OVERRIDE_REQUIRED, false),
        row(
            "start: direct promote override wins over (older) start override",
            E,
            TNone,
            P,
            CP,
        )
        .start("o-start")
        .ovs([
            ov("o-start", CS, P).created(-40 * MINUTE),
            ov("o-cp", CP, P).created(-MINUTE),
        ])
        .by("o-cp"),
        row(
            "start: expired direct promote override, start override used",
            E,
            TNone,
            P,
            CP,
        )
        .start("o-start")
        .ovs([ov("o-cp", CP, P).expires(0), ov("o-start", CS, P)])
        .by("o-start"),
        row(
            "start: start override bound v1 covers promote of v1",
            E,
            TNone,
            P,
            CP,
        )
        .rel("v1")
        .start("o-start")
        .ovs([ov("o-start", CS, P).bound("v1")])
        .by("o-start"),
        row(
            "start: start override bound v1 does not cover promote of v2",
            E,
            TNone,
            P,
            CP,
        )
        .rel("v2")
        .start("o-start")
        .ovs([ov("o-start", CS, P).bound("v1")])
        .expect(false, OVERRIDE_REQUIRED, false),
        row(
            "start: start override bound v1 does not cover promote naming no release",
            E,
            TNone,
            P,
            CP,
        )
        .start("o-start")
        .ovs([ov("o-start", CS, P).bound("v1")])
        .expect(false, OVERRIDE_REQUIRED, false),
        row(
            "start: start override covers promote in monitor mode",
            M,
            TNone,
            P,
            CP,
        )
        .start("o-start")
        .ovs([ov("o-start", CS, P)])
        .by("o-start"),
        // ---- §16 hard freeze: denies whatever the overrides; lockdown and threat come first. ----
        row("16 hard: staging canary start denied", E, TNone, S, CS)
            .frz([fz("f-hard").hard()])
            .frozen_by("f-hard"),
        row(
            "16 hard: staging canary start, covering override does not lift",
            E,
            TNone,
            S,
            CS,
        )
        .frz([fz("f-hard").hard()])
        .ovs([ov("o-cs", CS, S)])
        .frozen_by("f-hard"),
        row(
            "16 hard: production canary start, covering override does not lift",
            E,
            TNone,
            P,
            CS,
        )
        .frz([fz("f-hard").hard()])
        .ovs([ov("o-cs", CS, P)])
        .frozen_by("f-hard"),
        row(
            "16 hard: production promote, start override fallback does not lift",
            E,
            TNone,
            P,
            CP,
        )
        .frz([fz("f-hard").hard()])
        .start("o-start")
        .ovs([ov("o-start", CS, P), ov("o-cp", CP, P)])
        .frozen_by("f-hard"),
        row(
            "16 hard: production rollback listed in its actions, override does not lift",
            E,
            TNone,
            P,
            RB,
        )
        .frz([fz("f-hard").hard().acts([RB])])
        .ovs([ov("o-rb", RB, P)])
        .frozen_by("f-hard"),
        row(
            "16 hard: rollback not in the default actions, production override applies",
            E,
            TNone,
            P,
            RB,
        )
        .frz([fz("f-hard").hard()])
        .ovs([ov("o-rb", RB, P)])
        .by("o-rb"),
        row(
            "16 hard: rollback not in the default actions, staging allowed",
            E,
            TNone,
            S,
            RB,
        )
        .frz([fz("f-hard").hard()])
        .expect(true, ALLOWED, false),
        row("16 hard: staging loadshed listed", E, TNone, S, LS)
            .frz([fz("f-hard").hard().acts([LS, RB])])
            .frozen_by("f-hard"),
        row("16 hard: monitor records would-block", M, TNone, S, CS)
            .frz([fz("f-hard").hard()])
            .frozen_by("f-hard"),
        row(
            "16 hard: monitor with covering override still would-block",
            M,
            TNone,
            P,
            CP,
        )
        .frz([fz("f-hard").hard()])
        .ovs([ov("o-cp", CP, P)])
        .frozen_by("f-hard"),
        row("16 hard: lockdown precedes the freeze", L, TNone, S, CS)
            .frz([fz("f-hard").hard()])
            .expect(false, LOCKDOWN, false),
        row(
            "16 hard: lockdown precedes the freeze, override not honored",
            L,
            TNone,
            P,
            RB,
        )
        .frz([fz("f-hard").hard().acts([RB])])
        .ovs([ov("o-rb", RB, P)])
        .expect(false, LOCKDOWN, false),
        row("16 hard: high threat precedes the freeze", E, THigh, S, CS)
            .frz([fz("f-hard").hard()])
            .expect(false, THREAT_LEVEL, false),
        row(
            "16 hard: monitor, critical threat precedes the freeze",
            M,
            TCrit,
            P,
            CP,
        )
        .frz([fz("f-hard").hard()])
        .expect(true, THREAT_LEVEL, true),
        row(
            "16 hard: high threat does not stop rollback, the freeze listing it does",
            E,
            THigh,
            S,
            RB,
        )
        .frz([fz("f-hard").hard().acts([RB])])
        .frozen_by("f-hard"),
        row(
            "16 hard: freeze precedes the production override requirement",
            E,
            TNone,
            P,
            CS,
        )
        .frz([fz("f-hard").hard()])
        .frozen_by("f-hard"),
        row(
            "16 hard: freeze precedes a critical incident",
            E,
            TNone,
            S,
            CS,
        )
        .frz([fz("f-hard").hard()])
        .ovs([ov("o-cs", CS, S)])
        .incs([inc("i1", Crit, Some(S))])
        .frozen_by("f-hard"),
        // ---- §16 soft freeze: a covering override lifts it (then reason OVERRIDE, also in staging). ----
        row(
            "16 soft: staging canary start without override denied",
            E,
            TNone,
            S,
            CS,
        )
        .frz([fz("f-soft")])
        .frozen_by("f-soft"),
        row(
            "16 soft: staging canary start, covering override lifts -> OVERRIDE",
            E,
            TNone,
            S,
            CS,
        )
        .frz([fz("f-soft")])
        .ovs([ov("o-cs", CS, S)])
        .by("o-cs"),
        row(
            "16 soft: production canary start, covering override lifts",
            E,
            TNone,
            P,
            CS,
        )
        .frz([fz("f-soft")])
        .ovs([ov("o-cs", CS, P)])
        .by("o-cs"),
        row(
            "16 soft: production without override -> FREEZE, not OVERRIDE_REQUIRED",
            E,
            TNone,
            P,
            CP,
        )
        .frz([fz("f-soft")])
        .frozen_by("f-soft"),
        row(
            "16 soft: staging rollback listed, covering override lifts",
            E,
            TNone,
            S,
            RB,
        )
        .frz([fz("f-soft").acts([RB])])
        .ovs([ov("o-rb", RB, S)])
        .by("o-rb"),
        row(
            "16 soft: override for another action does not lift",
            E,
            TNone,
            S,
            CS,
        )
        .frz([fz("f-soft")])
        .ovs([ov("o-cp", CP, S), ov("o-rb", RB, S)])
        .frozen_by("f-soft"),
        row(
            "16 soft: override for another environment does not lift",
            E,
            TNone,
            S,
            CS,
        )
        .frz([fz("f-soft")])
        .ovs([ov("o-cs", CS, P)])
        .frozen_by("f-soft"),
        row(
            "16 soft: override expiring exactly now does not lift",
            E,
            TNone,
            S,
            CS,
        )
        .frz([fz("f-soft")])
        .ovs([ov("o-cs", CS, S).expires(0)])
        .frozen_by("f-soft"),
        row("16 soft: revoked override does not lift", E, TNone, P, CS)
            .frz([fz("f-soft")])
            .ovs([ov("o-cs", CS, P).revoked()])
            .frozen_by("f-soft"),
        row(
            "16 soft: override created one ms after now does not lift",
            E,
            TNone,
            S,
            CS,
        )
        .frz([fz("f-soft")])
        .ovs([ov("o-cs", CS, S).created(1)])
        .frozen_by("f-soft"),
        row(
            "16 soft: release-bound override lifts for its release",
            E,
            TNone,
            S,
            CS,
        )
        .rel("v1")
        .frz([fz("f-soft")])
        .ovs([ov("o-v1", CS, S).bound("v1")])
        .by("o-v1"),
        row(
            "16 soft: release-bound override does not lift another release",
            E,
            TNone,
            S,
            CS,
        )
        .rel("v2")
        .frz([fz("f-soft")])
        .ovs([ov("o-v1", CS, S).bound("v1")])
        .frozen_by("f-soft"),
        row(
            "16 soft: release-bound override does not lift a request naming no release",
            E,
            TNone,
            S,
            CS,
        )
        .frz([fz("f-soft")])
        .ovs([ov("o-v1", CS, S).bound("v1")])
        .frozen_by("f-soft"),
        row(
            "16 soft: start override fallback lifts the promote",
            E,
            TNone,
            S,
            CP,
        )
        .frz([fz("f-soft")])
        .start("o-start")
        .ovs([ov("o-start", CS, S)])
        .by("o-start"),
        row(
            "16 soft: without the start id the start override does not lift the promote",
            E,
            TNone,
            S,
            CP,
        )
        .frz([fz("f-soft")])
        .ovs([ov("o-start", CS, S)])
        .frozen_by("f-soft"),
        row(
            "16 soft: lifted, and the same override answers a critical incident",
            E,
            TNone,
            S,
            CS,
        )
        .frz([fz("f-soft")])
        .ovs([ov("o-cs", CS, S)])
        .incs([inc("i1", Crit, Some(S))])
        .by("o-cs"),
        row(
            "16 soft: without override, the freeze is named before the critical incident",
            E,
            TNone,
            S,
            CS,
        )
        .frz([fz("f-soft")])
        .incs([inc("i1", Crit, None)])
        .frozen_by("f-soft"),
        row(
            "16 soft: monitor without override would-block",
            M,
            TNone,
            S,
            CS,
        )
        .frz([fz("f-soft")])
        .frozen_by("f-soft"),
        row(
            "16 soft: monitor with covering override -> OVERRIDE",
            M,
            TNone,
            S,
            CP,
        )
        .frz([fz("f-soft")])
        .ovs([ov("o-cp", CP, S)])
        .by("o-cp"),
        row(
            "16 soft: monitor production with covering override -> OVERRIDE",
            M,
            TNone,
            P,
            CS,
        )
        .frz([fz("f-soft")])
        .ovs([ov("o-cs", CS, P)])
        .by("o-cs"),
        row(
            "16 soft: lockdown precedes, override not honored",
            L,
            TNone,
            S,
            CS,
        )
        .frz([fz("f-soft")])
        .ovs([ov("o-cs", CS, S)])
        .expect(false, LOCKDOWN, false),
        row(
            "16 soft: critical threat precedes, override does not help",
            E,
            TCrit,
            S,
            CP,
        )
        .frz([fz("f-soft")])
        .ovs([ov("o-cp", CP, S)])
        .expect(false, THREAT_LEVEL, false),
        row("16 soft: medium threat, the freeze applies", E, TMed, S, CS)
            .frz([fz("f-soft")])
            .frozen_by("f-soft"),
        // ---- §16 scope: environments, services, actions all have to match. ----
        row(
            "16 scope: freeze of production does not stop staging",
            E,
            TNone,
            S,
            CS,
        )
        .frz([fz("f-prod").hard().envs([P])])
        .expect(true, ALLOWED, false),
        row(
            "16 scope: freeze of production stops production",
            E,
            TNone,
            P,
            CS,
        )
        .frz([fz("f-prod").hard().envs([P])])
        .ovs([ov("o-cs", CS, P)])
        .frozen_by("f-prod"),
        row(
            "16 scope: freeze of staging does not stop production",
            E,
            TNone,
            P,
            CS,
        )
        .frz([fz("f-stg").hard().envs([S])])
        .ovs([ov("o-cs", CS, P)])
        .by("o-cs"),
        row(
            "16 scope: freeze of staging and qa stops qa",
            E,
            TNone,
            env_named("qa"),
            CS,
        )
        .frz([fz("f-stg").envs([S, env_named("qa")])])
        .frozen_by("f-stg"),
        row(
            "16 scope: freeze of production does not stop production-eu",
            E,
            TNone,
            env_named("production-eu"),
            CS,
        )
        .frz([fz("f-prod").hard().envs([P])])
        .ovs([ov("o-eu", CS, env_named("production-eu"))])
        .by("o-eu"),
        row(
            "16 scope: freeze of services does not stop a request naming no service",
            E,
            TNone,
            S,
            CS,
        )
        .frz([fz("f-api").hard().svcs(["api"])])
        .expect(true, ALLOWED, false),
        row(
            "16 scope: freeze of services stops a listed service",
            E,
            TNone,
            S,
            CS,
        )
        .svc("web")
        .frz([fz("f-api").hard().svcs(["api", "web"])])
        .frozen_by("f-api"),
        row(
            "16 scope: freeze of services does not stop another service",
            E,
            TNone,
            S,
            CS,
        )
        .svc("db")
        .frz([fz("f-api").hard().svcs(["api", "web"])])
        .expect(true, ALLOWED, false),
        row(
            "16 scope: service names are matched exactly",
            E,
            TNone,
            S,
            CS,
        )
        .svc("payments/api")
        .frz([fz("f-api").hard().svcs(["api", "payments"])])
        .expect(true, ALLOWED, false),
        row(
            "16 scope: freeze without services stops a service request",
            E,
            TNone,
            S,
            CP,
        )
        .svc("payments/api")
        .frz([fz("f-all")])
        .frozen_by("f-all"),
        row(
            "16 scope: action not listed is not stopped",
            E,
            TNone,
            S,
            CS,
        )
        .frz([fz("f-rb").hard().acts([RB, LS])])
        .expect(true, ALLOWED, false),
        row(
            "16 scope: env, service and action all match -> stopped",
            E,
            TNone,
            P,
            CP,
        )
        .svc("api")
        .frz([fz("f-narrow").hard().envs([P]).svcs(["api"]).acts([CP])])
        .ovs([ov("o-cp", CP, P)])
        .frozen_by("f-narrow"),
        row(
            "16 scope: env and service match, action does not",
            E,
            TNone,
            P,
            CS,
        )
        .svc("api")
        .frz([fz("f-narrow").hard().envs([P]).svcs(["api"]).acts([CP])])
        .ovs([ov("o-cs", CS, P)])
        .by("o-cs"),
        row(
            "16 scope: env and action match, service does not",
            E,
            TNone,
            P,
            CP,
        )
        .svc("web")
        .frz([fz("f-narrow").hard().envs([P]).svcs(["api"]).acts([CP])])
        .ovs([ov("o-cp", CP, P)])
        .by("o-cp"),
        row(
            "16 scope: service and action match, env does not",
            E,
            TNone,
            S,
            CP,
        )
        .svc("api")
        .frz([fz("f-narrow").hard().envs([P]).svcs(["api"]).acts([CP])])
        .expect(true, ALLOWED, false),
        // ---- §16 time: one-off windows are [start, end); recurring ones follow the schedule. ----
        row(
            "16 time: freeze starting in one ms is not in force",
            E,
            TNone,
            S,
            CS,
        )
        .frz([fz("f-later").hard().window(1, Some(60 * MINUTE))])
        .expect(true, ALLOWED, false),
        row(
            "16 time: freeze starting exactly now is in force",
            E,
            TNone,
            S,
            CS,
        )
        .frz([fz("f-now").hard().window(0, Some(60 * MINUTE))])
        .frozen_by("f-now"),
        row(
            "16 time: freeze ending exactly now is not in force",
            E,
            TNone,
            S,
            CS,
        )
        .frz([fz("f-over").hard().window(-60 * MINUTE, Some(0))])
        .expect(true, ALLOWED, false),
        row(
            "16 time: freeze ending in one ms is in force",
            E,
            TNone,
            S,
            CS,
        )
        .frz([fz("f-ending").hard().window(-60 * MINUTE, Some(1))])
        .frozen_by("f-ending"),
        row(
            "16 time: open-ended freeze is in force until ended by hand",
            E,
            TNone,
            S,
            CS,
        )
        .frz([fz("f-open").window(-60 * MINUTE, None)])
        .frozen_by("f-open"),
        row(
            "16 time: freeze ended by hand a minute ago is not in force",
            E,
            TNone,
            S,
            CS,
        )
        .frz([fz("f-ended").hard().window(-60 * MINUTE, None).ended(-MINUTE)])
        .expect(true, ALLOWED, false),
        row(
            "16 time: freeze ended by hand in the future is in force until then",
            E,
            TNone,
            S,
            CS,
        )
        .frz([fz("f-cut").hard().ended(5 * MINUTE)])
        .frozen_by("f-cut"),
        // NOW is 2023-11-14T22:13:20Z, 23:13:20 in Berlin (CET).
        row(
            "16 time: recurring freeze in its window (23:00 Berlin for 30 min)",
            E,
            TNone,
            P,
            CS,
        )
        .frz([fz("f-nightly").hard().every("0 23 * * *", 30, "Europe/Berlin")])
        .ovs([ov("o-cs", CS, P)])
        .frozen_by("f-nightly"),
        row(
            "16 time: recurring freeze outside its window (23:00 Berlin for 10 min)",
            E,
            TNone,
            P,
            CS,
        )
        .frz([fz("f-nightly").hard().every("0 23 * * *", 10, "Europe/Berlin")])
        .ovs([ov("o-cs", CS, P)])
        .by("o-cs"),
        row(
            "16 time: recurring soft freeze in its window, lifted by an override",
            E,
            TNone,
            S,
            CS,
        )
        .frz([fz("f-nightly").every("0 22 * * *", 30, "UTC")])
        .ovs([ov("o-cs", CS, S)])
        .by("o-cs"),
        row(
            "16 time: recurring soft freeze in its window, no override",
            M,
            TNone,
            S,
            CS,
        )
        .frz([fz("f-nightly").every("0 22 * * *", 30, "UTC")])
        .frozen_by("f-nightly"),
        // ---- §16 several freezes: the decision names the one that ends last. ----
        row(
            "16 several: names the soft freeze ending last",
            E,
            TNone,
            S,
            CS,
        )
        .frz([
            fz("f-early").window(-MINUTE, Some(20 * MINUTE)),
            fz("f-late").window(-2 * MINUTE, Some(90 * MINUTE)),
            fz("f-mid").window(-3 * MINUTE, Some(40 * MINUTE)),
        ])
        .frozen_by("f-late"),
        row(
            "16 several: an open-ended freeze ends after any dated one",
            E,
            TNone,
            S,
            CS,
        )
        .frz([
            fz("f-dated").hard().window(-MINUTE, Some(9_999 * MINUTE)),
            fz("f-open").hard().window(-MINUTE, None),
        ])
        .frozen_by("f-open"),
        row(
            "16 several: same end -> the smallest id is named",
            E,
            TNone,
            S,
            CS,
        )
        .frz([fz("f-b").hard(), fz("f-a").hard(), fz("f-c").hard()])
        .frozen_by("f-a"),
        row(
            "16 several: a freeze not in force is not named although it ends later",
            E,
            TNone,
            S,
            CS,
        )
        .frz([
            fz("f-future").hard().window(MINUTE, Some(500 * MINUTE)),
            fz("f-now").hard(),
            fz("f-other-env").hard().envs([P]).window(-MINUTE, None),
        ])
        .frozen_by("f-now"),
        row(
            "16 several: hard ending after soft, no override -> the hard one is named",
            E,
            TNone,
            S,
            CS,
        )
        .frz([
            fz("f-soft").window(-MINUTE, Some(20 * MINUTE)),
            fz("f-hard").hard().window(-MINUTE, Some(90 * MINUTE)),
        ])
        .frozen_by("f-hard"),
        row(
            "16 several: override lifts the soft one ending last, the hard one is named",
            E,
            TNone,
            P,
            CS,
        )
        .frz([
            fz("f-soft").window(-MINUTE, Some(90 * MINUTE)),
            fz("f-hard").hard().window(-MINUTE, Some(20 * MINUTE)),
        ])
        .ovs([ov("o-cs", CS, P)])
        .frozen_by("f-hard"),
        row(
            "16 several: override lifts every soft freeze",
            E,
            TNone,
            S,
            CS,
        )
        .svc("api")
        .frz([
            fz("f-soft-1"),
            fz("f-soft-2").svcs(["api"]),
            fz("f-hard-web").hard().svcs(["web"]),
        ])
        .ovs([ov("o-cs", CS, S)])
        .by("o-cs"),
        // ---- §15 tiers: production rules apply to every production-tier environment. ----
        row(
            "15 tier: production-eu without override -> OVERRIDE_REQUIRED",
            E,
            TNone,
            env_named("production-eu"),
            CS,
        )
        .expect(false, OVERRIDE_REQUIRED, false),
        row(
            "15 tier: production-eu rollback without override -> OVERRIDE_REQUIRED",
            E,
            TNone,
            env_named("production-eu"),
            RB,
        )
        .expect(false, OVERRIDE_REQUIRED, false),
        row(
            "15 tier: production-eu with its override",
            E,
            TNone,
            env_named("production-eu"),
            LS,
        )
        .ovs([ov("o-eu", LS, env_named("production-eu"))])
        .by("o-eu"),
        row(
            "15 tier: production-eu, an override for production does not cover",
            E,
            TNone,
            env_named("production-eu"),
            CS,
        )
        .ovs([ov("o-cs", CS, P)])
        .expect(false, OVERRIDE_REQUIRED, false),
        row(
            "15 tier: monitor production-eu without override would block",
            M,
            TNone,
            env_named("production-eu"),
            CP,
        )
        .expect(true, OVERRIDE_REQUIRED, true),
        row(
            "15 tier: lockdown production-eu",
            L,
            TNone,
            env_named("production-eu"),
            RB,
        )
        .ovs([ov("o-eu", RB, env_named("production-eu"))])
        .expect(false, LOCKDOWN, false),
        row(
            "15 tier: production-eu soft freeze, no override -> FREEZE",
            E,
            TNone,
            env_named("production-eu"),
            RB,
        )
        .frz([fz("f-soft").acts([RB])])
        .frozen_by("f-soft"),
        row(
            "15 tier: production-eu soft freeze, override lifts",
            E,
            TNone,
            env_named("production-eu"),
            CS,
        )
        .frz([fz("f-soft").envs([env_named("production-eu")])])
        .ovs([ov("o-eu", CS, env_named("production-eu"))])
        .by("o-eu"),
        row(
            "15 tier: production-eu hard freeze, override does not lift",
            M,
            TNone,
            env_named("production-eu"),
            CS,
        )
        .frz([fz("f-hard").hard().envs([env_named("production-eu")])])
        .ovs([ov("o-eu", CS, env_named("production-eu"))])
        .frozen_by("f-hard"),
        row(
            "15 tier: qa (staging tier) allowed without override",
            E,
            TNone,
            env_named("qa"),
            CS,
        )
        .expect(true, ALLOWED, false),
        row(
            "15 tier: qa rollback allowed without override",
            E,
            TNone,
            env_named("qa"),
            RB,
        )
        .expect(true, ALLOWED, false),
        row(
            "15 tier: qa critical incident needs an override",
            E,
            TNone,
            env_named("qa"),
            CS,
        )
        .incs([inc("i1", Crit, Some(env_named("qa")))])
        .expect(false, CRITICAL_INCIDENT, false),
        row(
            "15 tier: qa, critical incident of staging does not concern it",
            E,
            TNone,
            env_named("qa"),
            CS,
        )
        .incs([inc("i1", Crit, Some(S))])
        .expect(true, ALLOWED, false),
        row(
            "15 tier: qa soft freeze lifted by its override -> OVERRIDE",
            E,
            TNone,
            env_named("qa"),
            CP,
        )
        .frz([fz("f-soft")])
        .ovs([ov("o-qa", CP, env_named("qa"))])
        .by("o-qa"),
        row(
            "15 tier: qa soft freeze, staging override does not lift",
            E,
            TNone,
            env_named("qa"),
            CP,
        )
        .frz([fz("f-soft")])
        .ovs([ov("o-stg", CP, S)])
        .frozen_by("f-soft"),
        // ---- §15 services: a service-bound override covers only its service. ----
        row(
            "15 service: service-bound override covers its service",
            E,
            TNone,
            P,
            CS,
        )
        .svc("api")
        .ovs([ov("o-api", CS, P).svc("api")])
        .by("o-api"),
        row(
            "15 service: service-bound override does not cover another service",
            E,
            TNone,
            P,
            CS,
        )
        .svc("web")
        .ovs([ov("o-api", CS, P).svc("api")])
        .expect(false, OVERRIDE_REQUIRED, false),
        row(
            "15 service: service-bound override does not cover a request naming no service",
            E,
            TNone,
            P,
            CS,
        )
        .ovs([ov("o-api", CS, P).svc("api")])
        .expect(false, OVERRIDE_REQUIRED, false),
        row(
            "15 service: unbound override covers a service request",
            E,
            TNone,
            P,
            RB,
        )
        .svc("payments/api")
        .ovs([ov("o-any", RB, P)])
        .by("o-any"),
        row(
            "15 service: bound to the service beats an older unbound one",
            E,
            TNone,
            P,
            CS,
        )
        .svc("api")
        .ovs([
            ov("o-any", CS, P).created(-30 * MINUTE),
            ov("o-api", CS, P).svc("api").created(-MINUTE),
            ov("o-web", CS, P).svc("web").created(-40 * MINUTE),
        ])
        .by("o-api"),
        row(
            "15 service: another service's override ignored, unbound used",
            E,
            TNone,
            P,
            CS,
        )
        .svc("api")
        .ovs([
            ov("o-web", CS, P).svc("web").created(-40 * MINUTE),
            ov("o-any", CS, P).created(-MINUTE),
        ])
        .by("o-any"),
        row(
            "15 service: release and service bindings combine, both match",
            E,
            TNone,
            P,
            CS,
        )
        .rel("v1")
        .svc("api")
        .ovs([ov("o-both", CS, P).bound("v1").svc("api")])
        .by("o-both"),
        row(
            "15 service: release matches, service does not",
            E,
            TNone,
            P,
            CS,
        )
        .rel("v1")
        .svc("web")
        .ovs([ov("o-both", CS, P).bound("v1").svc("api")])
        .expect(false, OVERRIDE_REQUIRED, false),
        row(
            "15 service: service matches, release does not",
            E,
            TNone,
            P,
            CS,
        )
        .rel("v2")
        .svc("api")
        .ovs([ov("o-both", CS, P).bound("v1").svc("api")])
        .expect(false, OVERRIDE_REQUIRED, false),
        row(
            "15 service: expired service-bound falls back to active unbound",
            E,
            TNone,
            P,
            CS,
        )
        .svc("api")
        .ovs([
            ov("o-api", CS, P).svc("api").expires(0),
            ov("o-any", CS, P),
        ])
        .by("o-any"),
        row(
            "15 service: staging critical incident, service-bound override covers its service",
            E,
            TNone,
            S,
            CS,
        )
        .svc("api")
        .incs([inc("i1", Crit, None)])
        .ovs([ov("o-api", CS, S).svc("api")])
        .by("o-api"),
        row(
            "15 service: staging critical incident, other service's override does not cover",
            E,
            TNone,
            S,
            CS,
        )
        .svc("api")
        .incs([inc("i1", Crit, None)])
        .ovs([ov("o-web", CS, S).svc("web")])
        .expect(false, CRITICAL_INCIDENT, false),
        row(
            "15 service: soft freeze lifted by an override bound to the request's service",
            E,
            TNone,
            S,
            CS,
        )
        .svc("api")
        .frz([fz("f-soft")])
        .ovs([ov("o-api", CS, S).svc("api")])
        .by("o-api"),
        row(
            "15 service: soft freeze not lifted by an override bound to another service",
            E,
            TNone,
            S,
            CS,
        )
        .svc("api")
        .frz([fz("f-soft")])
        .ovs([ov("o-web", CS, S).svc("web")])
        .frozen_by("f-soft"),
        row(
            "15 service: soft freeze of the whole env not lifted by a service-bound override for a request naming no service",
            E,
            TNone,
            P,
            CS,
        )
        .frz([fz("f-soft")])
        .ovs([ov("o-api", CS, P).svc("api")])
        .frozen_by("f-soft"),
        row(
            "15 service: start override bound to the service covers its promote",
            E,
            TNone,
            P,
            CP,
        )
        .svc("api")
        .start("o-start")
        .ovs([ov("o-start", CS, P).svc("api")])
        .by("o-start"),
        row(
            "15 service: start override bound to another service does not cover the promote",
            E,
            TNone,
            P,
            CP,
        )
        .svc("web")
        .start("o-start")
        .ovs([ov("o-start", CS, P).svc("api")])
        .expect(false, OVERRIDE_REQUIRED, false),
    ]
}

fn roles_for(action: Action, env: Environment) -> Vec<Role> {
    // SPEC §4's table, written out here independently of the implementation, read by tier (§15).
    use Action::*;
    let mut roles = vec![Role::SecurityTeam];
    if matches!(action, CanaryStart | CanaryPromote | Rollback) {
        roles.push(Role::EngLead);
    }
    if action == Rollback && resolve(env).tier == Tier::Production {
        roles.push(Role::OncallLead);
    }
    roles
}

#[test]
fn decision_table() {
    let rows = table();
    assert!(rows.len() >= 100, "the table has {} rows", rows.len());
    let mut descs: Vec<&str> = rows.iter().map(|r| r.desc).collect();
    descs.sort_unstable();
    descs.dedup();
    assert_eq!(descs.len(), rows.len(), "row descriptions must be unique");

    for r in &rows {
        let d = r.decide();
        let ctx = format!("row `{}`: got {d:#?}", r.desc);
        assert_eq!(d.allowed, r.allowed, "allowed, {ctx}");
        assert_eq!(d.reason, r.reason, "reason, {ctx}");
        assert_eq!(d.would_block, r.would_block, "wouldBlock, {ctx}");
        assert_eq!(d.override_id.as_deref(), r.override_id, "overrideId, {ctx}");

        // The decision echoes what was asked, and when.
        assert_eq!(d.action, r.action, "action echo, {ctx}");
        assert_eq!(d.environment, r.env, "environment echo, {ctx}");
        assert_eq!(d.release_id.as_deref(), r.release, "release echo, {ctx}");
        assert_eq!(d.service.as_deref(), r.service, "service echo, {ctx}");
        assert_eq!(d.mode, r.mode, "mode echo, {ctx}");
        assert_eq!(
            r.names.is_some(),
            d.reason == ReasonCode::Freeze,
            "a FREEZE row names its freeze, {ctx}"
        );
        assert_eq!(d.decided_at, NOW, "decidedAt, {ctx}");
        assert!(!d.message.is_empty(), "message, {ctx}");

        // Invariants of SPEC §3 that hold on every row.
        if r.mode == SecurityMode::Monitor {
            assert!(d.allowed, "monitor mode always allows, {ctx}");
        }
        if d.would_block {
            assert_eq!(
                r.mode,
                SecurityMode::Monitor,
                "wouldBlock only in monitor, {ctx}"
            );
        }
        if d.reason == ReasonCode::Override {
            assert!(
                d.allowed && d.override_id.is_some(),
                "OVERRIDE names it, {ctx}"
            );
        } else {
            assert_eq!(d.override_id, None, "no override unless OVERRIDE, {ctx}");
        }
        if !d.allowed {
            assert!(!d.hints.is_empty(), "a denial says how to proceed, {ctx}");
        }

        match d.reason {
            ReasonCode::Lockdown => {
                assert!(
                    d.message.contains(LOCKDOWN_REASON),
                    "lockdown message includes the reason, {ctx}"
                );
                let hints = d.hints.join("\n").to_lowercase();
                assert!(
                    hints.contains("security") && hints.contains("lockdown"),
                    "lockdown hint: only security-team can exit, {ctx}"
                );
            }
            ReasonCode::OverrideRequired => {
                if r.mode == SecurityMode::Enforce {
                    assert_eq!(
                        d.message, "Production actions require explicit override",
                        "{ctx}"
                    );
                } else {
                    assert!(
                        d.message
                            .contains("Production actions require explicit override"),
                        "{ctx}"
                    );
                }
                let hints = d.hints.join("\n");
                let allowed_roles = roles_for(r.action, r.env);
                for role in Role::ALL {
                    assert_eq!(
                        hints.contains(role.as_str()),
                        allowed_roles.contains(role),
                        "hints name exactly the roles that may override ({role}), {ctx}"
                    );
                }
            }
            ReasonCode::CriticalIncident => {
                let hints = d.hints.join("\n");
                for role in roles_for(r.action, r.env) {
                    assert!(
                        hints.contains(role.as_str()),
                        "critical-incident hints name {role}, {ctx}"
                    );
                }
            }
            ReasonCode::Freeze => check_freeze_message(r, &d, &ctx),
            _ => {}
        }
    }
}

/// SPEC §16: "The message names the freeze, its reason and when it ends; hints say who may
/// override it (soft) or end it."
fn check_freeze_message(r: &Row, d: &Decision, ctx: &str) {
    let id = r.names.expect("FREEZE row names its freeze");
    let named = r
        .freezes
        .iter()
        .find(|f| f.id == id)
        .expect("the named freeze is in the row")
        .build();
    assert!(d.message.contains(&format!("({id})")), "names {id}, {ctx}");
    for other in r.freezes.iter().filter(|f| f.id != id) {
        assert!(
            !d.message.contains(&format!("({})", other.id)),
            "names only {id}, not {}, {ctx}",
            other.id
        );
    }
    assert!(
        d.message.contains(&freeze_reason(id)),
        "quotes the freeze's reason, {ctx}"
    );
    // When it ends: the end of the window in force now (the schedule's job, not the gate's).
    let window = named.window_at(NOW).expect("the named freeze is in force");
    match window.until {
        Some(until) => assert!(
            d.message.contains(&until.to_rfc3339()),
            "says it ends at {until}, {ctx}"
        ),
        None => assert!(
            d.message.contains("by hand"),
            "says it lasts until ended by hand, {ctx}"
        ),
    }
    let hints = d.hints.join("\n");
    assert!(
        hints.contains(&format!("freeze end {id}")),
        "hints say how to end it, {ctx}"
    );
    if named.hard {
        assert!(
            hints.to_lowercase().contains("no override"),
            "a hard freeze's hints say no override lifts it, {ctx}"
        );
    } else {
        for role in roles_for(r.action, r.env) {
            assert!(
                hints.contains(role.as_str()),
                "a soft freeze's hints name {role}, who may override, {ctx}"
            );
        }
    }
}

/// The exact words of each kind of denial that names a freeze or an override: operators read
/// them, and the gate builds them on its hot path, so a faster way of writing them must say the
/// same thing.
#[test]
fn denial_texts_word_for_word() {
    let two_person = ApprovalPolicy::new(
        vec![deploy_safety_core::ApprovalRule {
            actions: vec![Action::CanaryStart],
            environments: vec![deploy_safety_core::EnvironmentSelector::Named(
                Environment::PRODUCTION,
            )],
            required: 2,
            approver_roles: vec![Role::SecurityTeam],
        }],
        &configured(),
    )
    .expect("approval policy");
    let no_rule = ApprovalPolicy::NONE;
    let ends = NOW.plus_minutes(50).to_rfc3339();
    let start = |env| {
        row(
            "text",
            SecurityMode::Enforce,
            ThreatLevel::None,
            env,
            Action::CanaryStart,
        )
    };
    let cases: Vec<(&str, Row, &ApprovalPolicy, String, Vec<String>)> = vec![
        (
            "production, no rule, release and service named",
            start(Environment::PRODUCTION).rel("v1.2.3").svc("payments"),
            &no_rule,
            "Production actions require explicit override".to_owned(),
            vec![
                "Create an override for deploy.canary.start in production (roles that may: security-team, eng-lead): deploy-safety override create --action deploy.canary.start --environment production --service payments --release v1.2.3 --reason \"...\", or POST /api/deploy-safety/security-gate/override.".to_owned(),
            ],
        ),
        (
            "production, no rule, service without release",
            start(Environment::PRODUCTION).svc("payments"),
            &no_rule,
            "Production actions require explicit override".to_owned(),
            vec![
                "Create an override for deploy.canary.start in production (roles that may: security-team, eng-lead): deploy-safety override create --action deploy.canary.start --environment production --service payments --reason \"...\", or POST /api/deploy-safety/security-gate/override.".to_owned(),
                "Overrides bound to a release cover only requests that name that release.".to_owned(),
            ],
        ),
        (
            "production, two-person rule, release and service named",
            start(Environment::PRODUCTION).rel("v2").svc("payments"),
            &two_person,
            "Production actions require explicit override".to_owned(),
            vec![
                "Request an override for deploy.canary.start in production: it needs 2 approval(s) from other people (roles that may approve: security-team): deploy-safety override request --action deploy.canary.start --environment production --service payments --release v2 --reason \"...\", or POST /api/deploy-safety/security-gate/override-requests.".to_owned(),
            ],
        ),
        (
            "production, two-person rule, no release",
            start(Environment::PRODUCTION),
            &two_person,
            "Production actions require explicit override".to_owned(),
            vec![
                "Request an override for deploy.canary.start in production: it needs 2 approval(s) from other people (roles that may approve: security-team): deploy-safety override request --action deploy.canary.start --environment production --reason \"...\", or POST /api/deploy-safety/security-gate/override-requests.".to_owned(),
                "Overrides bound to a release cover only requests that name that release.".to_owned(),
            ],
        ),
        (
            "soft freeze in staging",
            start(Environment::STAGING).rel("v1").frz([fz("frz_soft")]),
            &no_rule,
            format!("Soft freeze freeze frz_soft (frz_soft) is in force: frz_soft: year-end change freeze; it ends at {ends}"),
            vec![
                "Create an override for deploy.canary.start in staging (roles that may: security-team, eng-lead): deploy-safety override create --action deploy.canary.start --environment staging --release v1 --reason \"...\", or POST /api/deploy-safety/security-gate/override.".to_owned(),
                "Or end the freeze (security team or eng-lead): deploy-safety freeze end frz_soft --reason \"...\".".to_owned(),
            ],
        ),
        (
            "hard freeze until ended by hand",
            start(Environment::STAGING).frz([fz("frz_hard").hard().window(-MINUTE, None)]),
            &no_rule,
            "Hard freeze freeze frz_hard (frz_hard) is in force: frz_hard: year-end change freeze; it lasts until it is ended by hand".to_owned(),
            vec![
                "A hard freeze lifts only when it ends; no override lifts it. The security team or an eng-lead can end it now: deploy-safety freeze end frz_hard --reason \"...\" (DELETE /api/deploy-safety/freezes/frz_hard).".to_owned(),
            ],
        ),
    ];
    for (desc, r, approvals, message, hints) in cases {
        let d = r.decide_under(approvals);
        assert!(!d.allowed, "{desc}: denied");
        assert_eq!(d.message, message, "{desc}: message");
        assert_eq!(d.hints, hints, "{desc}: hints");
    }
}

/// SPEC §16: "When several match, the decision names the one that ends last." With no override,
/// a hard freeze ending in 20 minutes and a soft one ending in 90 both stop the request, so it
/// cannot proceed before the soft one ends: that is the one to name, with its end.
#[test]
fn hard_and_later_soft_freeze_without_override_names_the_one_ending_last() {
    let r = row(
        "16 several: hard ending before soft, no override -> the one ending last is named",
        SecurityMode::Enforce,
        ThreatLevel::None,
        Environment::STAGING,
        Action::CanaryStart,
    )
    .frz([
        fz("f-soft").window(-MINUTE, Some(90 * MINUTE)),
        fz("f-hard").hard().window(-MINUTE, Some(20 * MINUTE)),
    ])
    .frozen_by("f-soft");
    let d = r.decide();
    assert!(!d.allowed);
    assert_eq!(d.reason, ReasonCode::Freeze);
    assert!(
        d.message.contains("(f-soft)") && d.message.contains(&NOW.plus_minutes(90).to_rfc3339()),
        "the request is stopped until the soft freeze ends, 90 minutes from now: {}",
        d.message
    );
}

#[test]
fn lockdown_without_recorded_reason_still_denies() {
    let state = GateState {
        mode: SecurityMode::Lockdown,
        lockdown_reason: None,
        ..GateState::default()
    };
    let index = OverrideIndex::new([ov("o", Action::Rollback, Environment::STAGING).build()]);
    let d = decide(
        &GateRequest {
            service: None,
            action: Action::Rollback,
            environment: known(Environment::STAGING),
            release_id: None,
            start_override_id: None,
        },
        &GateInputs {
            freezes: &deploy_safety_core::FreezeIndex::default(),
            approvals: &ApprovalPolicy::NONE,
            state: &state,
            overrides: &index,
            open_incidents: &[],
            now: NOW,
        },
    );
    assert!(!d.allowed);
    assert_eq!(d.reason, ReasonCode::Lockdown);
    assert_eq!(d.override_id, None);
    assert!(!d.would_block);
}

#[test]
fn threat_level_denial_says_no_override_lifts_it() {
    let state = state(SecurityMode::Enforce, ThreatLevel::High);
    let index = OverrideIndex::new([ov("o", Action::CanaryStart, Environment::PRODUCTION).build()]);
    let d = decide(
        &GateRequest {
            service: None,
            action: Action::CanaryStart,
            environment: known(Environment::PRODUCTION),
            release_id: Some("v1"),
            start_override_id: None,
        },
        &GateInputs {
            freezes: &deploy_safety_core::FreezeIndex::default(),
            approvals: &ApprovalPolicy::NONE,
            state: &state,
            overrides: &index,
            open_incidents: &[],
            now: NOW,
        },
    );
    assert_eq!(d.reason, ReasonCode::ThreatLevel);
    assert!(!d.allowed);
    assert!(
        d.message.contains("high"),
        "message names the level: {}",
        d.message
    );
    assert!(!d.hints.is_empty());
}

// ---------------------------------------------------------------------------------------------
// State changes (SPEC §5)
// ---------------------------------------------------------------------------------------------

fn reason(text: &str) -> Reason {
    Reason::parse(text).expect("valid reason")
}

#[test]
fn entering_lockdown_needs_a_reason() {
    let start = GateState::default();
    assert_eq!(
        change_mode(&start, SecurityMode::Lockdown, None, "sec", NOW),
        Err(ModeChangeError::LockdownReasonRequired)
    );
    let locked = change_mode(
        &start,
        SecurityMode::Lockdown,
        Some(&reason("breach suspected")),
        "sec",
        NOW,
    )
    .expect("lockdown with a reason");
    assert_eq!(locked.mode, SecurityMode::Lockdown);
    assert_eq!(locked.lockdown_reason.as_deref(), Some("breach suspected"));
    assert_eq!(locked.lockdown_since, Some(NOW));
    assert_eq!(locked.threat_level, ThreatLevel::None, "threat untouched");
}

#[test]
fn leaving_lockdown_clears_the_reason() {
    let locked = change_mode(
        &GateState::default(),
        SecurityMode::Lockdown,
        Some(&reason("breach suspected")),
        "sec",
        NOW,
    )
    .expect("lockdown");
    for mode in [SecurityMode::Enforce, SecurityMode::Monitor] {
        let later = NOW.plus_minutes(30);
        let left = change_mode(&locked, mode, Some(&reason("all clear")), "sec", later)
            .expect("leaving lockdown");
        assert_eq!(left.mode, mode);
        assert_eq!(left.lockdown_reason, None, "{mode}");
        assert_eq!(left.lockdown_since, None, "{mode}");
        // Leaving lockdown needs no reason.
        let left = change_mode(&locked, mode, None, "sec", later).expect("no reason needed");
        assert_eq!(left.mode, mode);
        assert_eq!(left.lockdown_reason, None);
    }
}

#[test]
fn mode_change_between_monitor_and_enforce() {
    let monitor = change_mode(
        &GateState::default(),
        SecurityMode::Monitor,
        None,
        "sec",
        NOW,
    )
    .expect("monitor");
    assert_eq!(monitor.mode, SecurityMode::Monitor);
    assert_eq!(monitor.lockdown_reason, None);
    let enforce = change_mode(&monitor, SecurityMode::Enforce, None, "sec", NOW).expect("enforce");
    assert_eq!(enforce.mode, SecurityMode::Enforce);
}

#[test]
fn critical_threat_enters_lockdown_naming_the_cause() {
    for mode in [SecurityMode::Enforce, SecurityMode::Monitor] {
        let start = state(mode, ThreatLevel::Medium);
        let (next, trigger) = change_threat_level(
            &start,
            ThreatLevel::Critical,
            &reason("active exploitation"),
            "sec",
            NOW,
        );
        assert_eq!(next.threat_level, ThreatLevel::Critical);
        assert_eq!(next.mode, SecurityMode::Lockdown, "from {mode}");
        let why = next.lockdown_reason.clone().expect("lockdown has a reason");
        assert!(
            why.to_lowercase().contains("critical") && why.to_lowercase().contains("threat"),
            "reason names the cause: {why}"
        );
        assert_eq!(next.lockdown_since, Some(NOW));
        match trigger {
            Some(LockdownTrigger::Entered { reason }) => assert_eq!(reason, why),
            other => panic!("expected Entered, got {other:?}"),
        }
    }
}

#[test]
fn non_critical_threat_does_not_enter_lockdown() {
    for level in [
        ThreatLevel::None,
        ThreatLevel::Low,
        ThreatLevel::Medium,
        ThreatLevel::High,
    ] {
        let (next, trigger) = change_threat_level(
            &GateState::default(),
            level,
            &reason("assessment"),
            "sec",
            NOW,
        );
        assert_eq!(next.threat_level, level);
        assert_eq!(next.mode, SecurityMode::Enforce, "{level}");
        assert_eq!(next.lockdown_reason, None, "{level}");
        assert_eq!(trigger, None, "{level}");
    }
}

#[test]
fn trigger_while_in_lockdown_keeps_first_reason() {
    let (locked, first) = trigger_lockdown(
        &GateState::default(),
        "Security incident inc-1 opened at critical",
        NOW,
    );
    assert_eq!(locked.mode, SecurityMode::Lockdown);
    assert_eq!(
        first,
        LockdownTrigger::Entered {
            reason: "Security incident inc-1 opened at critical".to_owned()
        }
    );
    assert_eq!(
        locked.lockdown_reason.as_deref(),
        Some("Security incident inc-1 opened at critical")
    );

    let later = NOW.plus_minutes(5);
    let (again, second) = trigger_lockdown(
        &locked,
        "Security incident inc-2 escalated to critical",
        later,
    );
    assert_eq!(again.mode, SecurityMode::Lockdown);
    assert_eq!(
        again.lockdown_reason.as_deref(),
        Some("Security incident inc-1 opened at critical"),
        "first reason kept"
    );
    assert_eq!(again.lockdown_since, Some(NOW), "lockdown start kept");
    assert_eq!(
        second,
        LockdownTrigger::AlreadyInLockdown {
            kept_reason: "Security incident inc-1 opened at critical".to_owned(),
            cause: "Security incident inc-2 escalated to critical".to_owned(),
        }
    );

    // A critical threat while already in lockdown (manual) is also a trigger that keeps the
    // first reason.
    let manual = change_mode(
        &GateState::default(),
        SecurityMode::Lockdown,
        Some(&reason("manual lockdown for audit")),
        "sec",
        NOW,
    )
    .expect("lockdown");
    let (next, trigger) = change_threat_level(
        &manual,
        ThreatLevel::Critical,
        &reason("worm spreading"),
        "sec",
        later,
    );
    assert_eq!(next.mode, SecurityMode::Lockdown);
    assert_eq!(next.threat_level, ThreatLevel::Critical);
    assert_eq!(
        next.lockdown_reason.as_deref(),
        Some("manual lockdown for audit")
    );
    match trigger {
        Some(LockdownTrigger::AlreadyInLockdown { kept_reason, cause }) => {
            assert_eq!(kept_reason, "manual lockdown for audit");
            assert!(cause.contains("critical"), "cause names it: {cause}");
        }
        other => panic!("expected AlreadyInLockdown, got {other:?}"),
    }
}

#[test]
fn lowering_threat_never_leaves_lockdown() {
    let (critical, _) = change_threat_level(
        &GateState::default(),
        ThreatLevel::Critical,
        &reason("active exploitation"),
        "sec",
        NOW,
    );
    assert_eq!(critical.mode, SecurityMode::Lockdown);
    let first_reason = critical.lockdown_reason.clone();
    assert!(first_reason.is_some());
    for level in [
        ThreatLevel::High,
        ThreatLevel::Medium,
        ThreatLevel::Low,
        ThreatLevel::None,
    ] {
        let (lowered, trigger) = change_threat_level(
            &critical,
            level,
            &reason("contained"),
            "sec",
            NOW.plus_minutes(10),
        );
        assert_eq!(lowered.threat_level, level);
        assert_eq!(lowered.mode, SecurityMode::Lockdown, "lowering to {level}");
        assert_eq!(lowered.lockdown_reason, first_reason, "lowering to {level}");
        assert_eq!(trigger, None, "lowering to {level}");
    }
    // And the gate keeps denying after the threat is lowered.
    let (lowered, _) = change_threat_level(
        &critical,
        ThreatLevel::None,
        &reason("contained"),
        "sec",
        NOW.plus_minutes(10),
    );
    let index = OverrideIndex::new([ov("o", Action::Rollback, Environment::STAGING).build()]);
    let d = decide(
        &GateRequest {
            service: None,
            action: Action::Rollback,
            environment: known(Environment::STAGING),
            release_id: None,
            start_override_id: None,
        },
        &GateInputs {
            freezes: &deploy_safety_core::FreezeIndex::default(),
            approvals: &ApprovalPolicy::NONE,
            state: &lowered,
            overrides: &index,
            open_incidents: &[],
            now: NOW.plus_minutes(10),
        },
    );
    assert!(!d.allowed);
    assert_eq!(d.reason, ReasonCode::Lockdown);
    assert!(
        d.message
            .contains(first_reason.as_deref().expect("reason present")),
        "{}",
        d.message
    );
}

/// The built-in environment called `name`, with its tier.
#[allow(dead_code)]
fn known(name: deploy_safety_core::Environment) -> deploy_safety_core::KnownEnvironment {
    deploy_safety_core::Environments::built_in()
        .resolve(name)
        .expect("a built-in environment")
}
