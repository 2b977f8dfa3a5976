//! Freezes (SPEC §16): periods in which gated actions are stopped, one-off or recurring, and
//! the index the gate uses to find the freezes that stop one request.
//!
//! Everything here is a function of its inputs and `now`; times are instants
//! ([`Timestamp`]). Recurring windows come from [`Schedule`], which reads its cron pattern as
//! wall-clock time in an IANA zone (see [`crate::schedule`] for the daylight-saving rules).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::model::{Action, Environment};
use crate::schedule::Schedule;
use crate::time::Timestamp;

/// The actions a freeze stops when its creator names none: starting and promoting canaries.
/// Rollbacks and load shedding stay possible during a freeze unless listed explicitly.
pub const DEFAULT_ACTIONS: &[Action] = &[Action::CanaryStart, Action::CanaryPromote];

/// A freeze (SPEC §16). Times are instants. `schedule` absent = one-off window
/// `[start, end or forever)`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Freeze {
    pub id: String,
    pub name: String,
    pub reason: String,
    /// Empty: every environment.
    pub environments: Vec<Environment>,
    /// Empty: every request, with or without a service. Non-empty: only requests that name one
    /// of these services (a request naming no service is not stopped).
    pub services: Vec<String>,
    /// Never empty once built; the caller applies [`DEFAULT_ACTIONS`] when none are given.
    pub actions: Vec<Action>,
    /// One-off: the window's start. Recurring: no window is in force before it (a scheduled
    /// window that began earlier is clipped to begin here).
    pub start: Timestamp,
    /// One-off: the window's end (`None`: until ended by hand). Recurring: no window extends
    /// past it (windows are clipped here).
    pub end: Option<Timestamp>,
    #[schema(value_type = Option<crate::schedule::ScheduleSpec>)]
    pub schedule: Option<Schedule>,
    pub hard: bool,
    pub created_by: String,
    pub created_at: Timestamp,
    /// Ended by hand: nothing is in force from this instant on (a window in progress is cut).
    pub ended_at: Option<Timestamp>,
    pub ended_by: Option<String>,
    pub end_reason: Option<String>,
}

/// A window of a freeze, clipped to the freeze's `start`, `end` and `ended_at`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActiveWindow {
    pub start: Timestamp,
    /// Exclusive end; `None`: until ended by hand (a one-off freeze without `end`).
    pub until: Option<Timestamp>,
}

/// The earlier of two optional ends, `None` meaning "never".
fn earliest_end(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

impl Freeze {
    /// Whether this freeze's scope covers the request (its time is not considered).
    pub fn matches(&self, action: Action, environment: Environment, service: Option<&str>) -> bool {
        self.actions.contains(&action)
            && (self.environments.is_empty() || self.environments.contains(&environment))
            && (self.services.is_empty()
                || service.is_some_and(|name| self.services.iter().any(|s| s == name)))
    }

    /// The instant from which nothing of this freeze is in force: the earlier of `end` and
    /// `ended_at`.
    fn cutoff(&self) -> Option<Timestamp> {
        earliest_end(self.end, self.ended_at)
    }

    /// The window in force at `now` (clipped to `start`, `end` and `ended_at`), if any.
    ///
    /// For a recurring freeze this is [`Schedule::window_at`] clipped: overlapping scheduled
    /// windows are reported as one, ending with the last one started.
    pub fn window_at(&self, now: Timestamp) -> Option<ActiveWindow> {
        let cutoff = self.cutoff();
        if now < self.start || cutoff.is_some_and(|c| now >= c) {
            return None;
        }
        match &self.schedule {
            None => Some(ActiveWindow {
                start: self.start,
                until: cutoff,
            }),
            Some(schedule) => {
                let window = schedule.window_at(now)?;
                Some(ActiveWindow {
                    start: window.start.max(self.start),
                    until: earliest_end(Some(window.end), cutoff),
                })
            }
        }
    }

    /// The next window starting strictly after `now`, clipped. `None` for a one-off freeze
    /// already started, for an ended freeze, and for a recurring freeze with no scheduled start
    /// left before its `end`.
    pub fn next_window_after(&self, now: Timestamp) -> Option<ActiveWindow> {
        let cutoff = self.cutoff();
        if cutoff.is_some_and(|c| c <= now) {
            return None;
        }
        let window = match &self.schedule {
            None => ActiveWindow {
                start: self.start,
                until: cutoff,
            },
            Some(schedule) => {
                // Before `start`, a scheduled window already running at `start` counts as
                // beginning there (it is clipped, as in `window_at`).
                let clipped = (now < self.start)
                    .then(|| schedule.window_at(self.start))
                    .flatten();
                match clipped {
                    Some(running) => ActiveWindow {
                        start: self.start,
                        until: earliest_end(Some(running.end), cutoff),
                    },
                    None => {
                        let after = now.max(self.start.plus_millis(-1));
                        let next = schedule.next_window_after(after)?;
                        ActiveWindow {
                            start: next.start,
                            until: earliest_end(Some(next.end), cutoff),
                        }
                    }
                }
            }
        };
        let starts_later = window.start > now;
        let not_empty = window.until.is_none_or(|until| until > window.start);
        (starts_later && not_empty).then_some(window)
    }

    /// Over: ended by hand (`ended_at <= now`), or past `end` (which also covers a one-off
    /// whose window ended). A recurring freeze without `end` is never over unless ended.
    pub fn is_over_at(&self, now: Timestamp) -> bool {
        self.cutoff().is_some_and(|c| c <= now)
    }
}

/// Validates a freeze's times: `end`, when given, must be after `start`. The error names the
/// offending field and says why.
pub fn validate_window(
    start: Timestamp,
    end: Option<Timestamp>,
) -> Result<(), (&'static str, String)> {
    match end {
        Some(end) if end <= start => Err((
            "end",
            format!(
                "end ({}) must be after start ({})",
                end.to_rfc3339(),
                start.to_rfc3339()
            ),
        )),
        _ => Ok(()),
    }
}

/// A freeze in force now, as the gate sees it.
#[derive(Clone, Debug)]
pub struct ActiveFreeze {
    pub freeze: Arc<Freeze>,
    /// When it stops being in force; `None`: until ended by hand.
    pub until: Option<Timestamp>,
}

/// The freezes stopping one (action, environment) pair: those for any service, and those for
/// named services.
#[derive(Clone, Debug, Default)]
struct Bucket {
    any_service: Vec<usize>,
    by_service: HashMap<String, Vec<usize>>,
}

/// The freezes in force at one instant, indexed by scope so that finding those that stop a
/// request costs at most four hash lookups however many freezes there are.
///
/// Keyed by (action, environment or "any") and then by service or "any": a freeze listing two
/// environments, three services and two actions is entered 2 × 3 × 2 times. For one request the
/// four buckets consulted are disjoint, so no freeze is reported twice.
#[derive(Clone, Debug, Default)]
pub struct FreezeIndex {
    active: Vec<ActiveFreeze>,
    buckets: HashMap<(Action, Option<Environment>), Bucket>,
}

impl FreezeIndex {
    /// Builds the index from freezes and `now`, keeping those whose `window_at(now)` is `Some`.
    pub fn active_at(freezes: impl IntoIterator<Item = Arc<Freeze>>, now: Timestamp) -> Self {
        Self::new(freezes.into_iter().filter_map(|freeze| {
            let window = freeze.window_at(now)?;
            Some(ActiveFreeze {
                freeze,
                until: window.until,
            })
        }))
    }

    /// Builds the index from already-computed active freezes.
    pub fn new(active: impl IntoIterator<Item = ActiveFreeze>) -> Self {
        let mut index = FreezeIndex::default();
        for entry in active {
            let at = index.active.len();
            let freeze = &entry.freeze;
            let actions: HashSet<Action> = freeze.actions.iter().copied().collect();
            let environments: HashSet<Option<Environment>> = if freeze.environments.is_empty() {
                HashSet::from([None])
            } else {
                freeze.environments.iter().copied().map(Some).collect()
            };
            let services: HashSet<&str> = freeze.services.iter().map(String::as_str).collect();
            for &action in &actions {
                for &environment in &environments {
                    let bucket = index.buckets.entry((action, environment)).or_default();
                    if services.is_empty() {
                        bucket.any_service.push(at);
                    } else {
                        for &service in &services {
                            bucket
                                .by_service
                                .entry(service.to_owned())
                                .or_default()
                                .push(at);
                        }
                    }
                }
            }
            index.active.push(entry);
        }
        index
    }

    /// How many active freezes the index holds.
    pub fn len(&self) -> usize {
        self.active.len()
    }

    pub fn is_empty(&self) -> bool {
        self.active.is_empty()
    }

    /// Every active freeze, in the order given.
    pub fn iter(&self) -> impl Iterator<Item = &ActiveFreeze> {
        self.active.iter()
    }

    /// Every active freeze that stops (action, environment, service), in the order given to
    /// the index: at most four hash lookups ((environment | any) × (service | any)); a request
    /// without a service only looks at the "any service" buckets.
    pub fn stopping(
        &self,
        action: Action,
        environment: Environment,
        service: Option<&str>,
    ) -> Vec<&ActiveFreeze> {
        let mut found: Vec<usize> = Vec::new();
        for key in [(action, Some(environment)), (action, None)] {
            let Some(bucket) = self.buckets.get(&key) else {
                continue;
            };
            found.extend_from_slice(&bucket.any_service);
            if let Some(listed) = service.and_then(|name| bucket.by_service.get(name)) {
                found.extend_from_slice(listed);
            }
        }
        found.sort_unstable();
        found.into_iter().map(|at| &self.active[at]).collect()
    }

    /// Of the freezes stopping the request (only hard ones when `hard_only`), the one that ends
    /// last: `until: None` (until ended by hand) beats every instant; ties go to the smallest
    /// id, so the answer does not depend on the order of the input.
    pub fn last_ending(
        &self,
        action: Action,
        environment: Environment,
        service: Option<&str>,
        hard_only: bool,
    ) -> Option<&ActiveFreeze> {
        let (hard, any) = self.last_ending_both(action, environment, service);
        if hard_only { hard } else { any }
    }

    /// In one pass, without allocating: the hard freeze and the freeze of any kind that stop
    /// the request and end last (as [`FreezeIndex::last_ending`]). A freeze is entered once per
    /// key and a request meets each freeze under at most one key, so nothing is seen twice.
    pub fn last_ending_both(
        &self,
        action: Action,
        environment: Environment,
        service: Option<&str>,
    ) -> (Option<&ActiveFreeze>, Option<&ActiveFreeze>) {
        fn later<'a>(best: Option<&'a ActiveFreeze>, entry: &'a ActiveFreeze) -> &'a ActiveFreeze {
            let ends = |e: &ActiveFreeze| (e.until.is_none(), e.until);
            match best {
                Some(b)
                    if ends(b)
                        .cmp(&ends(entry))
                        .then_with(|| entry.freeze.id.cmp(&b.freeze.id))
                        .is_ge() =>
                {
                    b
                }
                _ => entry,
            }
        }
        let (mut hard, mut any): (Option<&ActiveFreeze>, Option<&ActiveFreeze>) = (None, None);
        for key in [(action, Some(environment)), (action, None)] {
            let Some(bucket) = self.buckets.get(&key) else {
                continue;
            };
            let listed = service
                .and_then(|name| bucket.by_service.get(name))
                .map_or(&[][..], Vec::as_slice);
            for &at in bucket.any_service.iter().chain(listed) {
                let entry = &self.active[at];
                any = Some(later(any, entry));
                if entry.freeze.hard {
                    hard = Some(later(hard, entry));
                }
            }
        }
        (hard, any)
    }
}
