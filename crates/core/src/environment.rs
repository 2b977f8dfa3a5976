//! Environments (SPEC §15): names parsed once at the edge, each with the tier that decides which
//! of part one's rules apply to it.
//!
//! The set of environments comes from the settings file, so it is data, not a type: an
//! [`Environment`] is a valid name, and a [`KnownEnvironment`] is a name the settings define,
//! with its [`Tier`]. Only [`Environments::resolve`] makes the latter, so the decision never sees
//! a name it does not know.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::model::string_enum;

/// The longest environment name (a DNS label).
pub const MAX_ENVIRONMENT_CHARS: usize = 63;

/// An environment's name: 1 to 63 characters of `a-z 0-9 -`, starting with a letter.
///
/// Stored inline, so it is `Copy` like the closed enum it replaced, and comparing or hashing it
/// never touches the heap.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Environment {
    // Zero-padded, so the derived order is the names' order.
    bytes: [u8; MAX_ENVIRONMENT_CHARS],
    len: u8,
}

/// A text that is not a valid environment name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid environment name `{0}`: 1 to 63 characters of a-z, 0-9 and -, starting with a letter"
)]
pub struct InvalidEnvironmentName(pub String);

impl Environment {
    /// The built-in staging environment.
    pub const STAGING: Environment = Environment::from_static("staging");
    /// The built-in production environment.
    pub const PRODUCTION: Environment = Environment::from_static("production");

    const fn from_static(name: &str) -> Environment {
        let source = name.as_bytes();
        let mut bytes = [0u8; MAX_ENVIRONMENT_CHARS];
        let mut i = 0;
        while i < source.len() {
            bytes[i] = source[i];
            i += 1;
        }
        #[allow(clippy::cast_possible_truncation)]
        Environment {
            bytes,
            len: source.len() as u8,
        }
    }

    pub fn parse(text: &str) -> Result<Environment, InvalidEnvironmentName> {
        let valid = !text.is_empty()
            && text.len() <= MAX_ENVIRONMENT_CHARS
            && text.as_bytes()[0].is_ascii_lowercase()
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid {
            return Err(InvalidEnvironmentName(text.to_owned()));
        }
        Ok(Environment::from_static(text))
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII is ever stored, so this cannot fail.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl fmt::Debug for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Environment({})", self.as_str())
    }
}

impl FromStr for Environment {
    type Err = InvalidEnvironmentName;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Environment::parse(text)
    }
}

impl Serialize for Environment {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Environment {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Environment::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl utoipa::PartialSchema for Environment {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .min_length(Some(1))
            .max_length(Some(MAX_ENVIRONMENT_CHARS))
            .pattern(Some("^[a-z][a-z0-9-]*$"))
            .description(Some(
                "An environment named in the settings file (`GET /environments` lists them).",
            ))
            .into()
    }
}

impl utoipa::ToSchema for Environment {}

string_enum! {
    /// Which of part one's rules an environment follows (SPEC §15).
    pub enum Tier ("tier") {
        Staging = "staging",
        Production = "production",
    }
}

/// An environment the settings define, with its tier. Made only by [`Environments::resolve`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KnownEnvironment {
    pub name: Environment,
    pub tier: Tier,
}

impl fmt::Display for KnownEnvironment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.name.fmt(f)
    }
}

impl KnownEnvironment {
    pub fn is_production(self) -> bool {
        self.tier == Tier::Production
    }
}

/// One `[[environments]]` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentSpec {
    pub name: Environment,
    pub tier: Tier,
    /// Where a release must have passed validation (and, when required, a soak) before it
    /// starts here. Empty in the settings means every staging-tier environment.
    pub promotes_from: Vec<Environment>,
}

/// A settings file's environments that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvironmentsError {
    #[error("environment `{0}` is listed twice")]
    Duplicate(Environment),
    #[error("environment `{environment}` promotes from `{from}`, which is not listed")]
    UnknownPromotesFrom { environment: String, from: String },
    #[error("environment `{0}` promotes from itself")]
    PromotesFromItself(Environment),
}

/// A name that is not one of the configured environments.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown environment `{name}`, expected one of: {}", known.join(", "))]
pub struct UnknownEnvironment {
    pub name: String,
    pub known: Vec<String>,
}

/// The environments that exist: the settings file's, or the two built-in ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Environments {
    specs: Vec<EnvironmentSpec>,
}

impl Default for Environments {
    fn default() -> Self {
        Environments::built_in()
    }
}

impl Environments {
    /// `staging` (tier staging) and `production` (tier production, promoting from staging).
    pub fn built_in() -> Environments {
        Environments {
            specs: vec![
                EnvironmentSpec {
                    name: Environment::STAGING,
                    tier: Tier::Staging,
                    promotes_from: Vec::new(),
                },
                EnvironmentSpec {
                    name: Environment::PRODUCTION,
                    tier: Tier::Production,
                    promotes_from: vec![Environment::STAGING],
                },
            ],
        }
    }

    /// The listed environments, in order. An empty `promotes_from` becomes every staging-tier
    /// environment other than the entry itself.
    pub fn new(listed: Vec<EnvironmentSpec>) -> Result<Environments, EnvironmentsError> {
        if listed.is_empty() {
            return Ok(Environments::built_in());
        }
        for (i, spec) in listed.iter().enumerate() {
            if listed[..i].iter().any(|s| s.name == spec.name) {
                return Err(EnvironmentsError::Duplicate(spec.name));
            }
            for from in &spec.promotes_from {
                if *from == spec.name {
                    return Err(EnvironmentsError::PromotesFromItself(spec.name));
                }
                if !listed.iter().any(|s| s.name == *from) {
                    return Err(EnvironmentsError::UnknownPromotesFrom {
                        environment: spec.name.to_string(),
                        from: from.to_string(),
                    });
                }
            }
        }
        let staging: Vec<Environment> = listed
            .iter()
            .filter(|s| s.tier == Tier::Staging)
            .map(|s| s.name)
            .collect();
        let specs = listed
            .into_iter()
            .map(|mut spec| {
                if spec.promotes_from.is_empty() {
                    spec.promotes_from = staging
                        .iter()
                        .copied()
                        .filter(|e| *e != spec.name)
                        .collect();
                }
                spec
            })
            .collect();
        Ok(Environments { specs })
    }

    pub fn specs(&self) -> &[EnvironmentSpec] {
        &self.specs
    }

    pub fn names(&self) -> impl Iterator<Item = Environment> + '_ {
        self.specs.iter().map(|s| s.name)
    }

    /// The environment called `name`, if the settings define it.
    pub fn resolve(&self, name: Environment) -> Option<KnownEnvironment> {
        self.spec(name).map(|s| KnownEnvironment {
            name: s.name,
            tier: s.tier,
        })
    }

    /// Like [`Environments::resolve`], with an error that lists the known environments.
    pub fn require(&self, name: Environment) -> Result<KnownEnvironment, UnknownEnvironment> {
        self.resolve(name)
            .ok_or_else(|| self.unknown(name.as_str()))
    }

    /// Parses and resolves a name typed by a person or sent in a request.
    pub fn parse(&self, text: &str) -> Result<KnownEnvironment, UnknownEnvironment> {
        Environment::parse(text)
            .ok()
            .and_then(|name| self.resolve(name))
            .ok_or_else(|| self.unknown(text))
    }

    pub fn unknown(&self, text: &str) -> UnknownEnvironment {
        UnknownEnvironment {
            name: text.to_owned(),
            known: self.names().map(|e| e.as_str().to_owned()).collect(),
        }
    }

    /// Where a release must have passed before it starts in `environment` (SPEC §7, §15).
    pub fn promotes_from(&self, environment: Environment) -> &[Environment] {
        self.spec(environment)
            .map_or(&[], |s| s.promotes_from.as_slice())
    }

    fn spec(&self, name: Environment) -> Option<&EnvironmentSpec> {
        self.specs.iter().find(|s| s.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_dns_label_rule() {
        for good in [
            "staging",
            "production-eu",
            "qa",
            "a",
            "e2e-1",
            &"a".repeat(63),
        ] {
            let name = Environment::parse(good).unwrap();
            assert_eq!(name.as_str(), good);
            assert_eq!(name.to_string(), good);
        }
        for bad in [
            "",
            "Prod",
            "1qa",
            "-qa",
            "qa_1",
            "qa.eu",
            "prod uction",
            &"a".repeat(64),
        ] {
            assert!(Environment::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Environment::STAGING, Environment::parse("staging").unwrap());
        assert!(Environment::parse("a").unwrap() < Environment::parse("ab").unwrap());
        assert!(Environment::parse("b").unwrap() > Environment::parse("ab").unwrap());
    }

    #[test]
    fn names_round_trip_through_json() {
        let json = serde_json::to_string(&Environment::PRODUCTION).unwrap();
        assert_eq!(json, "\"production\"");
        assert_eq!(
            serde_json::from_str::<Environment>(&json).unwrap(),
            Environment::PRODUCTION
        );
        let err = serde_json::from_str::<Environment>("\"Prod\"").unwrap_err();
        assert!(
            err.to_string().contains("invalid environment name `Prod`"),
            "{err}"
        );
    }

    fn spec(name: &str, tier: Tier, from: &[&str]) -> EnvironmentSpec {
        EnvironmentSpec {
            name: Environment::parse(name).unwrap(),
            tier,
            promotes_from: from
                .iter()
                .map(|f| Environment::parse(f).unwrap())
                .collect(),
        }
    }

    #[test]
    fn without_settings_the_two_built_in_environments_exist() {
        let envs = Environments::new(Vec::new()).unwrap();
        assert_eq!(envs, Environments::built_in());
        assert_eq!(
            envs.resolve(Environment::PRODUCTION).unwrap().tier,
            Tier::Production
        );
        assert_eq!(
            envs.promotes_from(Environment::PRODUCTION),
            &[Environment::STAGING]
        );
        let err = envs.parse("prod").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown environment `prod`, expected one of: staging, production"
        );
    }

    #[test]
    fn listed_environments_replace_the_built_in_ones() {
        let envs = Environments::new(vec![
            spec("qa", Tier::Staging, &[]),
            spec("staging-eu", Tier::Staging, &[]),
            spec("production-eu", Tier::Production, &["staging-eu"]),
            spec("production-us", Tier::Production, &[]),
        ])
        .unwrap();
        assert!(envs.resolve(Environment::STAGING).is_none());
        assert_eq!(envs.parse("production-eu").unwrap().tier, Tier::Production);
        assert_eq!(
            envs.promotes_from(Environment::parse("production-eu").unwrap()),
            &[Environment::parse("staging-eu").unwrap()]
        );
        // Default: every staging-tier environment.
        assert_eq!(
            envs.promotes_from(Environment::parse("production-us").unwrap()),
            &[
                Environment::parse("qa").unwrap(),
                Environment::parse("staging-eu").unwrap()
            ]
        );
        assert_eq!(
            envs.promotes_from(Environment::parse("qa").unwrap()),
            &[Environment::parse("staging-eu").unwrap()]
        );
        assert!(
            envs.parse("staging")
                .unwrap_err()
                .to_string()
                .ends_with("expected one of: qa, staging-eu, production-eu, production-us")
        );
    }

    #[test]
    fn unusable_settings_are_refused() {
        let dup = Environments::new(vec![
            spec("qa", Tier::Staging, &[]),
            spec("qa", Tier::Production, &[]),
        ]);
        assert!(matches!(dup, Err(EnvironmentsError::Duplicate(_))));
        let unknown = Environments::new(vec![spec("prod", Tier::Production, &["stage"])]);
        assert!(matches!(
            unknown,
            Err(EnvironmentsError::UnknownPromotesFrom { .. })
        ));
        let itself = Environments::new(vec![spec("qa", Tier::Staging, &["qa"])]);
        assert!(matches!(
            itself,
            Err(EnvironmentsError::PromotesFromItself(_))
        ));
    }
}
