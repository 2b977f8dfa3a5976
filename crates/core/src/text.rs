//! Free-text inputs that are checked once, at the edge, and trusted afterwards.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a value was refused; the caller names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidText(pub String);

/// A human reason or justification: not blank, at most [`Reason::MAX_CHARS`] characters, no
/// control characters except newline and tab (so text cannot rewrite a terminal or a log
/// line). Leading and trailing whitespace is trimmed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Reason(String);

impl Reason {
    pub const MAX_CHARS: usize = 2_000;

    pub fn parse(text: &str) -> Result<Self, InvalidText> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(InvalidText("must not be empty".into()));
        }
        if trimmed.chars().count() > Self::MAX_CHARS {
            return Err(InvalidText(format!(
                "must be at most {} characters",
                Self::MAX_CHARS
            )));
        }
        if trimmed
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
        {
            return Err(InvalidText(
                "must not contain control characters (other than newline and tab)".into(),
            ));
        }
        Ok(Reason(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A release identifier such as `v1.2.3`: 1 to 128 visible characters, no whitespace.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ReleaseId(String);

impl ReleaseId {
    pub const MAX_CHARS: usize = 128;

    pub fn parse(text: &str) -> Result<Self, InvalidText> {
        if text.is_empty() {
            return Err(InvalidText("must not be empty".into()));
        }
        if text.chars().count() > Self::MAX_CHARS {
            return Err(InvalidText(format!(
                "must be at most {} characters",
                Self::MAX_CHARS
            )));
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(InvalidText(
                "must not contain whitespace or control characters".into(),
            ));
        }
        Ok(ReleaseId(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for ReleaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `text` if it is 1 to `max` ASCII letters, digits and `extra` characters.
fn restricted(text: &str, max: usize, extra: &[char]) -> Result<String, InvalidText> {
    if text.is_empty() || text.len() > max {
        return Err(InvalidText(format!("must be 1 to {max} characters")));
    }
    if !text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || extra.contains(&c))
    {
        let extra: Vec<String> = extra.iter().map(char::to_string).collect();
        return Err(InvalidText(format!(
            "may contain only letters, digits and {}",
            extra.join(" ")
        )));
    }
    Ok(text.to_owned())
}

/// A name of a principal, probe or gate: 1 to 64 characters from `A-Z a-z 0-9 . _ @ -`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Name(String);

impl Name {
    pub const MAX_CHARS: usize = 64;

    pub fn parse(text: &str) -> Result<Self, InvalidText> {
        restricted(text, Self::MAX_CHARS, &['.', '_', '@', '-']).map(Name)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The name of any principal (SPEC §2, §18): a token's [`Name`], or one an identity provider
/// gives — `github:acme/payments@production` from a workload binding, `alice+ops@example.com`
/// from single sign-on. 1 to 200 characters of `A-Z a-z 0-9 . _ @ - : / +`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PrincipalName(String);

impl PrincipalName {
    pub const MAX_CHARS: usize = 200;

    pub fn parse(text: &str) -> Result<Self, InvalidText> {
        restricted(text, Self::MAX_CHARS, &['.', '_', '@', '-', ':', '/', '+']).map(PrincipalName)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for PrincipalName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A service within an environment (SPEC §15): 1 to 128 characters of `a-z A-Z 0-9 - _ . /`,
/// so `payments/api` works.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ServiceName(String);

impl ServiceName {
    pub const MAX_CHARS: usize = 128;

    pub fn parse(text: &str) -> Result<Self, InvalidText> {
        restricted(text, Self::MAX_CHARS, &['-', '_', '.', '/']).map(ServiceName)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The characters Rust's `char::is_whitespace` accepts (Unicode `White_Space`), as the body of
/// a regular-expression class: what [`Reason::parse`] trims.
const WHITESPACE_CLASS: &str =
    r"\t\n\x0B\x0C\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000";
/// Neither whitespace nor a control character, as the body of a negated class.
const NOT_VISIBLE_CLASS: &str =
    r"\x00-\x20\x7F-\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000";

/// A string schema for the OpenAPI document: these types check their rules at the edge, so the
/// document states the same rules (a generated client, or a fuzzer, needs no guesswork).
fn string_schema(
    description: &str,
    min_length: usize,
    max_length: Option<usize>,
    pattern: String,
) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .min_length(Some(min_length))
        .max_length(max_length)
        .pattern(Some(pattern))
        .description(Some(description))
        .into()
}

impl utoipa::PartialSchema for Reason {
    /// Not blank; at most `MAX_CHARS` once leading and trailing whitespace is trimmed; no
    /// control characters but newline and tab inside.
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let inner = r"[^\x00-\x08\x0B-\x1F\x7F-\x9F]";
        let visible = format!("[^{NOT_VISIBLE_CLASS}]");
        let space = format!("[{WHITESPACE_CLASS}]");
        string_schema(
            &format!(
                "Free text: not blank, at most {} characters once leading and trailing \
                 whitespace is trimmed (it is stored trimmed), no control characters other than \
                 newline and tab.",
                Self::MAX_CHARS
            ),
            1,
            None,
            format!(
                "^{space}*{visible}(?:{inner}{{0,{}}}{visible})?{space}*$",
                Self::MAX_CHARS - 2
            ),
        )
    }
}

impl utoipa::ToSchema for Reason {}

impl utoipa::PartialSchema for ReleaseId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        string_schema(
            &format!(
                "A release (or deployment) identifier such as `v1.2.3`: 1 to {} characters, no \
                 whitespace or control characters.",
                Self::MAX_CHARS
            ),
            1,
            Some(Self::MAX_CHARS),
            format!("^[^{NOT_VISIBLE_CLASS}]{{1,{}}}$", Self::MAX_CHARS),
        )
    }
}

impl utoipa::ToSchema for ReleaseId {}

impl utoipa::PartialSchema for Name {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        string_schema(
            &format!(
                "A name (of a principal, probe, gate or freeze): 1 to {} characters of \
                 `A-Z a-z 0-9 . _ @ -`.",
                Self::MAX_CHARS
            ),
            1,
            Some(Self::MAX_CHARS),
            format!("^[A-Za-z0-9._@-]{{1,{}}}$", Self::MAX_CHARS),
        )
    }
}

impl utoipa::ToSchema for Name {}

impl utoipa::PartialSchema for PrincipalName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        string_schema(
            &format!(
                "A principal's name: 1 to {} characters of `A-Z a-z 0-9 . _ @ - : / +` \
                 (a token's name, `github:acme/payments@production`, `alice@example.com`).",
                Self::MAX_CHARS
            ),
            1,
            Some(Self::MAX_CHARS),
            format!("^[A-Za-z0-9._@:/+-]{{1,{}}}$", Self::MAX_CHARS),
        )
    }
}

impl utoipa::ToSchema for PrincipalName {}

impl utoipa::PartialSchema for ServiceName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        string_schema(
            &format!(
                "A service within an environment: 1 to {} characters of `a-z A-Z 0-9 - _ . /`, \
                 e.g. `payments/api`.",
                Self::MAX_CHARS
            ),
            1,
            Some(Self::MAX_CHARS),
            format!("^[A-Za-z0-9_./-]{{1,{}}}$", Self::MAX_CHARS),
        )
    }
}

impl utoipa::ToSchema for ServiceName {}

/// An override's lifetime in whole minutes, from 1 to the configured maximum (SPEC §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TtlMinutes(u32);

impl TtlMinutes {
    /// SPEC §4: an override lives 60 minutes unless asked otherwise.
    pub const DEFAULT: TtlMinutes = TtlMinutes(60);
    /// SPEC §4: the configured maximum defaults to 240 minutes.
    pub const DEFAULT_MAX: u32 = 240;

    pub fn parse(minutes: i64, max: u32) -> Result<Self, InvalidText> {
        match u32::try_from(minutes) {
            Ok(m) if (1..=max).contains(&m) => Ok(TtlMinutes(m)),
            _ => Err(InvalidText(format!(
                "must be a whole number of minutes from 1 to {max}"
            ))),
        }
    }

    pub const fn get(self) -> u32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_is_trimmed_and_never_blank() {
        assert_eq!(Reason::parse("  ok ").unwrap().as_str(), "ok");
        assert!(Reason::parse("").is_err());
        assert!(Reason::parse(" \n\t").is_err());
        assert!(Reason::parse(&"x".repeat(Reason::MAX_CHARS)).is_ok());
        assert!(Reason::parse(&"x".repeat(Reason::MAX_CHARS + 1)).is_err());
        assert!(Reason::parse("line one\nline two\twith tab").is_ok());
        assert!(Reason::parse("looks fine\u{1b}[2J").is_err(), "ANSI escape");
        assert!(Reason::parse("carriage\rreturn").is_err());
    }

    #[test]
    fn release_ids() {
        assert!(ReleaseId::parse("v1.2.3").is_ok());
        assert!(ReleaseId::parse("release/2026-11-26+build.7").is_ok());
        assert!(ReleaseId::parse("").is_err());
        assert!(ReleaseId::parse("v1 2").is_err());
        assert!(ReleaseId::parse(&"a".repeat(129)).is_err());
    }

    #[test]
    fn principal_names() {
        assert!(Name::parse("eng-lead").is_ok());
        assert!(Name::parse("alice@example.com").is_ok());
        assert!(Name::parse("").is_err());
        assert!(Name::parse("bob smith").is_err());
        assert!(Name::parse(&"a".repeat(65)).is_err());
        assert!(PrincipalName::parse("github:acme/payments@production").is_ok());
        assert!(PrincipalName::parse("alice+ops@example.com").is_ok());
        assert!(PrincipalName::parse("eng-lead").is_ok());
        assert!(PrincipalName::parse("").is_err());
        assert!(PrincipalName::parse("bob smith").is_err());
        assert!(PrincipalName::parse("a{b}").is_err());
        assert!(PrincipalName::parse(&"a".repeat(201)).is_err());
    }

    #[test]
    fn service_names() {
        for good in ["payments", "payments/api", "A-b_c.d/e", &"s".repeat(128)] {
            assert!(ServiceName::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "pay ments",
            "pay\nments",
            "pay:ments",
            "pé",
            &"s".repeat(129),
        ] {
            assert!(ServiceName::parse(bad).is_err(), "{bad}");
        }
    }

    /// The pattern the OpenAPI document states for a type.
    fn pattern_of<T: utoipa::PartialSchema>() -> regex::Regex {
        let utoipa::openapi::RefOr::T(utoipa::openapi::schema::Schema::Object(object)) =
            T::schema()
        else {
            panic!("not an inline object schema");
        };
        regex::Regex::new(object.pattern.as_deref().expect("a pattern")).expect("a valid regex")
    }

    /// Strings near every rule's edges: whitespace of every kind, control characters, lengths
    /// around each maximum.
    fn edge_cases() -> Vec<String> {
        let mut cases: Vec<String> = [
            "",
            " ",
            "a",
            " a ",
            "\ta\n",
            "\u{a0}a\u{3000}",
            "\u{85}a",
            "\ra\r",
            "a\rb",
            "a\u{85}b",
            "a\u{1b}b",
            "a\u{7f}",
            "\u{0}",
            "a b",
            "a\tb",
            "a\nb",
            "\u{feff}",
            "\u{1c}a",
            "a\u{200b}",
            "v1.2.3",
            "payments/api",
            "alice@example.com",
            "pé",
            "😀",
            "\u{2028}",
            "x\u{2029}y",
            "A-b_c.d/e",
            "@",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        for n in [63, 64, 65, 127, 128, 129, 1_999, 2_000, 2_001] {
            cases.push("x".repeat(n));
            cases.push(format!("  {}\n", "x".repeat(n)));
            cases.push(format!("x{}x", " ".repeat(n.saturating_sub(2))));
            cases.push("é".repeat(n));
        }
        cases
    }

    fn assert_pattern_is_the_rule<T: utoipa::PartialSchema>(
        parse: impl Fn(&str) -> bool,
        extra: &[String],
    ) {
        let pattern = pattern_of::<T>();
        for case in edge_cases().iter().chain(extra) {
            assert_eq!(
                pattern.is_match(case),
                parse(case),
                "{case:?} against {}",
                pattern.as_str()
            );
        }
    }

    /// The document's patterns (ECMA-262 syntax, which the `regex` crate reads alike for these)
    /// accept exactly what the parsers accept.
    #[test]
    fn documented_patterns_are_the_parsers_rules() {
        assert_pattern_is_the_rule::<Reason>(|s| Reason::parse(s).is_ok(), &[]);
        assert_pattern_is_the_rule::<ReleaseId>(|s| ReleaseId::parse(s).is_ok(), &[]);
        assert_pattern_is_the_rule::<Name>(|s| Name::parse(s).is_ok(), &[]);
        assert_pattern_is_the_rule::<ServiceName>(|s| ServiceName::parse(s).is_ok(), &[]);
        assert_pattern_is_the_rule::<PrincipalName>(
            |s| PrincipalName::parse(s).is_ok(),
            &[
                "github:acme/payments@production".into(),
                "a+b@c".into(),
                "x".repeat(200),
                "x".repeat(201),
            ],
        );
    }

    /// Each type's documented pattern, compiled once, with its parser.
    #[allow(clippy::type_complexity)]
    static RULES: std::sync::LazyLock<Vec<(regex::Regex, fn(&str) -> bool)>> =
        std::sync::LazyLock::new(|| {
            vec![
                (pattern_of::<Reason>(), |s| Reason::parse(s).is_ok()),
                (pattern_of::<ReleaseId>(), |s| ReleaseId::parse(s).is_ok()),
                (pattern_of::<Name>(), |s| Name::parse(s).is_ok()),
                (pattern_of::<ServiceName>(), |s| {
                    ServiceName::parse(s).is_ok()
                }),
                (pattern_of::<PrincipalName>(), |s| {
                    PrincipalName::parse(s).is_ok()
                }),
            ]
        });

    proptest::proptest! {
        #[test]
        fn documented_patterns_agree_with_the_parsers_on_any_text(
            text in "(\\PC|\\s|\\p{Cc}){0,40}",
            pad in "[ \\t\\n\\r\\u{85}\\u{a0}\\u{2000}]{0,3}",
        ) {
            for case in [text.clone(), format!("{pad}{text}{pad}")] {
                for (pattern, parse) in RULES.iter() {
                    proptest::prop_assert_eq!(
                        pattern.is_match(&case), parse(&case), "{:?} against {}", case, pattern.as_str());
                }
            }
        }
    }

    #[test]
    fn ttl_bounds_are_inclusive() {
        assert!(TtlMinutes::parse(0, 240).is_err());
        assert_eq!(TtlMinutes::parse(1, 240).unwrap().get(), 1);
        assert_eq!(TtlMinutes::parse(240, 240).unwrap().get(), 240);
        assert!(TtlMinutes::parse(241, 240).is_err());
        assert!(TtlMinutes::parse(-5, 240).is_err());
        assert!(TtlMinutes::parse(i64::MAX, 240).is_err());
    }
}
