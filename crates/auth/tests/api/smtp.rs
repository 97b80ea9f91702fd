//! Mail through a real SMTP server (aiosmtpd, from PyPI) when `PANAL_SMTP_URL`
//! is set. `PANAL_TEST_SMTP=1` (CI) makes a missing aiosmtpd a failure; without
//! it the test is skipped with a message.

use std::time::{Duration, Instant};

use serde_json::json;

use kit::testing::Smtpd;

use super::*;

#[tokio::test]
async fn reset_mail_goes_through_smtp_when_configured() {
    let Some(smtpd) = Smtpd::start() else { return };
    let db = TestDb::sqlite().await;
    let app = TestApp::spawn_with(&db, &format!("smtp_url = \"smtp://127.0.0.1:{}\"\n", smtpd.port)).await;
    assert!(app.handle.mailer.uses_smtp());
    app.register("ada@example.com").await;
    app.post("/v1/auth/password/forgot", json!({"email": "ada@example.com"})).await;

    let deadline = Instant::now() + Duration::from_secs(10);
    let reset = loop {
        if let Some(m) = smtpd.delivered().into_iter().find(|m| m.contains("Subject: Reset your Panal password")) {
            break m;
        }
        assert!(Instant::now() < deadline, "no reset mail reached the SMTP server");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(reset.contains("To: ada@example.com"), "{reset}");
    assert!(reset.contains("From: Panal <no-reply@panal.localhost>"), "{reset}");
    assert!(app.handle.mailer.logged().is_empty(), "with SMTP, nothing is only logged");
    // The link in the delivered mail resets the password (the body is
    // quoted-printable: undo soft line breaks and `=3D`).
    let body = reset.replace("=\r\n", "").replace("=\n", "").replace("=3D", "=");
    let token = body.split("#token=").nth(1).unwrap_or_else(|| panic!("{reset}")).split_whitespace().next().unwrap();
    let r =
        app.post("/v1/auth/password/reset", json!({"token": token, "new_password": "a brand new passphrase"})).await;
    assert_eq!(r.status(), 204);
}
