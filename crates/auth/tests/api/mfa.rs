//! TOTP two-factor authentication.

use serde_json::{Value, json};

use super::*;
use auth::totp;

fn step_now() -> i64 {
    totp::step_at(Utc::now().timestamp())
}

/// Signs up, enrols and confirms TOTP: `(tokens, secret, recovery codes)`.
async fn enrolled(app: &TestApp, email: &str) -> (Tokens, Vec<u8>, Vec<String>) {
    let t = app.signed_in(email).await;
    let r = app.post_as("/v1/auth/mfa/totp", &t.access, json!({"password": "wrong password"})).await;
    assert_eq!(r.status(), 401, "enrolling needs the password");
    let r = app.post_as("/v1/auth/mfa/totp", &t.access, json!({"password": PASSWORD})).await;
    assert_eq!(r.status(), 200);
    let e: Value = r.json().await.unwrap();
    let secret = totp::decode_secret(e["secret"].as_str().unwrap()).unwrap();
    assert_eq!(secret.len(), 20);
    let uri = e["otpauth_uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/Panal:") && uri.contains(e["secret"].as_str().unwrap()), "{uri}");
    assert!(e["qr_svg"].as_str().unwrap().starts_with("<svg"));

    let r = app.post_as("/v1/auth/mfa/totp/confirm", &t.access, json!({"code": "000000"})).await;
    let wrong = if totp::code_at(&secret, step_now()) == "000000" { 200 } else { 401 };
    assert_eq!(r.status(), wrong);
    let r =
        app.post_as("/v1/auth/mfa/totp/confirm", &t.access, json!({"code": totp::code_at(&secret, step_now())})).await;
    assert_eq!(r.status(), 200);
    let codes: Vec<String> =
        serde_json::from_value(r.json::<Value>().await.unwrap()["recovery_codes"].clone()).unwrap();
    assert_eq!(codes.len(), 10);
    (t, secret, codes)
}

async fn challenge(app: &TestApp, email: &str) -> String {
    let r = app.login(email, PASSWORD).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["mfa_required"], true, "{v}");
    assert!(v.get("access_token").is_none(), "no tokens before the second factor");
    v["mfa_token"].as_str().unwrap().to_owned()
}

kit::backend_tests! {
    async fn sign_in_takes_two_steps_once_totp_is_confirmed(db) {
        let app = TestApp::spawn(&db).await;
        let (t, secret, _) = enrolled(&app, "ada@example.com").await;
        let status: Value = app.get("/v1/auth/mfa", &t.access).await.json().await.unwrap();
        assert_eq!(status, json!({"totp_enabled": true, "recovery_codes_left": 10}));

        let mfa = challenge(&app, "ada@example.com").await;
        // The step after the one used to confirm (one step of drift is accepted).
        let code = totp::code_at(&secret, step_now() + 1);
        let r = app.post("/v1/auth/login/mfa", json!({"mfa_token": mfa, "code": code})).await;
        assert_eq!(r.status(), 200);
        let tokens = tokens_of(r).await;
        assert_eq!(app.me(&tokens.access).await.status(), 200);
        let r = app.post("/v1/auth/login/mfa", json!({"mfa_token": mfa, "code": code})).await;
        assert_eq!(r.status(), 401, "a challenge works once");
        let methods: Vec<String> = kit::with_db!(&app.db, pool => sqlx::query_scalar("SELECT payload FROM outbox WHERE event_type = 'panal.auth.user_logged_in.v1' ORDER BY seq").fetch_all(pool).await).unwrap();
        assert!(methods.last().unwrap().contains("\"method\":\"password+totp\""));
    }

    async fn a_totp_code_cannot_be_used_twice(db) {
        let app = TestApp::spawn(&db).await;
        let (_, secret, _) = enrolled(&app, "ada@example.com").await;
        let code = totp::code_at(&secret, step_now() + 1);
        let first = challenge(&app, "ada@example.com").await;
        assert_eq!(app.post("/v1/auth/login/mfa", json!({"mfa_token": first, "code": code})).await.status(), 200);
        let second = challenge(&app, "ada@example.com").await;
        let r = app.post("/v1/auth/login/mfa", json!({"mfa_token": second, "code": code})).await;
        assert_eq!(r.status(), 401, "an observed code replayed within its window is refused");
        assert_eq!(problem(r).await["type"], "urn:panal:problem:invalid-code");
        // Codes two steps away are refused too (±1 step only).
        let r = app.post("/v1/auth/login/mfa", json!({"mfa_token": second, "code": totp::code_at(&secret, step_now() + 3)})).await;
        assert_eq!(r.status(), 401);
    }

    async fn a_recovery_code_works_once(db) {
        let app = TestApp::spawn(&db).await;
        let (t, _, codes) = enrolled(&app, "ada@example.com").await;
        let mfa = challenge(&app, "ada@example.com").await;
        let r = app.post("/v1/auth/login/mfa", json!({"mfa_token": mfa, "recovery_code": codes[3].to_uppercase()})).await;
        assert_eq!(r.status(), 200);
        let mfa = challenge(&app, "ada@example.com").await;
        let r = app.post("/v1/auth/login/mfa", json!({"mfa_token": mfa, "recovery_code": codes[3]})).await;
        assert_eq!(r.status(), 401, "a recovery code used twice is refused");
        let status: Value = app.get("/v1/auth/mfa", &t.access).await.json().await.unwrap();
        assert_eq!(status["recovery_codes_left"], 9);
        let stored: Vec<Vec<u8>> = kit::with_db!(&app.db, pool => sqlx::query_scalar("SELECT code_hash FROM recovery_codes").fetch_all(pool).await).unwrap();
        assert!(stored.iter().all(|h| h.len() == 32) && !stored.iter().any(|h| h == codes[0].as_bytes()), "stored hashed");
    }

    async fn wrong_codes_burn_the_challenge(db) {
        let app = TestApp::spawn(&db).await;
        let (_, secret, _) = enrolled(&app, "ada@example.com").await;
        let mfa = challenge(&app, "ada@example.com").await;
        let good = totp::code_at(&secret, step_now() + 1);
        let bad = if good == "111111" { "222222" } else { "111111" };
        let mut wrong = 0;
        while wrong < 5 {
            let r = app.post("/v1/auth/login/mfa", json!({"mfa_token": mfa, "code": bad})).await;
            match r.status().as_u16() {
                401 => wrong += 1,
                // The throttle's progressive delay: wait it out, it is not the defence tested here.
                429 => tokio::time::sleep(std::time::Duration::from_secs(r.headers()["retry-after"].to_str().unwrap().parse().unwrap())).await,
                other => panic!("{other}"),
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
        // The right code no longer helps: the challenge is spent.
        let r = app.post("/v1/auth/login/mfa", json!({"mfa_token": mfa, "code": good})).await;
        assert_eq!(r.status(), 401);
        assert_eq!(problem(r).await["type"], "urn:panal:problem:invalid-challenge");
    }

    async fn disabling_needs_the_password_and_a_code(db) {
        let app = TestApp::spawn(&db).await;
        let (t, secret, _) = enrolled(&app, "ada@example.com").await;
        let code = totp::code_at(&secret, step_now() + 1);
        let r = app.post_as("/v1/auth/mfa/totp/disable", &t.access, json!({"password": PASSWORD})).await;
        assert_eq!(r.status(), 422);
        let r = app.post_as("/v1/auth/mfa/totp/disable", &t.access, json!({"password": "wrong password", "code": code})).await;
        assert_eq!(r.status(), 401);
        let r = app.post_as("/v1/auth/mfa/totp/disable", &t.access, json!({"password": PASSWORD, "code": code})).await;
        assert_eq!(r.status(), 204);
        let r = app.login("ada@example.com", PASSWORD).await;
        assert!(r.json::<Value>().await.unwrap()["access_token"].is_string(), "one step again");
        assert_eq!(app.post_as("/v1/auth/mfa/totp/confirm", &t.access, json!({"code": "123456"})).await.status(), 409);
    }
}
