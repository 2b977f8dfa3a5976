//! The served OpenAPI document: the derived one, completed with what the derive macros cannot
//! say (docs/api-contract.md). It states every constraint the server enforces, so a generated
//! client (or `scripts/api-contract`, schemathesis with every check) needs no guesswork:
//!
//! * this server's settings: the configured maximum of an override's `ttlMinutes` (the
//!   environments' names are filled in by `describe_environments`);
//! * rules between fields that JSON Schema can state (`if`/`then`/`else`): lockdown needs a
//!   reason, enabled load shedding needs a percentage, each probe kind its own fields;
//! * an optional request body that, when sent, must be a JSON object.
//!
//! Rules JSON Schema cannot state (one field compared with another, the clock, the stored
//! state) are in the fields' descriptions and answered 400 with the field named.

use deploy_safety_app::App;
use serde_json::{Value, json};

/// The document as served: `doc` completed for this server, as pretty JSON.
pub(crate) fn render(doc: &utoipa::openapi::OpenApi, app: &App) -> String {
    let mut value = match serde_json::to_value(doc) {
        Ok(value) => value,
        Err(e) => return format!("{{\"error\": \"cannot render the OpenAPI document: {e}\"}}"),
    };
    complete(&mut value, app.settings().max_override_ttl_minutes);
    let namespaces: Vec<(&str, &str)> = app
        .settings()
        .flagger
        .namespaces
        .iter()
        .map(|(namespace, environment)| (namespace.as_str(), environment.as_str()))
        .collect();
    flagger_payload(&mut value, &namespaces);
    serde_json::to_string_pretty(&value)
        .unwrap_or_else(|e| format!("{{\"error\": \"cannot render the OpenAPI document: {e}\"}}"))
}

fn complete(doc: &mut Value, max_ttl_minutes: u32) {
    unsigned_bounds(doc);
    settings(doc, max_ttl_minutes);
    field_rules(doc);
    every_operation(doc);
}

/// Sequence numbers (`cursor`, `since`) are signed 64-bit in both databases, so they go up to
/// 2^63 - 1 and larger ones are refused; an interval goes up to 2^64 - 1. The derive can only
/// write a bound as a float, which cannot spell either.
fn unsigned_bounds(doc: &mut Value) {
    for parameters in operations(doc).filter_map(|(_, operation)| {
        operation
            .get_mut("parameters")
            .and_then(Value::as_array_mut)
    }) {
        for parameter in parameters.iter_mut() {
            let unsigned_64 = matches!(
                (parameter["in"].as_str(), parameter["name"].as_str()),
                (Some("query"), Some("cursor" | "since"))
            ) && parameter["schema"]["format"] == "int64";
            if unsigned_64 && let Some(schema) = parameter["schema"].as_object_mut() {
                schema.insert("maximum".to_owned(), json!(i64::MAX));
            }
        }
    }
    if let Some(interval) = doc
        .pointer_mut("/components/schemas/CanaryConfigRequest/properties/incrementInterval")
        .and_then(Value::as_object_mut)
    {
        interval.insert("maximum".to_owned(), json!(u64::MAX));
    }
}

/// Flagger's payload: the metadata keys deploy-safety reads, and where the environment comes
/// from — a namespace `[integrations.flagger.namespaces]` maps (which `metadata.environment`,
/// if sent, must agree with), or else `metadata.environment`.
fn flagger_payload(doc: &mut Value, namespaces: &[(&str, &str)]) {
    let Some(payload) = doc
        .pointer_mut("/components/schemas/FlaggerPayload")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    if let Some(properties) = payload.get_mut("properties").and_then(Value::as_object_mut) {
        properties.insert(
            "metadata".to_owned(),
            json!({
                "type": "object",
                "description": "The webhook's `metadata` from the Canary resource, strings only. deploy-safety reads `token` (Flagger cannot send headers), `environment`, `service` and `releaseId`; other keys are ignored.",
                "properties": {
                    "token": { "type": "string", "description": "A deploy-safety token, when no `Authorization` header is sent." },
                    "environment": { "$ref": "#/components/schemas/Environment" },
                    "service": { "$ref": "#/components/schemas/ServiceName" },
                    "releaseId": { "$ref": "#/components/schemas/ReleaseId" }
                },
                "additionalProperties": { "type": "string" }
            }),
        );
    }
    let named = json!({
        "required": ["metadata"],
        "properties": { "metadata": { "required": ["environment"] } }
    });
    if namespaces.is_empty() {
        payload.insert("anyOf".to_owned(), json!([named]));
        return;
    }
    let names: Vec<&str> = namespaces.iter().map(|(namespace, _)| *namespace).collect();
    payload.insert(
        "anyOf".to_owned(),
        json!([named, { "properties": { "namespace": { "enum": names } } }]),
    );
    let agree: Vec<Value> = namespaces
        .iter()
        .map(|(namespace, environment)| {
            json!({
                "if": { "properties": { "namespace": { "const": namespace } }, "required": ["namespace"] },
                "then": { "properties": { "metadata": { "properties": { "environment": { "const": environment } } } } }
            })
        })
        .collect();
    payload.insert("allOf".to_owned(), json!(agree));
}

/// What this server's settings decide.
fn settings(doc: &mut Value, max_ttl_minutes: u32) {
    for body in ["CreateOverrideRequest", "NewOverrideRequest"] {
        if let Some(ttl) = doc
            .pointer_mut(&format!("/components/schemas/{body}/properties/ttlMinutes"))
            .and_then(Value::as_object_mut)
        {
            ttl.insert("maximum".to_owned(), json!(max_ttl_minutes));
        }
    }
}

/// Rules between fields.
fn field_rules(doc: &mut Value) {
    let schemas = &mut doc["components"]["schemas"];
    let rules = [
        (
            "SetModeRequest",
            json!({
                "if": { "properties": { "mode": { "const": "lockdown" } }, "required": ["mode"] },
                "then": {
                    "required": ["reason"],
                    "properties": { "reason": { "$ref": "#/components/schemas/Reason" } }
                }
            }),
        ),
        (
            "SetLoadSheddingRequest",
            json!({
                "if": { "properties": { "enabled": { "const": true } }, "required": ["enabled"] },
                "then": {
                    "required": ["percentage"],
                    "properties": { "percentage": { "type": "integer", "minimum": 1, "maximum": 100 } }
                },
                "else": { "properties": { "percentage": { "enum": [0, null] } } }
            }),
        ),
        (
            "CreateProbeRequest",
            json!({
                "allOf": [
                    // The database probe is built in.
                    { "properties": { "kind": { "enum": ["http", "tcp"] } } },
                    {
                        "if": { "properties": { "kind": { "const": "http" } }, "required": ["kind"] },
                        "then": {
                            "required": ["url"],
                            "properties": {
                                "url": { "type": "string" },
                                "address": { "type": "null" }
                            }
                        },
                        "else": {
                            "required": ["address"],
                            "properties": {
                                "address": { "type": "string" },
                                "url": { "type": "null" },
                                "method": { "type": "null" },
                                "expectedStatus": { "type": "null" }
                            }
                        }
                    }
                ]
            }),
        ),
    ];
    for (name, rule) in rules {
        if let (Some(schema), Value::Object(rule)) =
            (schemas.get_mut(name).and_then(Value::as_object_mut), rule)
        {
            schema.extend(rule);
        }
    }
    // `DELETE /freezes/{id}` and approving an override request: no body, or a JSON object
    // (not `null`).
    for (pointer, schema) in [
        (
            "/paths/~1api~1deploy-safety~1freezes~1{id}/delete/requestBody",
            "EndFreezeRequest",
        ),
        (
            "/paths/~1api~1deploy-safety~1security-gate~1override-requests~1{id}~1approve/post/requestBody",
            "VoteBody",
        ),
    ] {
        if let Some(body) = doc.pointer_mut(pointer).and_then(Value::as_object_mut) {
            body.insert("required".to_owned(), json!(false));
            body.insert(
                "content".to_owned(),
                json!({ "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } }),
            );
        }
    }
}

/// Every operation: (method, operation object).
fn operations(doc: &mut Value) -> impl Iterator<Item = (&String, &mut Value)> {
    doc["paths"]
        .as_object_mut()
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(Value::as_object_mut)
        .flat_map(|item| item.iter_mut())
        .filter(|(method, _)| {
            [
                "get", "put", "post", "delete", "options", "head", "patch", "trace",
            ]
            .contains(&method.as_str())
        })
}

/// What every operation shares, stated on each: a unique `operationId`, the answers any
/// request may get (413 for a body over the limit, 503 when the request timed out or storage
/// is unavailable), each response's description and its headers (`X-Request-Id` always,
/// `WWW-Authenticate` with 401).
fn every_operation(doc: &mut Value) {
    for (_, operation) in operations(doc) {
        // The derive names an operation after its handler (`list`, `show`, ...), which repeats
        // across modules: qualify it by its tag, so every operation has its own.
        if let (Some(tag), Some(id)) = (
            operation["tags"][0].as_str(),
            operation["operationId"].as_str(),
        ) {
            let unique = format!("{}{}", camel(tag, false), camel(id, true));
            operation["operationId"] = json!(unique);
        }
        let has_body = operation.get("requestBody").is_some();
        // Query parameters that may be kilobytes long (a sign-in callback's code and state).
        let has_long_query = operation["parameters"]
            .as_array()
            .is_some_and(|parameters| {
                parameters.iter().any(|p| {
                    p["in"] == "query"
                        && p["schema"]["maxLength"].as_u64().is_some_and(|n| n >= 1000)
                })
            });
        let Some(responses) = operation
            .get_mut("responses")
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        if has_body && !responses.contains_key("413") {
            responses.insert(
                "413".to_owned(),
                error_response("the request body is larger than the limit"),
            );
        }
        match responses.get_mut("503") {
            None => {
                responses.insert(
                    "503".to_owned(),
                    error_response(
                        "the request did not complete within the time limit, or storage is unavailable",
                    ),
                );
            }
            Some(existing) => {
                // An endpoint's own 503 body (an unhealthy health report, a sign-in page) or,
                // from a timeout or unavailable storage, the error body.
                if existing.pointer("/content/application~1json").is_none()
                    && let Some(content) = existing
                        .as_object_mut()
                        .map(|o| o.entry("content").or_insert_with(|| json!({})))
                        .and_then(Value::as_object_mut)
                {
                    content.insert(
                        "application/json".to_owned(),
                        json!({ "schema": { "$ref": ERROR_BODY } }),
                    );
                }
                if let Some(schema) = existing.pointer_mut("/content/application~1json/schema")
                    && *schema != json!({ "$ref": ERROR_BODY })
                {
                    *schema = json!({ "oneOf": [schema.take(), { "$ref": ERROR_BODY }] });
                }
            }
        }
        for (status, response) in responses.iter_mut() {
            let Some(response) = response.as_object_mut() else {
                continue;
            };
            if response
                .get("description")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                let reason = status
                    .parse::<u16>()
                    .ok()
                    .and_then(|code| axum::http::StatusCode::from_u16(code).ok())
                    .and_then(|code| code.canonical_reason())
                    .unwrap_or("response");
                response.insert("description".to_owned(), json!(reason));
            }
            let headers = response.entry("headers").or_insert_with(|| json!({}));
            if let Some(headers) = headers.as_object_mut() {
                headers.insert(
                    "X-Request-Id".to_owned(),
                    json!({
                        "description": "The request's id: the one sent, else a new UUID; error bodies repeat it as `error.requestId`.",
                        "required": true,
                        "schema": { "type": "string" }
                    }),
                );
                if status == "401" {
                    headers.insert(
                        "WWW-Authenticate".to_owned(),
                        json!({
                            "description": "The scheme to authenticate with.",
                            "required": true,
                            "schema": { "type": "string", "const": "Bearer realm=\"deploy-safety\"" }
                        }),
                    );
                }
            }
        }
        // The HTTP layer refuses a URL longer than 64 KiB before any handler sees it: no body,
        // no request id. Only an operation with long query parameters can get there.
        if has_long_query {
            responses.insert(
                "414".to_owned(),
                json!({ "description": "the URL is longer than the server reads (64 KiB)" }),
            );
        }
    }
}

const ERROR_BODY: &str = "#/components/schemas/ErrorBody";

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": ERROR_BODY } } }
    })
}

/// `security-gate` → `securityGate`; with `upper`, `set_mode` → `SetMode`.
fn camel(text: &str, upper: bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut next_upper = upper;
    for c in text.chars() {
        if c == '-' || c == '_' || c == '.' {
            next_upper = true;
        } else if next_upper {
            out.extend(c.to_uppercase());
            next_upper = false;
        } else {
            out.push(c);
        }
    }
    out
}
