//! Sessions, password change, email verification, forgot/reset, the password
//! policy and brute-force throttling.

use serde_json::{Value, json};

use super::*;

async fn events_of(app: &TestApp, kind: &str) -> Vec<Value> {
    let rows: Vec<String> = kit::with_db!(&app.db, pool =>
        sqlx::query_scalar("SELECT payload FROM outbox WHERE event_type = $1 ORDER BY seq").bind(kind).fetch_all(pool).await).unwrap();
    rows.iter().map(|p| serde_json::from_str::<Value>(p).unwrap()["data"].clone()).collect()
}

async fn login_from(app: &TestApp, ip: &str, email: &str, password: &str) -> reqwest::Response {
    app.http
        .post(app.url("/v1/auth/login"))
        .header("x-forwarded-for", ip)
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
}

kit::backend_tests! {
    async fn a_sign_in_from_a_device_never_seen_is_marked_so_its_owner_is_told(db) {
        let app = TestApp::spawn(&db).await;
        assert_eq!(app.register("ada@example.com").await.status(), 202);
        let from = |ua: &'static str| {
            app.http.post(app.url("/v1/auth/login")).header("user-agent", ua)
                .json(&json!({"email": "ada@example.com", "password": PASSWORD})).send()
        };
        let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";
        let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1";
        for ua in [firefox, firefox, iphone, firefox] {
            assert_eq!(from(ua).await.unwrap().status(), 200);
        }
        let events = events_of(&app, "panal.auth.user_logged_in.v1").await;
        let marks: Vec<(bool, &str)> =
            events.iter().map(|e| (e["new_device"].as_bool().unwrap(), e["device"].as_str().unwrap())).collect();
        // The first sign-in ever is not news; the iPhone is.
        assert_eq!(marks, [(false, "Firefox on Linux"), (false, "Firefox on Linux"), (true, "Safari on iOS"), (false, "Firefox on Linux")]);
    }

    async fn sessions_are_listed_and_revoked_one_or_all_others(db) {
        let app = TestApp::spawn(&db).await;
        let laptop = app.signed_in("ada@example.com").await;
        let phone = tokens_of(app.login("ada@example.com", PASSWORD).await).await;
        let tablet = tokens_of(app.login("ada@example.com", PASSWORD).await).await;

        let list: Vec<Value> = app.get("/v1/auth/sessions", &laptop.access).await.json().await.unwrap();
        assert_eq!(list.len(), 3);
        let current: Vec<_> = list.iter().filter(|s| s["current"] == true).collect();
        assert_eq!(current.len(), 1);
        assert_eq!(current[0]["id"], laptop.session.as_str());
        assert_eq!(current[0]["ip"], "127.0.0.1");
        assert!(current[0]["last_used_at"].is_string() && current[0]["created_at"].is_string());

        // Revoke the phone from the laptop: its refresh token stops at once.
        let r = app.http.delete(app.url(&format!("/v1/auth/sessions/{}", phone.session))).bearer_auth(&laptop.access).send().await.unwrap();
        assert_eq!(r.status(), 204);
        assert_eq!(app.refresh(&phone.refresh).await.status(), 401);
        assert_eq!(app.me(&phone.access).await.status(), 401);
        // Not a live session of the caller any more (nor someone else's): 404.
        let r = app.http.delete(app.url(&format!("/v1/auth/sessions/{}", phone.session))).bearer_auth(&laptop.access).send().await.unwrap();
        assert_eq!(r.status(), 404);
        let bob = app.signed_in("bob@example.com").await;
        let r = app.http.delete(app.url(&format!("/v1/auth/sessions/{}", bob.session))).bearer_auth(&laptop.access).send().await.unwrap();
        assert_eq!(r.status(), 404, "nobody ends another account's session");
        assert_eq!(app.me(&bob.access).await.status(), 200);

        let r: Value = app.post_as("/v1/auth/sessions/revoke-others", &laptop.access, json!({})).await.json().await.unwrap();
        assert_eq!(r["revoked"], 1);
        assert_eq!(app.refresh(&tablet.refresh).await.status(), 401);
        assert_eq!(app.me(&laptop.access).await.status(), 200, "the current session stays");

        let revoked = events_of(&app, "panal.auth.session_revoked.v1").await;
        let ids: Vec<_> = revoked.iter().map(|e| e["session_id"].as_str().unwrap().to_owned()).collect();
        assert_eq!(ids, [phone.session.clone(), tablet.session.clone()]);
        assert!(revoked.iter().all(|e| e["reason"] == "revoked"));
        assert_eq!(events_of(&app, "panal.auth.user_logged_in.v1").await.len(), 4);
    }

    async fn changing_the_password_needs_the_current_one_and_ends_other_sessions(db) {
        let app = TestApp::spawn(&db).await;
        let here = app.signed_in("ada@example.com").await;
        let there = tokens_of(app.login("ada@example.com", PASSWORD).await).await;
        let new = "a much better passphrase";

        let r = app.post_as("/v1/auth/password", &here.access, json!({"current_password": "wrong one!", "new_password": new})).await;
        assert_eq!(r.status(), 401);
        let r = app.post_as("/v1/auth/password", &here.access, json!({"current_password": PASSWORD, "new_password": "password1"})).await;
        assert_eq!(r.status(), 422);
        assert_eq!(problem(r).await["errors"][0]["message"], "is one of the most common passwords; choose another");

        let r = app.post_as("/v1/auth/password", &here.access, json!({"current_password": PASSWORD, "new_password": new})).await;
        assert_eq!(r.status(), 204);
        assert_eq!(app.refresh(&there.refresh).await.status(), 401, "other sessions end");
        assert_eq!(app.me(&here.access).await.status(), 200, "this one stays");
        assert_eq!(app.login("ada@example.com", PASSWORD).await.status(), 401);
        assert_eq!(app.login("ada@example.com", new).await.status(), 200);
        let changed = events_of(&app, "panal.auth.password_changed.v1").await;
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0]["how"], "change");
    }

    async fn the_email_is_verified_with_the_mailed_link_once(db) {
        let app = TestApp::spawn(&db).await;
        let t = app.signed_in("ada@example.com").await;
        let token = app.mailed_token("ada@example.com", "verify_email");
        use base64::Engine;
        assert_eq!(base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&token).unwrap().len(), 32, "256 random bits");

        assert_eq!(app.post("/v1/auth/email/verify", json!({"token": "nope"})).await.status(), 400);
        assert_eq!(app.post("/v1/auth/email/verify", json!({"token": token})).await.status(), 204);
        let me: Value = app.me(&t.access).await.json().await.unwrap();
        assert_eq!(me["email_verified"], true);
        let r = app.post("/v1/auth/email/verify", json!({"token": token})).await;
        assert_eq!(r.status(), 400, "a link works once");
        assert_eq!(problem(r).await["type"], "urn:panal:problem:invalid-link");
        let verified = events_of(&app, "panal.auth.email_verified.v1").await;
        assert_eq!(verified.len(), 1);
        assert_eq!(verified[0]["email"], "ada@example.com");
    }

    async fn forgot_and_reset_end_every_session_and_answer_alike_for_unknown_emails(db) {
        let app = TestApp::spawn(&db).await;
        let t = app.signed_in("ada@example.com").await;

        let known = app.post("/v1/auth/password/forgot", json!({"email": "ada@example.com"})).await;
        let unknown = app.post("/v1/auth/password/forgot", json!({"email": "nobody@example.com"})).await;
        assert_eq!(known.status(), 202);
        assert_eq!(unknown.status(), 202);
        assert_eq!(known.json::<Value>().await.unwrap(), unknown.json::<Value>().await.unwrap());
        assert!(app.handle.mailer.logged().iter().all(|m| m.to != "nobody@example.com"));

        let token = app.mailed_token("ada@example.com", "password_reset");
        let stored: Vec<Vec<u8>> = kit::with_db!(&app.db, pool => sqlx::query_scalar("SELECT token_hash FROM email_tokens WHERE purpose = 'reset_password'").fetch_all(pool).await).unwrap();
        assert_eq!(stored, vec![auth::tokens::hash_refresh_token(&token)], "only the hash is stored");

        let r = app.post("/v1/auth/password/reset", json!({"token": token, "new_password": "ada@example.com rocks"})).await;
        assert_eq!(r.status(), 422, "the policy applies: {}", r.text().await.unwrap());
        let r = app.post("/v1/auth/password/reset", json!({"token": token, "new_password": "a brand new passphrase"})).await;
        assert_eq!(r.status(), 204);
        assert_eq!(app.refresh(&t.refresh).await.status(), 401, "every session ends");
        assert_eq!(app.me(&t.access).await.status(), 401);
        assert_eq!(app.login("ada@example.com", "a brand new passphrase").await.status(), 200);
        let r = app.post("/v1/auth/password/reset", json!({"token": token, "new_password": "yet another passphrase"})).await;
        assert_eq!(r.status(), 400, "a reset link works once");

        // A link past its 30 minutes is refused.
        app.post("/v1/auth/password/forgot", json!({"email": "ada@example.com"})).await;
        let late = app.mailed_token("ada@example.com", "password_reset");
        let expiry: chrono::DateTime<Utc> = kit::with_db!(&app.db, pool => sqlx::query_scalar("SELECT expires_at FROM email_tokens WHERE token_hash = $1").bind(auth::tokens::hash_refresh_token(&late)).fetch_one(pool).await).unwrap();
        let minutes = (expiry - Utc::now()).num_minutes();
        assert!((29..=30).contains(&minutes), "{minutes}");
        kit::with_db!(&app.db, pool => sqlx::query("UPDATE email_tokens SET expires_at = $1").bind(Utc::now() - chrono::Duration::seconds(1)).execute(pool).await.map(|_| ())).unwrap();
        let r = app.post("/v1/auth/password/reset", json!({"token": late, "new_password": "yet another passphrase"})).await;
        assert_eq!(r.status(), 400);
        let how: Vec<_> = events_of(&app, "panal.auth.password_changed.v1").await.iter().map(|e| e["how"].as_str().unwrap().to_owned()).collect();
        assert_eq!(how, ["reset"]);
    }

    async fn the_policy_refuses_common_passwords_and_ones_made_of_the_account(db) {
        let app = TestApp::spawn(&db).await;
        for (password, message) in [
            ("iloveyou123", "is one of the most common passwords; choose another"),
            ("TRUSTNO1", "is one of the most common passwords; choose another"),
            ("lovelace2024!!", "must not contain your email address"),
            ("ada the countess", "must not contain your display name"),
        ] {
            let r = app.post("/v1/auth/register", json!({"email": "lovelace@example.com", "password": password, "display_name": "Ada"})).await;
            assert_eq!(r.status(), 422, "{password}");
            assert_eq!(problem(r).await["errors"][0]["message"], message, "{password}");
        }
    }

    async fn failed_logins_slow_down_one_address_without_locking_the_owner_out(db) {
        let app = TestApp::spawn(&db).await;
        app.register("ada@example.com").await;
        for _ in 0..5 {
            assert_eq!(login_from(&app, "203.0.113.9", "ada@example.com", "not the password").await.status(), 401);
        }
        let r = login_from(&app, "203.0.113.9", "ada@example.com", "not the password").await;
        assert_eq!(r.status(), 429);
        let wait: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=2).contains(&wait), "the delay starts at a second: {wait}");
        assert_eq!(problem(r).await["type"], "urn:panal:problem:too-many-attempts");
        // Even the right password waits its turn from that address…
        assert_eq!(login_from(&app, "203.0.113.9", "ada@example.com", PASSWORD).await.status(), 429);
        // …while the owner, elsewhere, signs in.
        assert_eq!(login_from(&app, "198.51.100.7", "ada@example.com", PASSWORD).await.status(), 200);
        // After the delay, the address may try again, and a success clears it.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        assert_eq!(login_from(&app, "203.0.113.9", "ada@example.com", PASSWORD).await.status(), 200);
        assert_eq!(login_from(&app, "203.0.113.9", "ada@example.com", "not the password").await.status(), 401);
    }

    async fn one_address_trying_many_accounts_meets_its_bucket(db) {
        let app = TestApp::spawn_with(&db, "[auth.throttle]\nip_burst = 3\nip_per_minute = 1\n").await;
        for n in 0..3 {
            let r = login_from(&app, "203.0.113.50", &format!("u{n}@example.com"), "whatever123").await;
            assert_eq!(r.status(), 401);
        }
        let r = login_from(&app, "203.0.113.50", "u9@example.com", "whatever123").await;
        assert_eq!(r.status(), 429);
        let wait: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((59..=60).contains(&wait), "{wait}");
        // Refused attempts cost no hash: they answer at once even in a flood.
        let started = std::time::Instant::now();
        for _ in 0..50 {
            assert_eq!(login_from(&app, "203.0.113.50", "u9@example.com", "whatever123").await.status(), 429);
        }
        let argon_rows: i64 = kit::with_db!(&app.db, pool => sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(pool).await).unwrap();
        assert_eq!(argon_rows, 0);
        let _ = started;
        assert_eq!(login_from(&app, "203.0.113.51", "u9@example.com", "whatever123").await.status(), 401, "other addresses are not held back");
    }
}
