//! What deployments rely on: service clients provisioned from files.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::{Running, free_port, panal, temp_dir, terminate};

/// `panal auth clients provision` registers the clients of the services that
/// call others in their own name, from the id and secret files an operator
/// made (the files those services read too); it is safe to repeat, and the
/// credentials it registered are the ones auth then accepts.
#[tokio::test]
async fn clients_are_provisioned_from_files_and_auth_accepts_them() {
    let dir = temp_dir();
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    let mut ids = Vec::new();
    for service in ["ai", "game", "tournament"] {
        let id = uuid::Uuid::new_v4().to_string();
        std::fs::write(secrets.join(format!("{service}-client-id")), format!("{id}\n")).unwrap();
        std::fs::write(
            secrets.join(format!("{service}-client-secret")),
            format!("{service}-secret-{}\n", "x".repeat(32)),
        )
        .unwrap();
        ids.push(id);
    }
    let provision = || {
        panal()
            .args(["auth", "clients", "provision", "--secrets-dir"])
            .arg(&secrets)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .output()
            .unwrap()
    };
    let first = provision();
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let again = provision();
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert_eq!(first.stdout, again.stdout, "the same clients, the same scopes");

    let listed = panal().args(["auth", "clients", "list", "--data-dir"]).arg(dir.join("data")).output().unwrap();
    let listed = String::from_utf8(listed.stdout).unwrap();
    for id in &ids {
        assert_eq!(
            listed.lines().filter(|l| l.starts_with(id.as_str()) && l.contains("enabled")).count(),
            1,
            "{listed}"
        );
    }
    assert!(listed.lines().any(|l| l.contains("panal-game") && l.contains("realtime:publish chat:post")), "{listed}");

    // Auth, on that database, grants the game client its token.
    let port = free_port();
    let auth_url = format!("http://127.0.0.1:{port}");
    let mut auth = Running(
        panal()
            .env("PANAL_DATA_DIR", dir.join("data"))
            .args(["serve", "auth", "--port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let http = reqwest::Client::new();
    assert!(kit::http::wait_ready(&http, &format!("{auth_url}/readyz"), Duration::from_secs(10)).await);
    let secret = format!("game-secret-{}", "x".repeat(32));
    let r = http
        .post(format!("{auth_url}/v1/auth/token"))
        .basic_auth(&ids[1], Some(&secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["scope"], "realtime:publish chat:post");
    let r = http
        .post(format!("{auth_url}/v1/auth/token"))
        .basic_auth(&ids[1], Some("game-secret-wrong-wrong-wrong-wrong-wrong"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(terminate(&mut auth).success());

    // A secret too short to be one, or an id that is not a UUID, stops it
    // with the service named.
    std::fs::write(secrets.join("game-client-secret"), "short").unwrap();
    let out = provision();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("game") && err.contains("32 characters"), "{err}");
    std::fs::write(secrets.join("game-client-secret"), "y".repeat(40)).unwrap();
    std::fs::write(secrets.join("ai-client-id"), "ai").unwrap();
    let out = provision();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ai") && err.contains("UUID"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}
