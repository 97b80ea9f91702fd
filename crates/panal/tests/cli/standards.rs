//! Standards a generic client relies on, checked with real client libraries
//! (PyPI's authlib and PyJWT, run by `clients/check_standards.py`) when
//! `PANAL_TEST_PYTHON_CLIENTS=1` (CI installs them and sets it): the
//! authorization-server metadata passes authlib's RFC 8414 validation, and a
//! user's access token passes PyJWT's verification with the published keys
//! and the claims RFC 9068 requires, for each signing algorithm auth offers.

use std::io::Write;
use std::process::Command;

use serde_json::{Value, json};

use super::{PASSWORD, free_offset, temp_dir, terminate, up_with};

#[tokio::test]
async fn client_libraries_accept_the_metadata_and_the_access_tokens() {
    if std::env::var("PANAL_TEST_PYTHON_CLIENTS").is_err() {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED (authlib, PyJWT): set PANAL_TEST_PYTHON_CLIENTS=1 with `pip install authlib 'pyjwt[crypto]'` to run it"
        );
        return;
    }
    // Each signing algorithm auth offers: EdDSA (the default) and RS256.
    for algorithm in ["EdDSA", "RS256"] {
        let dir = temp_dir();
        let offset = free_offset();
        let env = [("PANAL_AUTH__SIGNING_ALGORITHM", algorithm)];
        let (mut running, _) = up_with(&dir, offset, &env, std::process::Stdio::null());
        let base = format!("http://127.0.0.1:{}", 8000 + offset);
        let http = reqwest::Client::new();
        let account = json!({"email": "standards@example.com", "password": PASSWORD, "display_name": "Std"});
        assert_eq!(http.post(format!("{base}/v1/auth/register")).json(&account).send().await.unwrap().status(), 202);
        let login = json!({"email": "standards@example.com", "password": PASSWORD});
        let r = http.post(format!("{base}/v1/auth/login")).json(&login).send().await.unwrap();
        let token = r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cli/clients/check_standards.py");
        // The issuer in the metadata is the configured public URL; the script
        // reaches the documents through this test's port.
        let out = Command::new("python3").args([script, &base, &token, algorithm]).output().expect("run python3");
        terminate(&mut running);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            out.status.success(),
            "{algorithm}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
