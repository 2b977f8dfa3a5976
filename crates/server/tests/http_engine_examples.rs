//! The deploy-engine examples of the docs, sent as the engines send them (SPEC §17, pollers).
//!
//! `docs/integrations/examples/argo-rollouts-analysis-template.yaml` (an Argo Rollouts
//! `AnalysisTemplate`, web provider) and `docs/integrations/examples/kargo-http-step.yaml` (a
//! Kargo `Stage` whose first promotion step is `uses: http`) are read here, at run time, with a
//! small strict YAML reader. Each test takes from them the request the tool would send — method,
//! URL path and query, headers — fills in the template variables as the tool would (Argo: raw
//! `{{args.NAME}}` text; Kargo: `${{ ... }}` expressions, then `queryParams` added and encoded
//! as Go's `url.Values.Encode` does, sorted by key), sends exactly that through the router, and
//! reads the answer as the tool reads it (Argo: `jsonPath` then `successCondition` /
//! `failureCondition`; Kargo: `successExpression` / `failureExpression` over `response.status`
//! and `response.body`, then `outputs`). The docs page must carry each file verbatim, so what
//! the docs show is what is tested.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::{API, Harness, at_minutes, override_body};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

const ARGO_FILE: &str = "docs/integrations/examples/argo-rollouts-analysis-template.yaml";
const KARGO_FILE: &str = "docs/integrations/examples/kargo-http-step.yaml";
const POLLERS_PAGE: &str = "docs/integrations/pollers.md";
const README: &str = "README.md";

/// The base URL the tests give the tools; the router is reached in-process, so only the path
/// and query after it are sent.
const BASE: &str = "http://deploy-safety.test:8080";
const SERVICE: &str = "shop/payments";
const RELEASE: &str = "v1.2.3";

/// A file of the workspace, by its path from the workspace root.
fn workspace_file(path: &str) -> String {
    let full = format!("{}/../../{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("cannot read {full}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// A small, strict YAML reader: block mappings and sequences, plain and quoted scalars,
// full-line comments. Anything else (flow collections, block scalars, anchors, tags, trailing
// comments, tabs, several documents) fails loudly, naming the line.
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
enum Yaml {
    Str(String),
    Map(Vec<(String, Yaml)>),
    Seq(Vec<Yaml>),
}

#[derive(Clone, Debug)]
struct Line {
    number: usize,
    indent: usize,
    text: String,
}

fn yaml_lines(source: &str) -> Vec<Line> {
    let mut lines = Vec::new();
    for (index, raw) in source.lines().enumerate() {
        let number = index + 1;
        assert!(
            !raw.contains('\t'),
            "line {number}: tabs are not YAML indentation"
        );
        let text = raw.trim_end();
        let content = text.trim_start();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        assert!(
            content != "---" && content != "...",
            "line {number}: one document per file"
        );
        assert!(
            !content.contains(" #"),
            "line {number}: trailing comments are not supported by this reader: {content}"
        );
        lines.push(Line {
            number,
            indent: text.len() - content.len(),
            text: content.to_owned(),
        });
    }
    lines
}

fn parse_yaml(source: &str) -> Yaml {
    let mut lines = yaml_lines(source);
    assert!(!lines.is_empty(), "an empty YAML file");
    let mut at = 0;
    let indent = lines[0].indent;
    assert_eq!(
        indent, 0,
        "line {}: the document must start at column 0",
        lines[0].number
    );
    let document = parse_block(&mut lines, &mut at, 0);
    if at < lines.len() {
        panic!(
            "line {}: unexpected indentation or content: {}",
            lines[at].number, lines[at].text
        );
    }
    document
}

fn is_item(text: &str) -> bool {
    text == "-" || text.starts_with("- ")
}

fn parse_block(lines: &mut [Line], at: &mut usize, indent: usize) -> Yaml {
    if is_item(&lines[*at].text) {
        parse_seq(lines, at, indent)
    } else {
        parse_map(lines, at, indent)
    }
}

fn parse_seq(lines: &mut [Line], at: &mut usize, indent: usize) -> Yaml {
    let mut items = Vec::new();
    while *at < lines.len() && lines[*at].indent == indent && is_item(&lines[*at].text) {
        let line = lines[*at].clone();
        let rest = line.text[1..].trim_start().to_owned();
        if rest.is_empty() {
            *at += 1;
            assert!(
                *at < lines.len() && lines[*at].indent > indent,
                "line {}: an empty sequence item",
                line.number
            );
            let child = lines[*at].indent;
            items.push(parse_block(lines, at, child));
        } else if split_key(&rest, line.number).is_some() {
            // `- key: value` opens a mapping whose keys line up with `key`.
            let column = indent + (line.text.len() - rest.len());
            lines[*at].indent = column;
            lines[*at].text = rest;
            items.push(parse_map(lines, at, column));
        } else {
            items.push(Yaml::Str(scalar(&rest, line.number)));
            *at += 1;
        }
    }
    Yaml::Seq(items)
}

fn parse_map(lines: &mut [Line], at: &mut usize, indent: usize) -> Yaml {
    let mut entries: Vec<(String, Yaml)> = Vec::new();
    while *at < lines.len() && lines[*at].indent == indent && !is_item(&lines[*at].text) {
        let line = lines[*at].clone();
        let (key, value) = split_key(&line.text, line.number).unwrap_or_else(|| {
            panic!("line {}: expected `key: value`: {}", line.number, line.text)
        });
        assert!(
            entries.iter().all(|(k, _)| *k != key),
            "line {}: duplicate key `{key}`",
            line.number
        );
        *at += 1;
        let value = if value.is_empty() {
            let nested = *at < lines.len()
                && (lines[*at].indent > indent
                    || (lines[*at].indent == indent && is_item(&lines[*at].text)));
            assert!(nested, "line {}: `{key}` has no value", line.number);
            let child = lines[*at].indent;
            parse_block(lines, at, child)
        } else {
            Yaml::Str(scalar(&value, line.number))
        };
        entries.push((key, value));
    }
    if *at < lines.len() && lines[*at].indent > indent {
        panic!(
            "line {}: unexpected indentation: {}",
            lines[*at].number, lines[*at].text
        );
    }
    Yaml::Map(entries)
}

/// `key: value` or `key:` → (key, value text); `None` when the line is not a mapping entry.
fn split_key(text: &str, number: usize) -> Option<(String, String)> {
    if text.starts_with('"') || text.starts_with('\'') {
        return None;
    }
    let (key, value) = match text.find(": ") {
        Some(at) => (&text[..at], text[at + 2..].trim()),
        None if text.ends_with(':') => (&text[..text.len() - 1], ""),
        None => return None,
    };
    assert!(
        !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')),
        "line {number}: unsupported key `{key}`"
    );
    Some((key.to_owned(), value.to_owned()))
}

fn scalar(text: &str, number: usize) -> String {
    if let Some(rest) = text.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = rest.chars();
        loop {
            match chars.next() {
                None => panic!("line {number}: unterminated double-quoted string"),
                Some('"') => break,
                Some('\\') => match chars.next() {
                    Some('"') => out.push('"'),
                    Some('\\') => out.push('\\'),
                    Some('/') => out.push('/'),
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    other => panic!("line {number}: unsupported escape \\{other:?}"),
                },
                Some(c) => out.push(c),
            }
        }
        let tail: String = chars.collect();
        assert!(
            tail.trim().is_empty(),
            "line {number}: text after a quoted string: {tail}"
        );
        return out;
    }
    if let Some(rest) = text.strip_prefix('\'') {
        let mut out = String::new();
        let mut chars = rest.chars().peekable();
        loop {
            match chars.next() {
                None => panic!("line {number}: unterminated single-quoted string"),
                Some('\'') if chars.peek() == Some(&'\'') => {
                    chars.next();
                    out.push('\'');
                }
                Some('\'') => break,
                Some(c) => out.push(c),
            }
        }
        let tail: String = chars.collect();
        assert!(
            tail.trim().is_empty(),
            "line {number}: text after a quoted string: {tail}"
        );
        return out;
    }
    let first = text.chars().next().unwrap();
    assert!(
        !matches!(
            first,
            '{' | '[' | '&' | '*' | '!' | '|' | '>' | '%' | '@' | '`' | ']' | '}' | ','
        ),
        "line {number}: unsupported YAML (flow collection, block scalar, anchor, tag …): {text}"
    );
    assert!(
        !text.contains(": "),
        "line {number}: `: ` inside a plain scalar: {text}"
    );
    text.to_owned()
}

impl Yaml {
    /// The value at `path` (dot-separated keys), failing loudly with the path when absent.
    #[track_caller]
    fn at(&self, path: &str) -> &Yaml {
        self.get(path)
            .unwrap_or_else(|| panic!("`{path}` not found in {self:?}"))
    }

    fn get(&self, path: &str) -> Option<&Yaml> {
        let mut node = self;
        for key in path.split('.') {
            let Yaml::Map(entries) = node else {
                panic!("`{path}`: `{key}` is looked up in something that is not a mapping");
            };
            node = &entries.iter().find(|(k, _)| k == key)?.1;
        }
        Some(node)
    }

    #[track_caller]
    fn str_at(&self, path: &str) -> &str {
        match self.at(path) {
            Yaml::Str(text) => text,
            other => panic!("`{path}` is not a string: {other:?}"),
        }
    }

    #[track_caller]
    fn opt_str(&self, path: &str) -> Option<&str> {
        self.get(path).map(|v| match v {
            Yaml::Str(text) => text.as_str(),
            other => panic!("`{path}` is not a string: {other:?}"),
        })
    }

    #[track_caller]
    fn seq_at(&self, path: &str) -> &[Yaml] {
        match self.at(path) {
            Yaml::Seq(items) => items,
            other => panic!("`{path}` is not a sequence: {other:?}"),
        }
    }

    #[track_caller]
    fn u32_at(&self, path: &str) -> u32 {
        let text = self.str_at(path);
        text.parse()
            .unwrap_or_else(|_| panic!("`{path}` is not a whole number: {text}"))
    }

    /// The keys of a mapping.
    fn keys(&self) -> Vec<&str> {
        match self {
            Yaml::Map(entries) => entries.iter().map(|(k, _)| k.as_str()).collect(),
            other => panic!("not a mapping: {other:?}"),
        }
    }
}

#[test]
fn the_yaml_reader_is_strict() {
    let parsed = parse_yaml(
        "a: 1\nb:\n  c: \"x: y\"\n  d:\n  - e: 'it''s'\n    f: g\n  - plain text\nh:\n- i\n",
    );
    assert_eq!(parsed.str_at("a"), "1");
    assert_eq!(parsed.str_at("b.c"), "x: y");
    assert_eq!(parsed.seq_at("b.d")[0].str_at("e"), "it's");
    assert_eq!(parsed.seq_at("b.d")[0].str_at("f"), "g");
    assert_eq!(parsed.seq_at("b.d")[1], Yaml::Str("plain text".to_owned()));
    assert_eq!(parsed.seq_at("h"), [Yaml::Str("i".to_owned())]);
    for bad in [
        "a: {b: 1}\n",
        "a: |\n  text\n",
        "a: 1 # comment\n",
        "a: 1\na: 2\n",
        "a:\n\tb: 1\n",
        "a: 1\n  b: 2\n",
        "a: &x 1\n",
        "a:\n",
    ] {
        let result = std::panic::catch_unwind(|| parse_yaml(bad));
        assert!(result.is_err(), "accepted: {bad:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Sending a request as a tool does, and the answer as the router gives it
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct Answer {
    status: StatusCode,
    body: Value,
    text: String,
}

/// The path and query of `url` after `BASE`.
#[track_caller]
fn path_of(url: &str) -> &str {
    let path = url
        .strip_prefix(BASE)
        .unwrap_or_else(|| panic!("`{url}` does not start with the base URL {BASE}"));
    assert!(
        path.starts_with(&format!("{API}/")),
        "`{url}` is not under {API}"
    );
    path
}

async fn send_as_tool(
    h: &Harness,
    method: Method,
    url: &str,
    headers: &[(String, String)],
) -> Answer {
    let mut request = Request::builder().method(method).uri(path_of(url));
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let response = h
        .router
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .expect("the router never fails");
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer { status, body, text }
}

// ---------------------------------------------------------------------------------------------
// Argo Rollouts: the AnalysisTemplate's web metric
// ---------------------------------------------------------------------------------------------

/// Where an argument of the template gets its value.
#[derive(Clone, Debug, PartialEq)]
enum ArgSource {
    /// Given by the Rollout that uses the template.
    Required,
    /// A default, which the Rollout may override.
    Value(String),
    /// A key of a Kubernetes Secret in the Rollout's namespace.
    Secret { name: String, key: String },
}

#[derive(Debug)]
struct ArgoTemplate {
    args: Vec<(String, ArgSource)>,
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    json_path: String,
    success_condition: String,
    failure_condition: String,
    count: u32,
    failure_limit: u32,
    inconclusive_limit: u32,
    interval: String,
}

fn argo_template() -> ArgoTemplate {
    let doc = parse_yaml(&workspace_file(ARGO_FILE));
    assert_eq!(doc.str_at("apiVersion"), "argoproj.io/v1alpha1");
    assert_eq!(doc.str_at("kind"), "AnalysisTemplate");
    let args = doc
        .seq_at("spec.args")
        .iter()
        .map(|arg| {
            let name = arg.str_at("name").to_owned();
            let source = match (arg.opt_str("value"), arg.get("valueFrom")) {
                (Some(value), None) => ArgSource::Value(value.to_owned()),
                (None, Some(from)) => ArgSource::Secret {
                    name: from.str_at("secretKeyRef.name").to_owned(),
                    key: from.str_at("secretKeyRef.key").to_owned(),
                },
                (None, None) => ArgSource::Required,
                (Some(_), Some(_)) => panic!("arg {name} has both value and valueFrom"),
            };
            (name, source)
        })
        .collect();
    let metrics = doc.seq_at("spec.metrics");
    assert_eq!(metrics.len(), 1, "one metric: the gate");
    let metric = &metrics[0];
    let web = metric.at("provider.web");
    assert_eq!(
        metric.at("provider").keys(),
        ["web"],
        "the web metric provider"
    );
    let headers = web
        .seq_at("headers")
        .iter()
        .map(|h| (h.str_at("key").to_owned(), h.str_at("value").to_owned()))
        .collect();
    assert!(web.get("body").is_none(), "a GET sends no body");
    ArgoTemplate {
        args,
        method: web.opt_str("method").unwrap_or("GET").to_owned(),
        url: web.str_at("url").to_owned(),
        headers,
        json_path: web.str_at("jsonPath").to_owned(),
        success_condition: metric.str_at("successCondition").to_owned(),
        failure_condition: metric.str_at("failureCondition").to_owned(),
        count: metric.u32_at("count"),
        failure_limit: metric
            .opt_str("failureLimit")
            .map_or(0, |_| metric.u32_at("failureLimit")),
        inconclusive_limit: metric
            .opt_str("inconclusiveLimit")
            .map_or(0, |_| metric.u32_at("inconclusiveLimit")),
        interval: metric.str_at("interval").to_owned(),
    }
}

/// Argo's argument substitution: every `{{args.NAME}}` (or `{{ args.NAME }}`) replaced by its
/// value, as text; nothing may be left unresolved.
#[track_caller]
fn argo_resolve(text: &str, args: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let close = rest[open..]
            .find("}}")
            .unwrap_or_else(|| panic!("unclosed `{{{{` in {text}"));
        let tag = rest[open + 2..open + close].trim();
        let name = tag
            .strip_prefix("args.")
            .unwrap_or_else(|| panic!("`{{{{{tag}}}}}` is not an argument in {text}"));
        let value = args
            .get(name)
            .unwrap_or_else(|| panic!("argument `{name}` has no value"));
        out.push_str(value);
        rest = &rest[open + close + 2..];
    }
    out.push_str(rest);
    out
}

/// A measurement's phase, as Argo Rollouts records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Measurement {
    Successful,
    Failed,
    Inconclusive,
    /// Not a measurement of the gate: a non-2xx answer, a body without the JSON path. Argo
    /// retries it and does not count it; too many in a row fail the analysis.
    Error,
}

/// Argo's `successCondition` / `failureCondition`, in the one form the template uses.
#[track_caller]
fn argo_condition(condition: &str, result: &str) -> bool {
    let literal = condition
        .strip_prefix("result == \"")
        .and_then(|c| c.strip_suffix('"'))
        .unwrap_or_else(|| {
            panic!("only `result == \"...\"` is understood here, not `{condition}`")
        });
    result == literal
}

/// The k8s JSONPath `{$.a.b}` of Argo's web provider: a string is printed as it is.
fn argo_json_path(path: &str, body: &Value) -> Option<String> {
    let inner = path.strip_prefix("{$.")?.strip_suffix('}')?;
    let mut node = body;
    for key in inner.split('.') {
        node = node.get(key)?;
    }
    Some(match node {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    })
}

impl ArgoTemplate {
    /// The args of an AnalysisRun: the Rollout's, the template's defaults, the Secret's keys.
    fn args(
        &self,
        rollout: &[(&str, &str)],
        secrets: &[((&str, &str), &str)],
    ) -> BTreeMap<String, String> {
        self.args
            .iter()
            .map(|(name, source)| {
                let given = rollout.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
                let value = match (given, source) {
                    (Some(value), ArgSource::Secret { .. }) => {
                        panic!("arg {name} comes from a Secret, not from the Rollout ({value})")
                    }
                    (Some(value), _) => value.to_owned(),
                    (None, ArgSource::Value(value)) => value.clone(),
                    (None, ArgSource::Secret { name: secret, key }) => secrets
                        .iter()
                        .find(|((s, k), _)| s == secret && k == key)
                        .map(|(_, v)| (*v).to_owned())
                        .unwrap_or_else(|| panic!("no Secret {secret} with key {key}")),
                    (None, ArgSource::Required) => panic!("the Rollout must give arg {name}"),
                };
                (name.clone(), value)
            })
            .collect()
    }

    /// One measurement: the web provider's request, and Argo's reading of the answer.
    async fn measure(&self, h: &Harness, args: &BTreeMap<String, String>) -> (Measurement, Answer) {
        assert_eq!(
            self.method, "GET",
            "Argo's web provider sends GET by default"
        );
        let url = argo_resolve(&self.url, args);
        // `Header.Set`: one value per name, the last one wins.
        let mut headers: Vec<(String, String)> = Vec::new();
        for (name, value) in &self.headers {
            let value = argo_resolve(value, args);
            headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
            headers.push((name.clone(), value));
        }
        let answer = send_as_tool(h, Method::GET, &url, &headers).await;
        if !answer.status.is_success() {
            return (Measurement::Error, answer);
        }
        let Some(result) = argo_json_path(&self.json_path, &answer.body) else {
            return (Measurement::Error, answer);
        };
        let success = argo_condition(&self.success_condition, &result);
        let failure = argo_condition(&self.failure_condition, &result);
        let phase = if failure {
            Measurement::Failed
        } else if success {
            Measurement::Successful
        } else {
            Measurement::Inconclusive
        };
        (phase, answer)
    }

    /// Argo's `assessMetricStatus` for the measurements so far (consecutive errors aside):
    /// `None` while it keeps measuring.
    fn assess(&self, measurements: &[Measurement]) -> Option<&'static str> {
        let count = |m: Measurement| {
            u32::try_from(measurements.iter().filter(|x| **x == m).count()).unwrap()
        };
        if count(Measurement::Failed) > self.failure_limit {
            return Some("Failed");
        }
        if count(Measurement::Inconclusive) > self.inconclusive_limit {
            return Some("Inconclusive");
        }
        let counted = count(Measurement::Successful)
            + count(Measurement::Failed)
            + count(Measurement::Inconclusive);
        (counted >= self.count).then_some("Successful")
    }
}

#[test]
fn the_analysis_template_is_the_documented_one() {
    let t = argo_template();
    assert_eq!(t.json_path, "{$.decision}");
    assert_eq!(t.success_condition, r#"result == "allow""#);
    assert_eq!(t.failure_condition, r#"result == "deny""#);
    assert_eq!(t.method, "GET");
    assert_eq!(t.interval, "1m");
    assert_eq!(t.failure_limit, 0, "the first deny fails the analysis");
    assert!(
        t.inconclusive_limit < t.count,
        "a run of nothing but wait must not pass: inconclusiveLimit {} < count {}",
        t.inconclusive_limit,
        t.count
    );
    assert_eq!(
        t.args
            .iter()
            .find(|(n, _)| n == "token")
            .map(|(_, s)| s.clone()),
        Some(ArgSource::Secret {
            name: "deploy-safety".to_owned(),
            key: "token".to_owned()
        }),
        "the token comes from a Secret"
    );
    assert_eq!(
        t.headers,
        [(
            "Authorization".to_owned(),
            "Bearer {{args.token}}".to_owned()
        )]
    );
    assert!(
        t.url
            .starts_with("{{args.deploy-safety-url}}/api/deploy-safety/integrations/decision?"),
        "{}",
        t.url
    );
}

// ---------------------------------------------------------------------------------------------
// Kargo: the Stage's `http` promotion step
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct KargoStep {
    vars: BTreeMap<String, String>,
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    query: Vec<(String, String)>,
    success_expression: String,
    failure_expression: String,
    outputs: Vec<(String, String)>,
}

fn name_values(items: &[Yaml]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|item| {
            (
                item.str_at("name").to_owned(),
                item.str_at("value").to_owned(),
            )
        })
        .collect()
}

fn kargo_step() -> KargoStep {
    let doc = parse_yaml(&workspace_file(KARGO_FILE));
    assert_eq!(doc.str_at("apiVersion"), "kargo.akuity.io/v1alpha1");
    assert_eq!(doc.str_at("kind"), "Stage");
    let vars = name_values(doc.seq_at("spec.vars")).into_iter().collect();
    let steps = doc.seq_at("spec.promotionTemplate.spec.steps");
    let step = steps
        .iter()
        .find(|s| s.str_at("uses") == "http")
        .expect("a step `uses: http`");
    assert_eq!(step.str_at("as"), "deploy-safety");
    assert!(
        std::ptr::eq(step, &steps[0]),
        "the gate is the first step: nothing is changed before it allows"
    );
    let config = step.at("config");
    assert!(config.get("body").is_none(), "a GET sends no body");
    KargoStep {
        vars,
        method: config.opt_str("method").unwrap_or("GET").to_owned(),
        url: config.str_at("url").to_owned(),
        headers: name_values(config.seq_at("headers")),
        query: name_values(config.seq_at("queryParams")),
        success_expression: config.str_at("successExpression").to_owned(),
        failure_expression: config.str_at("failureExpression").to_owned(),
        outputs: config
            .seq_at("outputs")
            .iter()
            .map(|o| {
                (
                    o.str_at("name").to_owned(),
                    o.str_at("fromExpression").to_owned(),
                )
            })
            .collect(),
    }
}

/// What Kargo's expressions can see in the test: the Stage's vars (overridable), Secrets of the
/// project, and the freight's images.
struct KargoWorld<'a> {
    vars: BTreeMap<String, String>,
    secrets: &'a [((&'a str, &'a str), &'a str)],
    image_tags: &'a [(&'a str, &'a str)],
}

impl KargoWorld<'_> {
    /// One `${{ ... }}` expression, in the forms the step uses.
    #[track_caller]
    fn eval(&self, expression: &str) -> String {
        // `quote(X)`: X as a string (so a tag like `1234567` is not read as a number).
        if let Some(inner) = expression
            .strip_prefix("quote(")
            .and_then(|r| r.strip_suffix(')'))
        {
            return self.eval(inner);
        }
        if let Some(name) = expression.strip_prefix("vars.") {
            return self
                .vars
                .get(name)
                .unwrap_or_else(|| panic!("no var {name}"))
                .clone();
        }
        if let Some(rest) = expression.strip_prefix("secret('")
            && let Some((secret, key)) = rest.split_once("').")
        {
            return self
                .secrets
                .iter()
                .find(|((s, k), _)| *s == secret && *k == key)
                .map(|(_, v)| (*v).to_owned())
                .unwrap_or_else(|| panic!("no Secret {secret} with key {key}"));
        }
        if let Some(var) = expression
            .strip_prefix("imageFrom(vars.")
            .and_then(|r| r.strip_suffix(").Tag"))
        {
            let repo = self.eval(&format!("vars.{var}"));
            return self
                .image_tags
                .iter()
                .find(|(r, _)| *r == repo)
                .map(|(_, tag)| (*tag).to_owned())
                .unwrap_or_else(|| panic!("the freight has no image {repo}"));
        }
        panic!("this test does not understand the expression `{expression}`")
    }

    /// Every `${{ ... }}` in `text` evaluated.
    #[track_caller]
    fn resolve(&self, text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(open) = rest.find("${{") {
            out.push_str(&rest[..open]);
            let close = rest[open..]
                .find("}}")
                .unwrap_or_else(|| panic!("unclosed `${{{{` in {text}"));
            out.push_str(&self.eval(rest[open + 3..open + close].trim()));
            rest = &rest[open + close + 2..];
        }
        out.push_str(rest);
        out
    }
}

/// Go's `url.QueryEscape`: unreserved characters as they are, space as `+`, the rest `%XX`.
fn go_query_escape(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(byte));
            }
            b' ' => out.push('+'),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// Go's `url.Values.Encode`: sorted by key; a key's values in the order they were added.
fn go_values_encode(pairs: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = pairs.iter().collect();
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    sorted
        .iter()
        .map(|(k, v)| format!("{}={}", go_query_escape(k), go_query_escape(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// What becomes of the step, as Kargo's `http` step runner decides.
#[derive(Clone, Debug, PartialEq)]
enum KargoOutcome {
    /// `successExpression` true (and `failureExpression` not): the promotion continues.
    Succeeded(BTreeMap<String, Value>),
    /// `failureExpression` true: a terminal failure, no retries.
    Failed,
    /// Neither: the step keeps running and is tried again.
    Running,
}

/// `response.status` or `response.body.FIELD...` in Kargo's expression environment; a missing
/// field is `nil`.
#[track_caller]
fn kargo_operand(path: &str, status: u16, body: &Value) -> Value {
    if path == "response.status" {
        return json!(status);
    }
    let Some(fields) = path.strip_prefix("response.body.") else {
        panic!("this test does not understand `{path}`");
    };
    let mut node = body;
    for field in fields.split('.') {
        match node.get(field) {
            Some(next) => node = next,
            None => return Value::Null,
        }
    }
    node.clone()
}

/// Kargo's (expr-lang) expressions in the forms the step uses: `A && B`, each `OPERAND ==
/// LITERAL` with an integer or a double-quoted string.
#[track_caller]
fn kargo_bool(expression: &str, status: u16, body: &Value) -> bool {
    expression.split(" && ").all(|term| {
        let (left, right) = term
            .split_once(" == ")
            .unwrap_or_else(|| panic!("this test does not understand `{term}`"));
        let literal = match right.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
            Some(text) => json!(text),
            None => json!(
                right
                    .parse::<i64>()
                    .unwrap_or_else(|_| panic!("not a literal: `{right}`"))
            ),
        };
        kargo_operand(left.trim(), status, body) == literal
    })
}

impl KargoStep {
    fn world<'a>(
        &self,
        vars: &[(&str, &str)],
        secrets: &'a [((&'a str, &'a str), &'a str)],
        image_tags: &'a [(&'a str, &'a str)],
    ) -> KargoWorld<'a> {
        let mut all = self.vars.clone();
        for (name, value) in vars {
            assert!(all.contains_key(*name), "the Stage has no var {name}");
            all.insert((*name).to_owned(), (*value).to_owned());
        }
        KargoWorld {
            vars: all,
            secrets,
            image_tags,
        }
    }

    /// The URL the step requests: `url`, then `queryParams` added and encoded.
    fn request_url(&self, world: &KargoWorld<'_>) -> String {
        let url = world.resolve(&self.url);
        assert!(
            !url.contains('?'),
            "the url carries no query of its own; the parameters are in queryParams: {url}"
        );
        let pairs: Vec<(String, String)> = self
            .query
            .iter()
            .map(|(name, value)| (name.clone(), world.resolve(value)))
            .collect();
        format!("{url}?{}", go_values_encode(&pairs))
    }

    async fn run(&self, h: &Harness, world: &KargoWorld<'_>) -> (KargoOutcome, Answer) {
        assert_eq!(self.method, "GET");
        let url = self.request_url(world);
        // `Header.Add`, in order.
        let headers: Vec<(String, String)> = self
            .headers
            .iter()
            .map(|(name, value)| (name.clone(), world.resolve(value)))
            .collect();
        let answer = send_as_tool(h, Method::GET, &url, &headers).await;
        let status = answer.status.as_u16();
        // An empty or non-JSON body is an empty map.
        let body = if answer.body.is_object() || answer.body.is_array() {
            answer.body.clone()
        } else {
            json!({})
        };
        let failure = kargo_bool(&self.failure_expression, status, &body);
        let success = kargo_bool(&self.success_expression, status, &body);
        let outcome = if failure {
            KargoOutcome::Failed
        } else if success {
            KargoOutcome::Succeeded(
                self.outputs
                    .iter()
                    .map(|(name, from)| (name.clone(), kargo_operand(from, status, &body)))
                    .collect(),
            )
        } else {
            KargoOutcome::Running
        };
        (outcome, answer)
    }
}

#[test]
fn the_kargo_step_is_the_documented_one() {
    let step = kargo_step();
    assert_eq!(step.method, "GET");
    assert_eq!(
        step.success_expression,
        r#"response.status == 200 && response.body.decision == "allow""#
    );
    assert_eq!(
        step.failure_expression,
        r#"response.status == 200 && response.body.decision == "deny""#
    );
    assert_eq!(
        step.headers,
        [(
            "Authorization".to_owned(),
            "Bearer ${{ secret('deploy-safety').token }}".to_owned()
        )]
    );
    let names: Vec<&str> = step.query.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["action", "environment", "service", "releaseId"]);
    assert_eq!(
        step.outputs,
        [
            ("reason".to_owned(), "response.body.reason".to_owned()),
            ("auditSeq".to_owned(), "response.body.auditSeq".to_owned())
        ]
    );
}

#[test]
fn go_encodes_the_query_sorted_by_key() {
    let pairs = [
        ("service".to_owned(), "shop/payments api".to_owned()),
        ("action".to_owned(), "deploy.canary.promote".to_owned()),
        ("releaseId".to_owned(), "v1.2.3+build~7".to_owned()),
    ];
    assert_eq!(
        go_values_encode(&pairs),
        "action=deploy.canary.promote&releaseId=v1.2.3%2Bbuild~7&service=shop%2Fpayments+api"
    );
}

// ---------------------------------------------------------------------------------------------
// Both tools, each decision class
// ---------------------------------------------------------------------------------------------

/// What each tool makes of one question to the gate.
#[derive(Debug)]
struct Asked {
    argo: Measurement,
    kargo: KargoOutcome,
    /// The answer as the tools got it (Kargo's; Argo's is asserted to be the same decision).
    body: Value,
    kargo_status: StatusCode,
}

/// Asks the gate once as Argo Rollouts and once as Kargo would, about `environment` (and the
/// test's service and release), with `token`.
async fn ask(h: &Harness, environment: &str, token: &str) -> Asked {
    let argo = argo_template();
    let args = argo.args(
        &[
            ("deploy-safety-url", BASE),
            ("environment", environment),
            ("service", SERVICE),
            ("release", RELEASE),
        ],
        &[(("deploy-safety", "token"), token)],
    );
    let (measurement, argo_answer) = argo.measure(h, &args).await;

    let kargo = kargo_step();
    let secrets = [(("deploy-safety", "token"), token)];
    let images = [("ghcr.io/example/payments", RELEASE)];
    let world = kargo.world(
        &[
            ("deploySafetyUrl", BASE),
            ("environment", environment),
            ("service", SERVICE),
        ],
        &secrets,
        &images,
    );
    let (outcome, kargo_answer) = kargo.run(h, &world).await;
    assert_eq!(argo_answer.status, kargo_answer.status);
    assert_eq!(
        argo_answer.body["decision"], kargo_answer.body["decision"],
        "Argo: {} / Kargo: {}",
        argo_answer.text, kargo_answer.text
    );
    Asked {
        argo: measurement,
        kargo: outcome,
        body: kargo_answer.body,
        kargo_status: kargo_answer.status,
    }
}

/// The audit entry the answer names records it.
async fn assert_audited(h: &Harness, body: &Value, decision: &str) {
    let seq = body["auditSeq"].as_u64().expect("auditSeq");
    let entries = h.audit("action=integration.decision&limit=1000").await;
    let entry = entries
        .iter()
        .find(|e| e["seq"].as_u64() == Some(seq))
        .unwrap_or_else(|| panic!("no integration.decision entry {seq} in {entries:?}"));
    assert_eq!(entry["details"]["answer"], decision, "{entry}");
    assert_eq!(entry["reason"], body["reason"], "{entry}");
}

#[test]
fn kargo_sends_the_query_go_encodes() {
    let step = kargo_step();
    let secrets = [(("deploy-safety", "token"), "ds_x")];
    let images = [("ghcr.io/example/payments", RELEASE)];
    let world = step.world(&[("deploySafetyUrl", BASE)], &secrets, &images);
    assert_eq!(
        step.request_url(&world),
        format!(
            "{BASE}/api/deploy-safety/integrations/decision?action=deploy.canary.promote&environment=production&releaseId=v1.2.3&service=shop%2Fpayments"
        )
    );
}

#[tokio::test]
async fn allow_in_staging_passes_both() {
    let h = Harness::new().await;
    let asked = ask(&h, "staging", &h.tokens.developer).await;
    assert_eq!(asked.kargo_status, StatusCode::OK, "{}", asked.body);
    assert_eq!(asked.body["decision"], "allow", "{}", asked.body);
    assert_eq!(asked.body["reason"], "ALLOWED");
    assert!(
        asked.body.get("retryAfterSeconds").is_none(),
        "{}",
        asked.body
    );
    assert_eq!(asked.argo, Measurement::Successful);
    let KargoOutcome::Succeeded(outputs) = &asked.kargo else {
        panic!("Kargo: {:?}", asked.kargo);
    };
    assert_eq!(outputs["reason"], "ALLOWED");
    assert_eq!(outputs["auditSeq"], asked.body["auditSeq"]);
    assert!(outputs["auditSeq"].as_u64().is_some(), "{outputs:?}");
    assert_audited(&h, &asked.body, "allow").await;
}

#[tokio::test]
async fn allow_in_production_with_an_override_passes_both() {
    let h = Harness::new().await;
    // Without an override: wait (one can be created), asked again by both.
    let before = ask(&h, "production", &h.tokens.developer).await;
    assert_eq!(before.body["decision"], "wait", "{}", before.body);
    assert_eq!(before.body["reason"], "OVERRIDE_REQUIRED");
    assert_eq!(before.argo, Measurement::Inconclusive);
    assert_eq!(before.kargo, KargoOutcome::Running);

    h.create_override(
        &h.tokens.eng_lead,
        override_body("deploy.canary.promote", "production", 60),
    )
    .await;
    let asked = ask(&h, "production", &h.tokens.developer).await;
    assert_eq!(asked.body["decision"], "allow", "{}", asked.body);
    assert_eq!(asked.body["reason"], "OVERRIDE");
    assert!(asked.body["overrideId"].is_string(), "{}", asked.body);
    assert_eq!(asked.argo, Measurement::Successful);
    let KargoOutcome::Succeeded(outputs) = &asked.kargo else {
        panic!("Kargo: {:?}", asked.kargo);
    };
    assert_eq!(outputs["reason"], "OVERRIDE");
    assert_audited(&h, &asked.body, "allow").await;
}

#[tokio::test]
async fn lockdown_is_wait_for_both() {
    let h = Harness::new().await;
    h.set_mode("lockdown", Some("INC-42: credentials leaked"))
        .await;
    let asked = ask(&h, "staging", &h.tokens.developer).await;
    assert_eq!(asked.kargo_status, StatusCode::OK);
    assert_eq!(asked.body["decision"], "wait", "{}", asked.body);
    assert_eq!(asked.body["reason"], "LOCKDOWN");
    assert!(
        asked.body["message"]
            .as_str()
            .unwrap()
            .contains("INC-42: credentials leaked"),
        "{}",
        asked.body
    );
    assert!(
        asked.body.get("retryAfterSeconds").is_none(),
        "nobody knows when lockdown ends: {}",
        asked.body
    );
    assert_eq!(asked.argo, Measurement::Inconclusive, "asked again");
    assert_eq!(asked.kargo, KargoOutcome::Running, "asked again");
    assert_audited(&h, &asked.body, "wait").await;
}

#[tokio::test]
async fn a_freeze_is_wait_with_retry_after_for_both() {
    let h = Harness::new().await;
    let (status, freeze) = h
        .post(
            "/freezes",
            &h.tokens.eng_lead,
            json!({"name": "release-train", "reason": "CHG-77: release train closed",
                   "environments": ["staging"], "end": at_minutes(90)}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{freeze}");
    h.clock.advance_minutes(30);
    let asked = ask(&h, "staging", &h.tokens.developer).await;
    assert_eq!(asked.body["decision"], "wait", "{}", asked.body);
    assert_eq!(asked.body["reason"], "FREEZE");
    assert_eq!(
        asked.body["retryAfterSeconds"], 3600,
        "the freeze ends in an hour: {}",
        asked.body
    );
    assert_eq!(asked.argo, Measurement::Inconclusive);
    assert_eq!(asked.kargo, KargoOutcome::Running);

    // When it has ended, both go on.
    h.clock.advance_minutes(60);
    let after = ask(&h, "staging", &h.tokens.developer).await;
    assert_eq!(after.body["decision"], "allow", "{}", after.body);
    assert_eq!(after.argo, Measurement::Successful);
    assert!(
        matches!(after.kargo, KargoOutcome::Succeeded(_)),
        "{:?}",
        after.kargo
    );
}

#[tokio::test]
async fn a_failed_validation_here_is_deny_for_both_even_with_an_override() {
    let h = Harness::new().await;
    h.create_override(
        &h.tokens.eng_lead,
        override_body("deploy.canary.promote", "production", 60),
    )
    .await;
    // Validated in production without a passed validation in staging: environment-parity fails.
    let (status, started) = h
        .post(
            "/validations/start",
            &h.tokens.developer,
            json!({"releaseId": RELEASE, "environment": "production", "service": SERVICE}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    let ran = h.run_validation(started["id"].as_str().unwrap()).await;
    assert_eq!(ran["status"], "failed", "{ran}");

    let asked = ask(&h, "production", &h.tokens.developer).await;
    assert_eq!(asked.kargo_status, StatusCode::OK);
    assert_eq!(asked.body["decision"], "deny", "{}", asked.body);
    assert_eq!(asked.body["reason"], "VALIDATION_FAILED");
    assert!(
        asked.body["message"]
            .as_str()
            .unwrap()
            .contains("environment-parity"),
        "{}",
        asked.body
    );
    assert_eq!(
        asked.argo,
        Measurement::Failed,
        "the analysis fails: the Rollout aborts"
    );
    assert_eq!(
        asked.kargo,
        KargoOutcome::Failed,
        "a terminal failure, no retries"
    );
    assert_audited(&h, &asked.body, "deny").await;

    // The same release stays refused there; staging is another environment.
    let staging = ask(&h, "staging", &h.tokens.developer).await;
    assert_eq!(staging.body["decision"], "allow", "{}", staging.body);
}

#[tokio::test]
async fn errors_are_retried_not_decided() {
    let h = Harness::new().await;
    // A wrong token: 401. Argo counts an error (retried, not a measurement); Kargo's
    // expressions both need status 200, so the step keeps running.
    let asked = ask(&h, "staging", "ds_0000000000000000.not-a-token").await;
    assert_eq!(
        asked.kargo_status,
        StatusCode::UNAUTHORIZED,
        "{}",
        asked.body
    );
    assert_eq!(asked.argo, Measurement::Error);
    assert_eq!(asked.kargo, KargoOutcome::Running);

    // An environment that is not configured: 400 naming the setting to add.
    let asked = ask(&h, "prod", &h.tokens.developer).await;
    assert_eq!(
        asked.kargo_status,
        StatusCode::BAD_REQUEST,
        "{}",
        asked.body
    );
    assert_eq!(
        asked.body["error"]["field"], "environment",
        "{}",
        asked.body
    );
    assert!(
        asked.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("[[environments]]"),
        "{}",
        asked.body
    );
    assert_eq!(asked.argo, Measurement::Error);
    assert_eq!(asked.kargo, KargoOutcome::Running);
}

/// Argo judges the run as a whole: measurements a minute apart, `count` of them; the first
/// `deny` fails it; all `wait` is inconclusive (the Rollout pauses); otherwise it passes.
#[tokio::test]
async fn argo_keeps_asking_while_the_gate_says_wait() {
    let h = Harness::new().await;
    let t = argo_template();
    let args = t.args(
        &[
            ("deploy-safety-url", BASE),
            ("environment", "staging"),
            ("service", SERVICE),
            ("release", RELEASE),
        ],
        &[(("deploy-safety", "token"), &h.tokens.developer)],
    );

    // Lockdown for the first three measurements, then lifted.
    h.set_mode("lockdown", Some("INC-7")).await;
    let mut taken = Vec::new();
    for minute in 0..t.count {
        if minute == 3 {
            h.set_mode("enforce", None).await;
        }
        let (m, answer) = t.measure(&h, &args).await;
        assert_ne!(m, Measurement::Error, "{}", answer.text);
        taken.push(m);
        let verdict = t.assess(&taken);
        if taken.len() < usize::try_from(t.count).unwrap() {
            assert_eq!(verdict, None, "still measuring after {taken:?}");
        } else {
            assert_eq!(verdict, Some("Successful"), "{taken:?}");
        }
        h.clock.advance_minutes(1);
    }
    assert_eq!(&taken[..3], [Measurement::Inconclusive; 3]);

    // Nothing but wait: inconclusive at the last measurement, never a pass.
    h.set_mode("lockdown", Some("INC-8")).await;
    let mut taken = Vec::new();
    for _ in 0..t.count {
        let (m, _) = t.measure(&h, &args).await;
        taken.push(m);
    }
    assert_eq!(t.assess(&taken[..taken.len() - 1]), None);
    assert_eq!(t.assess(&taken), Some("Inconclusive"));

    // One deny fails it at once.
    assert_eq!(
        t.assess(&[Measurement::Inconclusive, Measurement::Failed]),
        Some("Failed")
    );
}

// ---------------------------------------------------------------------------------------------
// The docs show exactly these files
// ---------------------------------------------------------------------------------------------

#[test]
fn the_docs_carry_each_example_verbatim() {
    let pollers = workspace_file(POLLERS_PAGE);
    let readme = workspace_file(README);
    for file in [ARGO_FILE, KARGO_FILE] {
        let example = workspace_file(file);
        let example = example.trim_end();
        for (page, text) in [(POLLERS_PAGE, &pollers), (README, &readme)] {
            assert!(
                text.contains(example),
                "{page} must carry {file} verbatim; copy it again after changing it"
            );
        }
    }
    assert!(
        readme.contains("docs/integrations/pollers.md"),
        "the README links the pollers page"
    );
}
