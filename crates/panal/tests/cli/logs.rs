//! The log lines `panal up` writes are ready to ship (docs/operations.md,
//! "Logs"): one JSON object per line, with the documented fields, and no
//! password, token or email address in any of them.

use std::process::Stdio;

use serde_json::{Value, json};

use super::{PASSWORD, free_offset, temp_dir, terminate, up_with};

#[tokio::test]
async fn every_log_line_is_json_with_the_documented_fields_and_no_secrets() {
    let dir = temp_dir();
    let log_path = dir.join("panal.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let offset = free_offset();
    let (mut running, _) = up_with(&dir, offset, &[("PANAL_LOG", "info")], Stdio::from(log));
    let gateway = format!("http://127.0.0.1:{}", 8000 + offset);
    let http = reqwest::Client::new();
    let email = "log-test@example.com";
    let r = http
        .post(format!("{gateway}/v1/auth/register"))
        .json(&json!({"email": email, "password": PASSWORD, "display_name": "Logs"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = http
        .post(format!("{gateway}/v1/auth/login"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let token = r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while http.get(format!("{gateway}/v1/users/me")).bearer_auth(&token).send().await.unwrap().status() != 200 {
        assert!(std::time::Instant::now() < deadline, "no profile");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    terminate(&mut running);

    let text = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON object ({e}): {l}")))
        .collect();
    assert!(lines.len() > 5, "{text}");
    for line in &lines {
        for field in ["timestamp", "level", "message", "target"] {
            assert!(line.get(field).is_some(), "no `{field}`: {line}");
        }
        assert!(chrono::DateTime::parse_from_rfc3339(line["timestamp"].as_str().unwrap()).is_ok(), "{line}");
    }
    let requests: Vec<&Value> = lines.iter().filter(|l| l["message"] == "request").collect();
    assert!(!requests.is_empty(), "access log lines: {text}");
    for line in &requests {
        for field in ["service", "request_id", "trace_id", "span_id", "method", "route"] {
            assert!(line["span"].get(field).is_some(), "a request line without span.{field}: {line}");
        }
        assert!(line.get("status").is_some() && line.get("duration_ms").is_some(), "{line}");
    }
    assert!(
        requests.iter().any(|l| l["span"]["service"] == "users" && l["span"]["user_id"].is_string()),
        "the user is named by id once known: {text}"
    );
    for secret in [PASSWORD, email, token.as_str()] {
        assert!(!text.contains(secret), "the logs hold {secret:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
