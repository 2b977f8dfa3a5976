//! Who a verified identity-provider token says the caller is (SPEC §18): a workload's claims
//! matched against the configured bindings, and a person's groups mapped to a role.
//!
//! Verifying the token (signature, issuer, audience, times) happens in the application with a
//! maintained JWT library; this module decides only what the verified claims mean.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::model::Role;
use crate::text::PrincipalName;

/// How roles rank when several apply: the highest wins (SPEC §18).
pub fn role_rank(role: Role) -> u8 {
    match role {
        Role::SecurityTeam => 4,
        Role::EngLead => 3,
        Role::OncallLead => 2,
        Role::Developer => 1,
    }
}

/// A claim's value as text for matching and templates: strings as they are, numbers and
/// booleans as JSON writes them. Arrays, objects and null have no text, so they never match.
pub fn claim_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// A claim's required value: exact text, or a glob whose `*` matches any characters (`/`
/// included), so `repo:acme/*` matches every repository of `acme`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimPattern {
    text: String,
}

impl ClaimPattern {
    pub fn new(text: &str) -> ClaimPattern {
        ClaimPattern {
            text: text.to_owned(),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `value` matches: every `*` stands for any run of characters, everything else
    /// for itself.
    pub fn matches(&self, value: &str) -> bool {
        let mut parts = self.text.split('*');
        let first = parts.next().unwrap_or_default();
        let Some(mut rest) = value.strip_prefix(first) else {
            return false;
        };
        let middle_and_last: Vec<&str> = parts.collect();
        let Some((last, middle)) = middle_and_last.split_last() else {
            // No `*` at all: exact.
            return rest.is_empty();
        };
        // Leftmost match of each middle part is always safe: it leaves the most room for what
        // follows.
        for part in middle {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
        rest.ends_with(last)
    }
}

/// A principal name built from claims, e.g. `github:{repository}@{environment}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrincipalTemplate {
    parts: Vec<TemplatePart>,
    text: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum TemplatePart {
    Literal(String),
    Claim(String),
}

impl PrincipalTemplate {
    /// Reads `{claim}` placeholders; braces must pair and enclose a claim name.
    pub fn parse(text: &str) -> Result<PrincipalTemplate, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            match rest.find(['{', '}']) {
                None => {
                    parts.push(TemplatePart::Literal(rest.to_owned()));
                    break;
                }
                Some(at) if rest[at..].starts_with('}') => {
                    return Err(format!(
                        "`}}` without `{{` at character {}",
                        text.len() - rest.len() + at
                    ));
                }
                Some(at) => {
                    if at > 0 {
                        parts.push(TemplatePart::Literal(rest[..at].to_owned()));
                    }
                    let after = &rest[at + 1..];
                    let Some(end) = after.find('}') else {
                        return Err("`{` without `}`".to_owned());
                    };
                    let claim = &after[..end];
                    if claim.is_empty() || claim.contains('{') {
                        return Err(
                            "`{}` must enclose a claim name, e.g. `{repository}`".to_owned()
                        );
                    }
                    parts.push(TemplatePart::Claim(claim.to_owned()));
                    rest = &after[end + 1..];
                }
            }
        }
        if parts.is_empty() {
            return Err("must not be empty".to_owned());
        }
        Ok(PrincipalTemplate {
            parts,
            text: text.to_owned(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The claims the template reads.
    pub fn claims(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            TemplatePart::Claim(c) => Some(c.as_str()),
            TemplatePart::Literal(_) => None,
        })
    }

    /// The rendered name, or the first claim it needs that has no text.
    pub fn render(&self, claims: &Map<String, Value>) -> Result<String, String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                TemplatePart::Literal(l) => out.push_str(l),
                TemplatePart::Claim(c) => out.push_str(
                    &claims
                        .get(c)
                        .and_then(claim_text)
                        .ok_or_else(|| c.clone())?,
                ),
            }
        }
        Ok(out)
    }
}

/// One `[[auth.oidc.bindings]]`: when every claim matches, the token is this principal with
/// this role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    pub claims: Vec<(String, ClaimPattern)>,
    pub principal: PrincipalTemplate,
    pub role: Role,
}

impl Binding {
    fn matches(&self, claims: &Map<String, Value>) -> bool {
        self.claims.iter().all(|(name, pattern)| {
            claims
                .get(name)
                .and_then(claim_text)
                .is_some_and(|value| pattern.matches(&value))
        })
    }
}

/// What the bindings make of a verified token's claims.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bound {
    /// The first binding whose claims all match; `matched` holds the claims it checked and
    /// those its principal template read, for the audit log and `whoami`.
    Principal {
        binding: usize,
        name: PrincipalName,
        role: Role,
        matched: Map<String, Value>,
    },
    /// No binding matches: `checked` holds the values of every claim a binding looks at (what
    /// an operator needs to see why, never the token).
    NoBinding { checked: Map<String, Value> },
    /// The first matching binding's template names no valid principal (a claim it reads is
    /// missing or makes a name with characters a principal may not have).
    BadPrincipal {
        binding: usize,
        message: String,
        checked: Map<String, Value>,
    },
}

/// Matches `claims` against `bindings` in order: the first whose claims all match decides.
pub fn bind(bindings: &[Binding], claims: &Map<String, Value>) -> Bound {
    let picked = |names: &mut dyn Iterator<Item = &str>| -> Map<String, Value> {
        names
            .filter_map(|n| claims.get(n).map(|v| (n.to_owned(), v.clone())))
            .collect()
    };
    let Some((index, binding)) = bindings.iter().enumerate().find(|(_, b)| b.matches(claims))
    else {
        let checked = picked(&mut bindings.iter().flat_map(|b| {
            b.claims
                .iter()
                .map(|(n, _)| n.as_str())
                .chain(b.principal.claims())
        }));
        return Bound::NoBinding { checked };
    };
    let matched = picked(
        &mut binding
            .claims
            .iter()
            .map(|(n, _)| n.as_str())
            .chain(binding.principal.claims()),
    );
    let rendered = match binding.principal.render(claims) {
        Ok(rendered) => rendered,
        Err(missing) => {
            return Bound::BadPrincipal {
                binding: index,
                message: format!(
                    "the principal template `{}` reads claim `{missing}`, which the token does not carry as text",
                    binding.principal.as_str()
                ),
                checked: matched,
            };
        }
    };
    match PrincipalName::parse(&rendered) {
        Ok(name) => Bound::Principal {
            binding: index,
            name,
            role: binding.role,
            matched,
        },
        Err(e) => Bound::BadPrincipal {
            binding: index,
            message: format!("the principal template makes `{rendered}`, which {e}"),
            checked: matched,
        },
    }
}

/// A person's role from the values of their role claim (usually `groups`): the highest role any
/// value maps to, or none (SPEC §18).
pub fn role_from_claim(value: Option<&Value>, roles: &BTreeMap<String, Role>) -> Option<Role> {
    let values: Vec<String> = match value {
        Some(Value::Array(items)) => items.iter().filter_map(claim_text).collect(),
        Some(other) => claim_text(other).into_iter().collect(),
        None => Vec::new(),
    };
    values
        .iter()
        .filter_map(|v| roles.get(v).copied())
        .max_by_key(|r| role_rank(*r))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn patterns_match_exactly_or_by_glob() {
        let cases: &[(&str, &str, bool)] = &[
            ("acme/payments", "acme/payments", true),
            ("acme/payments", "acme/payments2", false),
            ("acme/payments", "acme/payment", false),
            ("acme/*", "acme/payments", true),
            ("acme/*", "acme/", true),
            ("acme/*", "acme", false),
            ("acme/*", "evil/acme/payments", false),
            ("*", "", true),
            ("*", "anything/at/all", true),
            (
                "repo:acme/*:environment:production",
                "repo:acme/pay:environment:production",
                true,
            ),
            (
                "repo:acme/*:environment:production",
                "repo:acme/pay:environment:staging",
                false,
            ),
            ("*/main", "refs/heads/main", true),
            ("*/main", "refs/heads/main2", false),
            ("a*b*c", "abc", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "acb", false),
            ("a*a", "a", false),
            ("a*a", "aa", true),
            ("**", "x", true),
            ("", "", true),
            ("", "x", false),
        ];
        for (pattern, value, expected) in cases {
            assert_eq!(
                ClaimPattern::new(pattern).matches(value),
                *expected,
                "{pattern} against {value}"
            );
        }
    }

    #[test]
    fn templates_parse_and_render() {
        let t = PrincipalTemplate::parse("github:{repository}@{environment}").unwrap();
        assert_eq!(
            t.claims().collect::<Vec<_>>(),
            ["repository", "environment"]
        );
        let c = claims(json!({"repository": "acme/payments", "environment": "production"}));
        assert_eq!(t.render(&c).unwrap(), "github:acme/payments@production");
        assert_eq!(
            t.render(&claims(json!({"repository": "acme/payments"}))),
            Err("environment".to_owned())
        );
        assert_eq!(
            PrincipalTemplate::parse("ci-{run_id}")
                .unwrap()
                .render(&claims(json!({"run_id": 42})))
                .unwrap(),
            "ci-42"
        );
        assert_eq!(
            PrincipalTemplate::parse("fixed")
                .unwrap()
                .render(&Map::new())
                .unwrap(),
            "fixed"
        );
        for bad in ["", "{", "}", "a{b", "a}b", "{}", "{a{b}}", "x{a}}"] {
            assert!(PrincipalTemplate::parse(bad).is_err(), "{bad}");
        }
    }

    fn binding(claims: &[(&str, &str)], principal: &str, role: Role) -> Binding {
        Binding {
            claims: claims
                .iter()
                .map(|(n, p)| ((*n).to_owned(), ClaimPattern::new(p)))
                .collect(),
            principal: PrincipalTemplate::parse(principal).unwrap(),
            role,
        }
    }

    #[test]
    fn the_first_matching_binding_decides() {
        let bindings = [
            binding(
                &[
                    ("repository", "acme/payments"),
                    ("environment", "production"),
                ],
                "github:{repository}@{environment}",
                Role::EngLead,
            ),
            binding(
                &[("repository", "acme/*")],
                "github:{repository}",
                Role::Developer,
            ),
        ];
        let production = claims(json!({
            "repository": "acme/payments", "environment": "production", "sub": "x", "ref": "main"
        }));
        let Bound::Principal {
            binding,
            name,
            role,
            matched,
        } = bind(&bindings, &production)
        else {
            panic!("bound");
        };
        assert_eq!(
            (binding, name.as_str(), role),
            (0, "github:acme/payments@production", Role::EngLead)
        );
        assert_eq!(
            Value::Object(matched),
            json!({"repository": "acme/payments", "environment": "production"}),
            "only the claims the binding looked at"
        );

        let staging = claims(json!({"repository": "acme/payments", "environment": "staging"}));
        let Bound::Principal {
            binding,
            name,
            role,
            ..
        } = bind(&bindings, &staging)
        else {
            panic!("bound");
        };
        assert_eq!(
            (binding, name.as_str(), role),
            (1, "github:acme/payments", Role::Developer)
        );

        let other = claims(
            json!({"repository": "evil/payments", "environment": "production", "secret": "s"}),
        );
        assert_eq!(
            bind(&bindings, &other),
            Bound::NoBinding {
                checked: claims(
                    json!({"repository": "evil/payments", "environment": "production"})
                )
            }
        );
        assert!(matches!(bind(&[], &other), Bound::NoBinding { .. }));
    }

    #[test]
    fn claims_of_other_types_never_match_and_bad_principals_are_refused() {
        let bindings = [binding(
            &[("repository", "*")],
            "github:{repository}",
            Role::Developer,
        )];
        for value in [json!(["acme/payments"]), json!({"a": 1}), Value::Null] {
            assert!(matches!(
                bind(&bindings, &claims(json!({ "repository": value }))),
                Bound::NoBinding { .. }
            ));
        }
        assert!(matches!(
            bind(&bindings, &claims(json!({"repository": 7}))),
            Bound::Principal { .. }
        ));
        let spaces = bind(&bindings, &claims(json!({"repository": "a b"})));
        assert!(
            matches!(spaces, Bound::BadPrincipal { binding: 0, .. }),
            "{spaces:?}"
        );
        let missing = [binding(&[("sub", "*")], "x:{repository}", Role::Developer)];
        assert!(matches!(
            bind(&missing, &claims(json!({"sub": "s"}))),
            Bound::BadPrincipal { .. }
        ));
    }

    #[test]
    fn the_highest_mapped_role_wins() {
        let roles: BTreeMap<String, Role> = [
            ("devs", Role::Developer),
            ("leads", Role::EngLead),
            ("sec", Role::SecurityTeam),
            ("oncall", Role::OncallLead),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let cases: &[(Value, Option<Role>)] = &[
            (json!(["devs"]), Some(Role::Developer)),
            (json!(["devs", "leads"]), Some(Role::EngLead)),
            (json!(["oncall", "devs"]), Some(Role::OncallLead)),
            (json!(["leads", "sec", "devs"]), Some(Role::SecurityTeam)),
            (json!(["unknown"]), None),
            (json!([]), None),
            (json!("leads"), Some(Role::EngLead)),
            (json!([["leads"]]), None),
            (json!({"leads": true}), None),
        ];
        for (value, expected) in cases {
            assert_eq!(role_from_claim(Some(value), &roles), *expected, "{value}");
        }
        assert_eq!(role_from_claim(None, &roles), None);
    }

    /// An independent reference for globs: the pattern as an anchored regular expression.
    fn reference(pattern: &str, value: &str) -> bool {
        let parts: Vec<String> = pattern.split('*').map(regex::escape).collect();
        regex::Regex::new(&format!("^(?s:{})$", parts.join(".*")))
            .expect("an escaped pattern compiles")
            .is_match(value)
    }

    proptest::proptest! {
        #[test]
        fn globs_agree_with_a_regex_reference(
            pattern in "[ab/*]{0,8}",
            value in "[ab/]{0,10}",
        ) {
            proptest::prop_assert_eq!(
                ClaimPattern::new(&pattern).matches(&value),
                reference(&pattern, &value),
                "{:?} against {:?}", pattern, value
            );
        }
    }
}
