//! Event payload schemas and the rule for changing them.
//!
//! Each event type's JSON Schema is generated from its Rust type and committed
//! under `crates/contracts/schemas/`. A change that could break a consumer —
//! a field removed, a field's type changed, a field newly required — is refused:
//! the old version stays as it is and the change becomes a new version
//! (`….v2`). Compatible changes (a new optional field, a new description) are
//! committed by running the tests with `PANAL_BLESS_SCHEMAS=1`.

use serde_json::{Map, Value};

/// The ways `new` could break a consumer written against `old`.
pub fn breaking_changes(old: &Value, new: &Value) -> Vec<String> {
    let mut out = Vec::new();
    compare_objects("", old, old, new, new, &mut out);
    out
}

fn compare_objects(path: &str, old_root: &Value, old: &Value, new_root: &Value, new: &Value, out: &mut Vec<String>) {
    let old = resolve(old_root, old);
    let new = resolve(new_root, new);
    if shape_kind(old) != shape_kind(new) {
        out.push(format!("{} changed from {} to {}", name(path), describe(old), describe(new)));
        return;
    }
    let empty = Map::new();
    let old_props = old.get("properties").and_then(Value::as_object).unwrap_or(&empty);
    let new_props = new.get("properties").and_then(Value::as_object).unwrap_or(&empty);
    for (field, old_schema) in old_props {
        let field_path = if path.is_empty() { field.clone() } else { format!("{path}.{field}") };
        match new_props.get(field) {
            None => out.push(format!("field `{field_path}` was removed")),
            Some(new_schema) => compare_objects(&field_path, old_root, old_schema, new_root, new_schema, out),
        }
    }
    let required = |v: &Value| -> Vec<String> {
        v.get("required")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default()
    };
    let old_required = required(old);
    for field in required(new) {
        if !old_required.contains(&field) {
            let field_path = if path.is_empty() { field } else { format!("{path}.{field}") };
            out.push(format!("field `{field_path}` became required"));
        }
    }
    if let (Some(old_items), Some(new_items)) = (old.get("items"), new.get("items")) {
        compare_objects(&format!("{path}[]"), old_root, old_items, new_root, new_items, out);
    }
}

/// Follows a local `$ref` (`#/$defs/Name`).
fn resolve<'a>(root: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/")) {
        Some(pointer) => root.pointer(&format!("/{pointer}")).unwrap_or(v),
        None => v,
    }
}

/// What a consumer relies on: the JSON type(s), the format and the allowed values.
fn shape_kind(v: &Value) -> (Value, Value, Value) {
    (
        v.get("type").cloned().unwrap_or(Value::Null),
        v.get("format").cloned().unwrap_or(Value::Null),
        v.get("enum").cloned().unwrap_or(Value::Null),
    )
}

fn describe(v: &Value) -> String {
    let (t, f, e) = shape_kind(v);
    let mut s = t.to_string();
    if !f.is_null() {
        s.push_str(&format!(" ({f})"));
    }
    if !e.is_null() {
        s.push_str(&format!(" one of {e}"));
    }
    s
}

fn name(path: &str) -> String {
    if path.is_empty() { "the payload".to_owned() } else { format!("field `{path}`") }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use serde_json::json;

    use super::*;
    use crate::catalogue;

    fn schema(props: Value, required: &[&str]) -> Value {
        json!({ "type": "object", "properties": props, "required": required })
    }

    #[test]
    fn removing_retyping_or_requiring_a_field_is_breaking_and_adding_an_optional_one_is_not() {
        let old = schema(json!({ "id": { "type": "string", "format": "uuid" }, "n": { "type": "integer" } }), &["id"]);
        let removed = schema(json!({ "id": { "type": "string", "format": "uuid" } }), &["id"]);
        let retyped =
            schema(json!({ "id": { "type": "string", "format": "uuid" }, "n": { "type": "string" } }), &["id"]);
        let required =
            schema(json!({ "id": { "type": "string", "format": "uuid" }, "n": { "type": "integer" } }), &["id", "n"]);
        let added = schema(
            json!({ "id": { "type": "string", "format": "uuid", "description": "new words" }, "n": { "type": "integer" }, "extra": { "type": "boolean" } }),
            &["id"],
        );
        assert_eq!(breaking_changes(&old, &removed), ["field `n` was removed"]);
        assert_eq!(breaking_changes(&old, &retyped), ["field `n` changed from \"integer\" to \"string\""]);
        assert_eq!(breaking_changes(&old, &required), ["field `n` became required"]);
        assert!(breaking_changes(&old, &added).is_empty());
    }

    #[test]
    fn nested_and_referenced_fields_are_compared_too() {
        let old = json!({ "type": "object", "properties": { "who": { "$ref": "#/$defs/Who" } }, "$defs": { "Who": { "type": "object", "properties": { "name": { "type": "string" } } } } });
        let new = json!({ "type": "object", "properties": { "who": { "$ref": "#/$defs/Who" } }, "$defs": { "Who": { "type": "object", "properties": { "name": { "type": "integer" } } } } });
        assert_eq!(breaking_changes(&old, &new), ["field `who.name` changed from \"string\" to \"integer\""]);
    }

    fn schemas_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemas")
    }

    /// Every event's schema is committed and current; an incompatible change
    /// without a new version fails here.
    #[test]
    fn committed_schemas_match_the_event_types() {
        let bless = std::env::var("PANAL_BLESS_SCHEMAS").is_ok();
        let mut problems = Vec::new();
        for info in catalogue() {
            let path = schemas_dir().join(format!("{}.json", info.kind));
            let generated = serde_json::to_string_pretty(&info.schema).unwrap() + "\n";
            match std::fs::read_to_string(&path) {
                Err(_) if bless => std::fs::write(&path, &generated).unwrap(),
                Err(_) => problems.push(format!(
                    "{}: no committed schema; run `PANAL_BLESS_SCHEMAS=1 cargo test -p contracts` and commit {}",
                    info.kind,
                    path.display()
                )),
                Ok(committed) if committed == generated => {}
                Ok(committed) => {
                    let committed: Value = serde_json::from_str(&committed).unwrap();
                    let breaks = breaking_changes(&committed, &info.schema);
                    if !breaks.is_empty() {
                        problems.push(format!(
                            "{}: the payload changed in a way that breaks consumers ({}); leave this version as it is and add a new one (….v2)",
                            info.kind,
                            breaks.join("; ")
                        ));
                    } else if bless {
                        std::fs::write(&path, &generated).unwrap();
                    } else {
                        problems.push(format!(
                            "{}: the schema changed compatibly; run `PANAL_BLESS_SCHEMAS=1 cargo test -p contracts` and commit it",
                            info.kind
                        ));
                    }
                }
            }
        }
        // A schema whose type left the catalogue: its consumers would break.
        let known: Vec<String> = catalogue().iter().map(|i| format!("{}.json", i.kind)).collect();
        for entry in std::fs::read_dir(schemas_dir()).unwrap() {
            let file = entry.unwrap().file_name().to_string_lossy().into_owned();
            if !known.contains(&file) {
                problems.push(format!("{file}: committed, but the event type is gone from the catalogue"));
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn event_types_are_named_panal_service_event_version() {
        for info in catalogue() {
            let parts: Vec<&str> = info.kind.split('.').collect();
            assert_eq!(parts.len(), 4, "{}", info.kind);
            assert_eq!(parts[0], "panal");
            assert_eq!(parts[1], info.source);
            assert!(parts[3].starts_with('v') && parts[3][1..].parse::<u32>().is_ok(), "{}", info.kind);
        }
    }
}
