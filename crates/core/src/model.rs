//! The vocabulary of SPEC §1 as types that can only hold valid values.
//!
//! Every enum here is parsed at the edge (HTTP body, CLI flag, database row) with the same
//! spelling the API uses, so the core never sees an unknown environment, action or role.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::time::Timestamp;

/// A value that is not one of an enum's spellings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} `{value}`, expected one of: {}", expected.join(", "))]
pub struct UnknownValue {
    pub kind: &'static str,
    pub value: String,
    pub expected: &'static [&'static str],
}

/// Declares an enum whose variants have one fixed spelling on the wire, in the database and on
/// the command line, with `as_str`, `FromStr`, `Display`, serde and an OpenAPI schema that all
/// agree.
macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident ($kind:literal) {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ::serde::Serialize, ::serde::Deserialize)]
        $vis enum $name {
            $( $(#[$vmeta])* #[serde(rename = $text)] $variant ),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// Every spelling, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        // By hand: the derive does not see `serde(rename)` values passed through a macro, and
        // would describe the Rust variant names instead of the spellings on the wire.
        impl ::utoipa::PartialSchema for $name {
            fn schema() -> ::utoipa::openapi::RefOr<::utoipa::openapi::schema::Schema> {
                ::utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(::utoipa::openapi::schema::Type::String)
                    .enum_values(Some(Self::NAMES.iter().copied()))
                    .into()
            }
        }

        impl ::utoipa::ToSchema for $name {}

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                // `pad`, so widths and alignment in format strings apply.
                f.pad(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::model::UnknownValue;
            fn from_str(text: &str) -> Result<Self, $crate::model::UnknownValue> {
                match text {
                    $($text => Ok($name::$variant),)+
                    _ => Err($crate::model::UnknownValue { kind: $kind, value: text.to_owned(), expected: Self::NAMES }),
                }
            }
        }
    };
}
pub(crate) use string_enum;

pub use crate::environment::Environment;

string_enum! {
    /// An action the gate decides on (SPEC §1 "gated action").
    pub enum Action ("action") {
        CanaryStart = "deploy.canary.start",
        CanaryPromote = "deploy.canary.promote",
        Rollback = "deploy.rollback",
        LoadShed = "ops.loadshed",
    }
}

impl Action {
    /// Canary start and promotion are the actions that high threat and critical incidents stop.
    pub const fn is_canary_progress(self) -> bool {
        matches!(self, Action::CanaryStart | Action::CanaryPromote)
    }
}

string_enum! {
    /// What a principal may do (SPEC §2, §4).
    pub enum Role ("role") {
        SecurityTeam = "security-team",
        EngLead = "eng-lead",
        OncallLead = "oncall-lead",
        Developer = "developer",
    }
}

string_enum! {
    /// How the gate treats its verdicts (SPEC §3).
    pub enum SecurityMode ("security mode") {
        /// Every action allowed; the verdict enforce would have given is recorded.
        Monitor = "monitor",
        /// Verdicts are enforced; overrides honored.
        Enforce = "enforce",
        /// Every gated action denied; overrides not honored.
        Lockdown = "lockdown",
    }
}

string_enum! {
    /// The security team's assessment of current threat, ordered from `none` to `critical`.
    pub enum ThreatLevel ("threat level") {
        None = "none",
        Low = "low",
        Medium = "medium",
        High = "high",
        Critical = "critical",
    }
}

string_enum! {
    /// Incident severity, ordered from `low` to `critical`.
    pub enum Severity ("severity") {
        Low = "low",
        Medium = "medium",
        High = "high",
        Critical = "critical",
    }
}

/// A principal: whoever holds a token. Names are unique among active tokens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Principal {
    pub name: String,
    pub role: Role,
}

/// The gate's own state: mode, threat level and why they are what they are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GateState {
    pub mode: SecurityMode,
    pub threat_level: ThreatLevel,
    /// Why the gate is in lockdown; `null` outside lockdown.
    pub lockdown_reason: Option<String>,
    pub lockdown_since: Option<Timestamp>,
    /// The reason given with the last mode change.
    pub mode_reason: Option<String>,
    pub mode_changed_at: Option<Timestamp>,
    pub mode_changed_by: Option<String>,
    /// The reason given with the last threat level change.
    pub threat_reason: Option<String>,
    pub threat_changed_at: Option<Timestamp>,
    pub threat_changed_by: Option<String>,
}

impl Default for GateState {
    /// SPEC §1: a new gate enforces, with no threat.
    fn default() -> Self {
        GateState {
            mode: SecurityMode::Enforce,
            threat_level: ThreatLevel::None,
            lockdown_reason: None,
            lockdown_since: None,
            mode_reason: None,
            mode_changed_at: None,
            mode_changed_by: None,
            threat_reason: None,
            threat_changed_at: None,
            threat_changed_by: None,
        }
    }
}

/// An open incident, as far as the gate needs to know it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OpenIncident {
    pub id: String,
    pub title: String,
    pub severity: Severity,
    /// `None`: the incident concerns every environment.
    pub environment: Option<Environment>,
}

impl OpenIncident {
    pub fn concerns(&self, environment: Environment) -> bool {
        self.environment.is_none_or(|e| e == environment)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_round_trip_through_text_and_json() {
        for action in Action::ALL {
            assert_eq!(action.as_str().parse::<Action>().unwrap(), *action);
            let json = serde_json::to_string(action).unwrap();
            assert_eq!(json, format!("\"{}\"", action.as_str()));
            assert_eq!(serde_json::from_str::<Action>(&json).unwrap(), *action);
        }
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), *role);
        }
    }

    #[test]
    fn unknown_values_name_the_choices() {
        let err = serde_json::from_str::<SecurityMode>("\"off\"").unwrap_err();
        assert!(err.to_string().contains("unknown variant `off`"), "{err}");
    }

    #[test]
    fn openapi_schemas_list_the_wire_spellings() {
        use utoipa::PartialSchema;
        let schema = serde_json::to_value(Action::schema()).unwrap();
        assert_eq!(
            schema["enum"],
            serde_json::json!([
                "deploy.canary.start",
                "deploy.canary.promote",
                "deploy.rollback",
                "ops.loadshed"
            ])
        );
        let schema = serde_json::to_value(Role::schema()).unwrap();
        assert_eq!(schema["enum"][0], "security-team");
    }

    #[test]
    fn threat_levels_are_ordered() {
        assert!(ThreatLevel::None < ThreatLevel::Low);
        assert!(ThreatLevel::High < ThreatLevel::Critical);
        assert!(Severity::High < Severity::Critical);
    }

    #[test]
    fn incident_without_environment_concerns_all() {
        let mut incident = OpenIncident {
            id: "inc-1".into(),
            title: "t".into(),
            severity: Severity::Critical,
            environment: None,
        };
        assert!(incident.concerns(Environment::STAGING));
        assert!(incident.concerns(Environment::PRODUCTION));
        incident.environment = Some(Environment::STAGING);
        assert!(incident.concerns(Environment::STAGING));
        assert!(!incident.concerns(Environment::PRODUCTION));
    }
}
