//! Table-driven tests of the gate decision (SPEC §3, §4, §15, §16) and of the gate's state
//! changes (SPEC §5).
//!
//! Every row names the SPEC step it exercises; a failing row is reported by its description.

use std::sync::Arc;

use deploy_safety_core::{
    Action, DEFAULT_ACTIONS, Decision, Environment, EnvironmentSpec, Environments, Freeze,
    FreezeIndex, GateInputs, GateRequest, GateState, KnownEnvironment, LockdownTrigger,
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
            approver_role: Role::SecurityTeam,
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
