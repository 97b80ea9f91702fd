//! The API documents `panal up` serves tell the truth about their shape: each
//! service's and the gateway's merged one. Checked here in Rust (every answer
//! described, the answers kit gives present, operation ids unique, query
//! parameters in the query) and, with `PANAL_TEST_OPENAPI_VALIDATOR` naming
//! `openapi-spec-validator` (CI installs it from PyPI), by the validator too.

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
                let problem = response["content"].get("application/problem+json").is_some();
                if status.starts_with('4') && !problem && response.get("$ref").is_none() {
                    problems.push(format!("{at}: {status} is not a problem document"));
                }
            }
            let mut needed = vec!["500", "503"];
            if op["security"].as_array().is_some_and(|s| !s.is_empty()) {
                needed.push("401");
            }
            if op.get("requestBody").is_some() {
                needed.extend(["400", "413", "415", "422"]);
            }
            for status in needed {
                if !responses.contains_key(status) {
                    problems.push(format!("{at}: {status} is not documented"));
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

#[tokio::test]
async fn every_api_document_is_valid_and_complete() {
    let dir = temp_dir();
    let offset = free_offset();
    let (mut running, _) = up(&dir, offset);
    let http = reqwest::Client::new();
    let mut problems = Vec::new();
    let mut files = Vec::new();
    for (name, port) in [("merged", 8000), ("auth", 8001), ("users", 8002)] {
        let url = format!("http://127.0.0.1:{}/openapi.json", port + offset);
        let doc: Value = http.get(&url).send().await.unwrap().json().await.unwrap();
        assert_eq!(doc["openapi"], "3.1.0", "{name}");
        problems.extend(shape_problems(name, &doc));
        let file = dir.join(format!("{name}.json"));
        std::fs::write(&file, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
        files.push(file);
    }
    terminate(&mut running);
    assert!(problems.is_empty(), "the API documents are incomplete:\n{}", problems.join("\n"));

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
