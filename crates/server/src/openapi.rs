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
    serde_json::to_string_pretty(&value)
        .unwrap_or_else(|e| format!("{{\"error\": \"cannot render the OpenAPI document: {e}\"}}"))
}

fn complete(doc: &mut Value, max_ttl_minutes: u32) {
    // Unsigned 64-bit integers go up to 2^64 - 1, past what `format: int64` implies; the derive
    // can only write a bound as a float, which cannot spell that one.
    for parameters in doc["paths"]
        .as_object_mut()
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(Value::as_object_mut)
        .flat_map(|item| item.values_mut())
        .filter_map(|operation| operation.get_mut("parameters"))
        .filter_map(Value::as_array_mut)
    {
        for parameter in parameters.iter_mut() {
            let unsigned_64 = matches!(
                (parameter["in"].as_str(), parameter["name"].as_str()),
                (Some("query"), Some("cursor" | "since"))
            ) && parameter["schema"]["format"] == "int64";
            if unsigned_64 && let Some(schema) = parameter["schema"].as_object_mut() {
                schema.insert("maximum".to_owned(), json!(u64::MAX));
            }
        }
    }
    let schemas = &mut doc["components"]["schemas"];
    if let Some(interval) = schemas
        .pointer_mut("/CanaryConfigRequest/properties/incrementInterval")
        .and_then(Value::as_object_mut)
    {
        interval.insert("maximum".to_owned(), json!(u64::MAX));
    }
    if let Some(ttl) = schemas
        .pointer_mut("/CreateOverrideRequest/properties/ttlMinutes")
        .and_then(Value::as_object_mut)
    {
        ttl.insert("maximum".to_owned(), json!(max_ttl_minutes));
    }
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
        if let (Some(schema), Value::Object(rule)) = (
            schemas.get_mut(name).and_then(Value::as_object_mut),
            rule,
        ) {
            schema.extend(rule);
        }
    }
    // `DELETE /freezes/{id}`: no body, or a JSON object (not `null`).
    if let Some(body) = doc
        .pointer_mut("/paths/~1api~1deploy-safety~1freezes~1{id}/delete/requestBody")
        .and_then(Value::as_object_mut)
    {
        body.insert("required".to_owned(), json!(false));
        body.insert(
            "content".to_owned(),
            json!({ "application/json": { "schema": { "$ref": "#/components/schemas/EndFreezeRequest" } } }),
        );
    }
}
