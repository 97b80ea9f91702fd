//! The attack suite: each test fails if its defence is removed. Forged tokens
//! are signed with auth's real key where a signature is needed, so only the
//! attacked property is wrong.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::*;

/// `header` and `payload` as a JWS signed with auth's real key (or not at
/// all when `sign` is false).
async fn raw_token(app: &TestApp, header: Value, payload: Value, sign: bool) -> String {
    let h = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap());
    let p = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&payload).unwrap());
    let input = format!("{h}.{p}");
    if !sign {
        return format!("{input}.");
    }
    let key = auth::ops::keys(&app.db).await.unwrap().remove(0).material;
    use ed25519_dalek::Signer;
    use ed25519_dalek::pkcs8::DecodePrivateKey;
    let signing = ed25519_dalek::SigningKey::from_pkcs8_der(&key.private_der).unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signing.sign(input.as_bytes()).to_bytes()))
}

async fn kid_of(app: &TestApp) -> String {
    auth::ops::keys(&app.db).await.unwrap().remove(0).material.kid
}

/// A well-formed payload for a live session.
fn payload(t: &Tokens) -> Value {
    let (sub, sid) = ids(t);
    let now = Utc::now().timestamp();
    json!({"iss": "http://localhost:8000", "aud": "panal", "sub": sub, "sid": sid, "exp": now + 600, "iat": now, "jti": Uuid::now_v7(), "roles": ["user", "admin"]})
}

async fn refused(app: &TestApp, what: &str, token: &str) {
    let r = app.me(token).await;
    assert_eq!(r.status(), 401, "{what}: {}", r.status());
    assert_eq!(r.headers()["content-type"], "application/problem+json", "{what}");
}

kit::backend_tests! {
    async fn the_control_token_is_accepted(db) {
        // Guards the suite: a correctly forged token passes, so each refusal
        // below is due to the one thing that was changed.
        let app = TestApp::spawn(&db).await;
        let t = app.signed_in("ada@example.com").await;
        let good = raw_token(&app, json!({"alg": "EdDSA", "typ": "at+jwt", "kid": kid_of(&app).await}), payload(&t), true).await;
        assert_eq!(app.me(&good).await.status(), 200);
    }

    async fn alg_none_in_any_case_and_hs256_with_the_public_key_are_refused(db) {
        let app = TestApp::spawn(&db).await;
        let t = app.signed_in("ada@example.com").await;
        let kid = kid_of(&app).await;
        for alg in ["none", "None", "NONE", "nOnE"] {
            let token = raw_token(&app, json!({"alg": alg, "typ": "at+jwt", "kid": kid}), payload(&t), false).await;
            refused(&app, alg, &token).await;
            refused(&app, alg, token.trim_end_matches('.')).await;
        }
        let x = auth::ops::keys(&app.db).await.unwrap().remove(0).material.public;
        for secret in [x.as_bytes().to_vec(), URL_SAFE_NO_PAD.decode(&x).unwrap()] {
            let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
            header.typ = Some("at+jwt".into());
            header.kid = Some(kid.clone());
            let forged = jsonwebtoken::encode(&header, &payload(&t), &jsonwebtoken::EncodingKey::from_secret(&secret).unwrap()).unwrap();
            refused(&app, "HS256 with the public key", &forged).await;
        }
    }

    async fn unknown_and_hostile_key_ids_are_401_without_errors(db) {
        let app = TestApp::spawn(&db).await;
        let t = app.signed_in("ada@example.com").await;
        let started = std::time::Instant::now();
        for kid in ["nope", "../../../../etc/passwd", "' OR '1'='1' --", "\"; DROP TABLE signing_keys; --", "%00", &"k".repeat(500), ""] {
            let token = raw_token(&app, json!({"alg": "EdDSA", "typ": "at+jwt", "kid": kid}), payload(&t), true).await;
            refused(&app, kid, &token).await;
        }
        for n in 0..50 {
            let token = raw_token(&app, json!({"alg": "EdDSA", "typ": "at+jwt", "kid": format!("random-{n}")}), payload(&t), true).await;
            refused(&app, "random kid", &token).await;
        }
        let _ = started;
        let keys: i64 = kit::with_db!(&app.db, pool => sqlx::query_scalar("SELECT count(*) FROM signing_keys").fetch_one(pool).await).unwrap();
        assert_eq!(keys, 1, "the key table is untouched");
        assert_eq!(app.me(&t.access).await.status(), 200);
    }

    async fn bad_claims_are_refused(db) {
        let app = TestApp::spawn(&db).await;
        let t = app.signed_in("ada@example.com").await;
        let kid = kid_of(&app).await;
        let header = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": kid});
        let now = Utc::now().timestamp();
        let with = |k: &str, v: Value| { let mut p = payload(&t); p[k] = v; p };
        let without = |k: &str| { let mut p = payload(&t); p.as_object_mut().unwrap().remove(k); p };
        let cases = [
            ("expired", with("exp", json!(now - 3600))),
            ("not yet valid (nbf)", with("nbf", json!(now + 3600))),
            ("issued in the future", with("iat", json!(now + 3600))),
            ("no exp", without("exp")),
            ("wrong iss", with("iss", json!("https://evil.example"))),
            ("wrong aud", with("aud", json!("another-audience"))),
            ("no sub", without("sub")),
        ];
        for (what, p) in cases {
            refused(&app, what, &raw_token(&app, header.clone(), p, true).await).await;
        }
        for typ in ["JWT", "jwt", "id_token", "at+JWT+x"] {
            let token = raw_token(&app, json!({"alg": "EdDSA", "typ": typ, "kid": kid}), payload(&t), true).await;
            refused(&app, typ, &token).await;
        }
    }

    async fn tampered_stripped_malformed_and_oversized_tokens_are_refused(db) {
        let app = TestApp::spawn(&db).await;
        let t = app.signed_in("ada@example.com").await;
        let parts: Vec<&str> = t.access.split('.').collect();
        // An edited payload under the original signature: now claims admin.
        let mut claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        claims["roles"] = json!(["user", "admin"]);
        let edited = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap()), parts[2]);
        refused(&app, "edited payload", &edited).await;
        refused(&app, "stripped signature", &format!("{}.{}.", parts[0], parts[1])).await;
        refused(&app, "no signature part", &format!("{}.{}", parts[0], parts[1])).await;
        refused(&app, "malformed base64", &format!("{}.{}!!.{}", parts[0], parts[1], parts[2])).await;
        let not_json = URL_SAFE_NO_PAD.encode(b"{not json");
        refused(&app, "malformed JSON", &format!("{}.{not_json}.{}", parts[0], parts[2])).await;
        refused(&app, "15 KB token", &format!("{}.{}.{}", parts[0], "A".repeat(15 * 1024), parts[2])).await;
        // 16 KB and more do not get past the server's request-head limit.
        let r = app.me(&format!("{}.{}.{}", parts[0], "A".repeat(16 * 1024), parts[2])).await;
        assert_eq!(r.status(), 431);
        refused(&app, "four parts", &format!("{}.x", t.access)).await;
        assert_eq!(app.me(&t.access).await.status(), 200);
    }

    async fn a_reused_refresh_token_revokes_its_successor_too(db) {
        let app = TestApp::spawn(&db).await;
        let first = app.signed_in("ada@example.com").await;
        let second = tokens_of(app.refresh(&first.refresh).await).await;
        assert_eq!(app.refresh(&first.refresh).await.status(), 401, "the stolen copy is refused");
        assert_eq!(app.refresh(&second.refresh).await.status(), 401, "and the family ends: the successor too");
        assert_eq!(app.me(&second.access).await.status(), 401);
        let reason: String = kit::with_db!(&app.db, pool => sqlx::query_scalar("SELECT payload FROM outbox WHERE event_type = 'panal.auth.session_revoked.v1'").fetch_one(pool).await).unwrap();
        assert!(reason.contains("refresh_token_reuse"));
    }

    async fn an_unknown_email_and_a_wrong_password_answer_alike_and_cost_the_same_work(db) {
        let app = TestApp::spawn_with(&db, "[auth.throttle]\nip_burst = 1000\nfree_failures = 1000\naccount_free_failures = 1000\n").await;
        app.register("ada@example.com").await;
        // The work is counted, not timed: one Argon2id check per sign-in,
        // whether the account exists or not (a dummy hash for a stranger).
        let hashes = || async {
            let text = reqwest::get(app.url("/metrics")).await.unwrap().text().await.unwrap();
            text.lines()
                .find_map(|l| l.strip_prefix("auth_password_hashes_total"))
                .and_then(|rest| rest.split_whitespace().last())
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("auth_password_hashes_total in:\n{text}"))
        };
        let mut bodies = Vec::new();
        for email in ["ada@example.com", "nobody@example.com"] {
            let before = hashes().await;
            let r = app.login(email, "not the password at all").await;
            assert_eq!(r.status(), 401);
            assert_eq!(hashes().await - before, 1, "{email}: one password check, exactly");
            let mut body: Value = r.json().await.unwrap();
            body.as_object_mut().unwrap().remove("request_id");
            bodies.push(body);
        }
        assert_eq!(bodies[0], bodies[1], "same body");
    }
}
