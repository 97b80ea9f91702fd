//! The API documents `panal up` serves tell the truth about their shape: each
//! service's and the gateway's merged one. Checked here in Rust (every answer
//! described, the answers kit gives present, operation ids unique, query
//! parameters in the query, an example that fits its schema on every request
//! body and success) and, with `PANAL_TEST_OPENAPI_VALIDATOR` naming
//! `openapi-spec-validator` (CI installs it from PyPI), by the validator too.
//!
//! And the contracts between services: every call one service makes to
//! another must be an operation of the provider's document, with the
//! credentials and answer the caller relies on — so a provider that renames,
//! drops or changes such an operation fails here, not in production.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::Command;

use serde_json::Value;

use super::{free_offset, temp_dir, terminate, up};

const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// What is wrong with `doc`'s shape, by operation.
fn shape_problems(name: &str, doc: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let mut ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            let at = format!("{name}: {} {path}", method.to_uppercase());
            if let Some(id) = op["operationId"].as_str()
                && !ids.insert(id.to_owned())
            {
                problems.push(format!("{at}: operation id {id} is used twice"));
            }
            let responses = op["responses"].as_object().cloned().unwrap_or_default();
            for (status, response) in &responses {
                if response["description"].as_str().is_none_or(str::is_empty) {
                    problems.push(format!("{at}: {status} has no description"));
                }
                // Errors are problem documents, but for the OAuth endpoints,
                // which answer as RFC 6749 §5.2 says.
                let oauth = response["content"]["application/json"]["schema"]["$ref"]
                    .as_str()
                    .is_some_and(|r| r.ends_with("/OAuthErrorBody"));
                let problem = response["content"].get("application/problem+json").is_some() || oauth;
                if status.starts_with('4') && !problem && response.get("$ref").is_none() {
                    problems.push(format!("{at}: {status} is not a problem document"));
                }
            }
            let mut needed = vec!["500", "503"];
            if op["security"].as_array().is_some_and(|s| !s.is_empty()) {
                needed.push("401");
            }
            if op.get("requestBody").is_some() {
                // An operation answering its own body's errors (the OAuth
                // endpoints) is held to the body limit only; and it must not
                // claim kit's 415 and 422, which it never answers.
                if op["x-panal-errors"] == "own" {
                    needed.push("413");
                    for status in ["415", "422"] {
                        if responses.contains_key(status) {
                            problems.push(format!("{at}: documents a {status} it never answers"));
                        }
                    }
                } else {
                    needed.extend(["400", "413", "415", "422"]);
                }
            }
            for status in needed {
                if !responses.contains_key(status) {
                    problems.push(format!("{at}: {status} is not documented"));
                }
            }
            // Request bodies and successes show an example, and the example
            // fits the schema it illustrates.
            let bodies = op["requestBody"]["content"].as_object().into_iter().flatten().map(|b| ("request", b)).chain(
                responses
                    .iter()
                    .filter(|(status, _)| status.starts_with('2'))
                    .flat_map(|(_, r)| r["content"].as_object().into_iter().flatten())
                    .map(|b| ("answer", b)),
            );
            for (which, (media, body)) in bodies {
                if !["application/json", "application/x-www-form-urlencoded"].contains(&media.as_str()) {
                    continue;
                }
                match body.get("example") {
                    None if body.get("examples").is_none() => {
                        problems.push(format!("{at}: its {which} ({media}) has no example"))
                    }
                    None => {}
                    Some(example) => {
                        if let Some(why) = misfit(example, &body["schema"], doc, "") {
                            problems.push(format!("{at}: the example of its {which} does not fit its schema: {why}"));
                        }
                    }
                }
            }
            for param in op["parameters"].as_array().into_iter().flatten() {
                let (pname, place) = (param["name"].as_str().unwrap_or(""), param["in"].as_str().unwrap_or(""));
                if place == "path" && !path.contains(&format!("{{{pname}}}")) {
                    problems.push(format!("{at}: `{pname}` is declared a path parameter but is not in the path"));
                }
            }
        }
    }
    problems
}

/// Why `value` does not fit `schema` (types, required fields, enums; the
/// subset of JSON Schema Panal's documents use), or `None`.
fn misfit(value: &Value, schema: &Value, doc: &Value, at: &str) -> Option<String> {
    if let Some(name) = schema["$ref"].as_str().and_then(|r| r.strip_prefix("#/components/schemas/")) {
        return misfit(value, &doc["components"]["schemas"][name], doc, at);
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(variants) = schema[key].as_array() {
            return variants
                .iter()
                .all(|v| misfit(value, v, doc, at).is_some())
                .then(|| format!("{at}: fits none of the {key} variants"));
        }
    }
    if let Some(parts) = schema["allOf"].as_array() {
        return parts.iter().find_map(|p| misfit(value, p, doc, at));
    }
    if let Some(options) = schema["enum"].as_array()
        && !options.contains(value)
    {
        return Some(format!("{at}: {value} is not one of {options:?}"));
    }
    let kinds: Vec<&str> = match &schema["type"] {
        Value::String(kind) => vec![kind.as_str()],
        Value::Array(kinds) => kinds.iter().filter_map(Value::as_str).collect(),
        _ => return None,
    };
    let fits = kinds.iter().any(|kind| match *kind {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "string" => value.is_string(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => true,
    });
    if !fits {
        return Some(format!("{at}: {value} is not {kinds:?}"));
    }
    if let Some(items) = value.as_array() {
        return items.iter().enumerate().find_map(|(i, v)| misfit(v, &schema["items"], doc, &format!("{at}[{i}]")));
    }
    if let Some(fields) = value.as_object() {
        for required in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            if !fields.contains_key(required) {
                return Some(format!("{at}: required field `{required}` is missing"));
            }
        }
        for (name, v) in fields {
            match schema["properties"].get(name) {
                Some(property) => {
                    if let Some(why) = misfit(v, property, doc, &format!("{at}.{name}")) {
                        return Some(why);
                    }
                }
                None if schema["additionalProperties"] == false => {
                    return Some(format!("{at}: `{name}` is not a field of the schema"));
                }
                None => {}
            }
        }
    }
    None
}

/// A call one service makes to another, as the caller relies on it.
struct Call {
    caller: &'static str,
    provider: String,
    method: &'static str,
    path: String,
    /// The caller sends the user's token on.
    bearer: bool,
    /// The content type of the success the caller reads.
    reads: &'static str,
}

/// The calls services make to each other. Users' GDPR export asks every
/// service that holds personal data (`panal services`, column PERSONAL) for
/// its part, with the caller's token, and reads JSON.
fn calls() -> Vec<Call> {
    let out = super::panal().arg("services").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.get(3) == Some(&"yes") && cols[0] != "users").then(|| cols[0].to_owned())
        })
        .map(|provider| Call {
            caller: "users",
            path: format!("/v1/{provider}/me/export"),
            provider,
            method: "get",
            bearer: true,
            reads: "application/json",
        })
        .collect()
}

fn contract_problems(call: &Call, doc: &Value) -> Vec<String> {
    let at = format!("{} → {} {} {}", call.caller, call.provider, call.method.to_uppercase(), call.path);
    let Some(op) = doc["paths"].get(&call.path).and_then(|item| item.get(call.method)) else {
        return vec![format!("{at}: not an operation of {}'s document", call.provider)];
    };
    let mut problems = Vec::new();
    if call.bearer && !op["security"].as_array().is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some())) {
        problems.push(format!("{at}: does not take the caller's bearer token"));
    }
    if op["responses"]["200"]["content"].get(call.reads).is_none() {
        problems.push(format!("{at}: its 200 is not {}", call.reads));
    }
    problems
}

#[tokio::test]
async fn every_api_document_is_valid_and_complete() {
    let dir = temp_dir();
    let offset = free_offset();
    let (mut running, _) = up(&dir, offset);
    let http = reqwest::Client::new();
    let mut problems = Vec::new();
    let mut files = Vec::new();
    let mut docs = std::collections::BTreeMap::new();
    for (name, port) in [
        ("merged", 8000),
        ("auth", 8001),
        ("users", 8002),
        ("realtime", 8003),
        ("chat", 8004),
        ("game", 8005),
        ("tournament", 8006),
        ("stats", 8007),
        ("ai", 8008),
        ("ledger", 8009),
        ("notify", 8010),
    ] {
        let url = format!("http://127.0.0.1:{}/openapi.json", port + offset);
        let doc: Value = http.get(&url).send().await.unwrap().json().await.unwrap();
        assert_eq!(doc["openapi"], "3.1.0", "{name}");
        problems.extend(shape_problems(name, &doc));
        docs.insert(name, doc.clone());
        let file = dir.join(format!("{name}.json"));
        std::fs::write(&file, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
        files.push(file);
    }
    terminate(&mut running);
    problems.extend(schema_name_clashes(&docs));
    assert!(problems.is_empty(), "the API documents are incomplete:\n{}", problems.join("\n"));

    let calls = calls();
    assert!(calls.iter().any(|c| c.provider == "auth"), "users' export reaches auth");
    for call in &calls {
        let Some(doc) = docs.get(call.provider.as_str()) else {
            problems.push(format!("{}: no document fetched for {}", call.caller, call.provider));
            continue;
        };
        problems.extend(contract_problems(call, doc));
    }
    assert!(problems.is_empty(), "calls between services break their contract:\n{}", problems.join("\n"));

    let Ok(validator) = std::env::var("PANAL_TEST_OPENAPI_VALIDATOR") else {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED (openapi-spec-validator): set PANAL_TEST_OPENAPI_VALIDATOR=openapi-spec-validator to run it"
        );
        return;
    };
    for file in &files {
        let out = Command::new(&validator).arg(file).output().expect("run openapi-spec-validator");
        assert!(
            out.status.success(),
            "{} does not validate:\n{}{}",
            file.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The gateway merges the services' documents into one, where a schema is
/// known by its name alone: two services naming different schemas alike
/// would leave one of them described by the other's (game's match `Status`
/// once answered with users' account statuses).
fn schema_name_clashes(docs: &std::collections::BTreeMap<&str, Value>) -> Vec<String> {
    let mut seen: std::collections::BTreeMap<&str, (&str, &Value)> = std::collections::BTreeMap::new();
    let mut clashes = Vec::new();
    for (service, doc) in docs.iter().filter(|(name, _)| **name != "merged") {
        let Some(schemas) = doc["components"]["schemas"].as_object() else { continue };
        for (name, schema) in schemas {
            match seen.get(name.as_str()) {
                Some((other, theirs)) if *theirs != schema => {
                    clashes.push(format!("schema {name:?} means one thing in {other} and another in {service}"));
                }
                Some(_) => {}
                None => {
                    seen.insert(name, (service, schema));
                }
            }
        }
    }
    clashes
}
