//! Schemathesis (PyPI) against `panal up`: every operation of the gateway's
//! merged document, with generated valid and invalid requests, checked for
//! server errors, undocumented status codes, wrong content types and
//! responses that do not match their schema. Runs when
//! `PANAL_TEST_SCHEMATHESIS` names the `schemathesis` command (CI installs it
//! and sets it); the hooks in `schemathesis/panal_hooks.py` keep a live token
//! on every request. Bounded: `PANAL_TEST_SCHEMATHESIS_EXAMPLES` per operation
//! (default 25), a fixed seed unless `PANAL_TEST_SCHEMATHESIS_SEED` says
//! otherwise, so a failure reproduces.

use std::io::Write;
use std::process::{Command, Stdio};

use super::{free_offset, panal, temp_dir, terminate, up_with};

/// Not the password of the document's examples (which schemathesis sends):
/// an example that changed the account's password would sign the run out.
const PASSWORD: &str = "violet rivers under quiet hills";

#[test]
fn every_operation_answers_as_its_document_says() {
    let Ok(schemathesis) = std::env::var("PANAL_TEST_SCHEMATHESIS") else {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED (schemathesis): set PANAL_TEST_SCHEMATHESIS=schemathesis to run the contract fuzzing"
        );
        return;
    };
    let examples = std::env::var("PANAL_TEST_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "25".to_owned());
    let seed = std::env::var("PANAL_TEST_SCHEMATHESIS_SEED").unwrap_or_else(|_| "20261203".to_owned());
    let dir = temp_dir();
    let email = "schemathesis-admin@example.com";
    // An administrator, made as an operator makes one, so that the
    // administrators' operations run past their 403.
    let mut create = panal()
        .args(["admin", "create", "--email", email, "--display-name", "Schemathesis", "--data-dir"])
        .arg(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    create.stdin.take().unwrap().write_all(format!("{PASSWORD}\n").as_bytes()).unwrap();
    assert!(create.wait().unwrap().success(), "panal admin create failed");

    let offset = free_offset();
    // The gateway's rate limits would answer most generated requests with a
    // (documented) 429 and leave the operations behind them untested.
    let (mut running, _) = up_with(&dir, offset, &[("PANAL_GATEWAY__RATE_LIMITS__ENABLED", "false")], Stdio::null());
    let gateway = format!("http://127.0.0.1:{}", 8000 + offset);
    let hooks = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cli/schemathesis");
    let out = Command::new(&schemathesis)
        .args(["run", &format!("{gateway}/openapi.json"), "--url", &gateway])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .args(["--phases", "examples,coverage,fuzzing", "--max-examples", &examples, "--seed", &seed])
        .args(["--workers", "1", "--no-color"])
        .env("SCHEMATHESIS_HOOKS", "panal_hooks")
        .env("PYTHONPATH", hooks)
        .env("PANAL_ST_AUTH", format!("http://127.0.0.1:{}", 8001 + offset))
        .env("PANAL_ST_USERS", format!("http://127.0.0.1:{}", 8002 + offset))
        .env("PANAL_ST_EMAIL", email)
        .env("PANAL_ST_PASSWORD", PASSWORD)
        .output()
        .expect("run schemathesis");
    terminate(&mut running);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "schemathesis found failures:\n{report}\n{}", String::from_utf8_lossy(&out.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}
