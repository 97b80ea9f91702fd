//! Auth over real HTTP on port 0, on SQLite and (with `PANAL_TEST_POSTGRES_URL`)
//! on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use auth::store::Store;
use auth::tokens;
use chrono::Utc;
use contracts::Event;
use kit::auth::AccessClaims;
use kit::config::HttpSettings;
use kit::db::Db;
use kit::testing::{TestContext, TestDb, TestServer, problem};
use serde_json::{Value, json};
use uuid::Uuid;

const PASSWORD: &str = "correct horse battery staple";

mod admin;
mod attacks;
mod bots;
mod flows;
mod mfa;
mod oauth;
mod service_clients;

struct TestApp {
    server: TestServer,
    http: reqwest::Client,
    db: Db,
    handle: auth::Handle,
    /// Keeps the test's bus alive.
    _ctx: TestContext,
}

#[derive(Debug, Clone)]
struct Tokens {
    access: String,
    refresh: String,
    session: String,
}

impl TestApp {
    async fn spawn(db: &TestDb) -> Self {
        Self::spawn_with(db, "").await
    }

    /// With extra configuration (TOML).
    async fn spawn_with(db: &TestDb, toml: &str) -> Self {
        let ctx = TestContext::new(kit::config::Config::from_toml(toml).unwrap()).await;
        let pool = Db::connect(&db.url, &ctx.config.settings.db).await.unwrap();
        let (service, handle) = auth::build(&ctx, pool.clone()).await.unwrap();
        let server = TestServer::spawn(service, HttpSettings::default()).await;
        Self { server, http: reqwest::Client::new(), db: pool, handle, _ctx: ctx }
    }

    async fn get(&self, path: &str, access: &str) -> reqwest::Response {
        self.http.get(self.url(path)).bearer_auth(access).send().await.unwrap()
    }

    async fn post_as(&self, path: &str, access: &str, body: Value) -> reqwest::Response {
        self.http.post(self.url(path)).bearer_auth(access).json(&body).send().await.unwrap()
    }

    /// The link token from the last mail of `kind` handed to notify for `to`.
    fn mailed_token(&self, to: &str, kind: &str) -> String {
        let mail = self
            .handle
            .mailer
            .logged()
            .into_iter()
            .rev()
            .find(|m| m.to == to && m.kind == kind)
            .unwrap_or_else(|| panic!("no {kind} mail to {to}"));
        mail.link.split("#token=").nth(1).unwrap().to_owned()
    }

    /// The id of the account with `email`.
    async fn user_id(&self, email: &str) -> Uuid {
        kit::with_db!(&self.db, pool => sqlx::query_scalar("SELECT id FROM users WHERE email = $1").bind(email).fetch_one(pool).await).unwrap()
    }

    /// Makes `email`'s account an administrator the way an operator does.
    async fn make_admin(&self, email: &str) {
        auth::ops::grant_admin(&self.db, email).await.unwrap();
    }

    fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.http.post(self.url(path)).json(&body).send().await.unwrap()
    }

    async fn register(&self, email: &str) -> reqwest::Response {
        self.post("/v1/auth/register", json!({"email": email, "password": PASSWORD, "display_name": "Ada"})).await
    }

    async fn login(&self, email: &str, password: &str) -> reqwest::Response {
        self.post("/v1/auth/login", json!({"email": email, "password": password})).await
    }

    async fn signed_in(&self, email: &str) -> Tokens {
        assert_eq!(self.register(email).await.status(), 202);
        let r = self.login(email, PASSWORD).await;
        assert_eq!(r.status(), 200);
        tokens_of(r).await
    }

    async fn refresh(&self, refresh_token: &str) -> reqwest::Response {
        self.post("/v1/auth/refresh", json!({"refresh_token": refresh_token})).await
    }

    async fn me(&self, access: &str) -> reqwest::Response {
        self.http.get(self.url("/v1/auth/me")).bearer_auth(access).send().await.unwrap()
    }

    async fn logout(&self, access: &str) -> reqwest::Response {
        self.http.post(self.url("/v1/auth/logout")).bearer_auth(access).send().await.unwrap()
    }

    /// Signs `claims` with auth's real signing key, to test what verification
    /// does with tokens that are well signed but wrong in some other way.
    async fn forge(&self, claims: &AccessClaims) -> String {
        let key = Store::new(self.db.clone()).keys().await.unwrap().remove(0).material;
        tokens::sign_access_token(&key, claims).unwrap()
    }
}

async fn tokens_of(r: reqwest::Response) -> Tokens {
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 900);
    Tokens {
        access: v["access_token"].as_str().unwrap().to_owned(),
        refresh: v["refresh_token"].as_str().unwrap().to_owned(),
        session: v["session_id"].as_str().unwrap().to_owned(),
    }
}

fn claims_for(sub: Uuid, sid: Uuid) -> AccessClaims {
    let now = Utc::now().timestamp();
    AccessClaims {
        iss: "http://localhost:8000".into(),
        aud: "panal".into(),
        sub,
        sid: Some(sid),
        exp: now + 600,
        iat: now,
        jti: Uuid::now_v7(),
        roles: vec!["user".into()],
        client_id: None,
        scope: None,
    }
}

fn ids(tokens: &Tokens) -> (Uuid, Uuid) {
    let payload = tokens.access.split('.').nth(1).unwrap();
    use base64::Engine;
    let claims: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    (claims["sub"].as_str().unwrap().parse().unwrap(), claims["sid"].as_str().unwrap().parse().unwrap())
}

kit::backend_tests! {
    async fn a_user_registers_signs_in_and_reads_their_account(db) {
        let app = TestApp::spawn(&db).await;
        let r = app.register("Ada@Example.com").await;
        assert_eq!(r.status(), 202);

        let tokens = tokens_of(app.login("ADA@example.com", PASSWORD).await).await;
        let me: Value = app.me(&tokens.access).await.json().await.unwrap();
        assert_eq!(me["id"], app.user_id("ada@example.com").await.to_string());
        assert_eq!(me["email"], "ada@example.com");
        assert_eq!(me["display_name"], "Ada");
        assert_eq!(me["roles"], json!(["user"]));
        assert_eq!(me["email_verified"], false);
        assert!(me.get("password_hash").is_none());
    }

    async fn access_tokens_carry_every_required_claim_and_header(db) {
        let app = TestApp::spawn(&db).await;
        let tokens = app.signed_in("ada@example.com").await;
        let header = jsonwebtoken::decode_header(&tokens.access).unwrap();
        assert_eq!(header.alg, jsonwebtoken::Algorithm::EdDSA);
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        let kid = header.kid.unwrap();

        let jwks: Value = reqwest::get(app.url("/.well-known/jwks.json")).await.unwrap().json().await.unwrap();
        let key = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == kid.as_str()).expect("signing key is published");
        assert_eq!((key["kty"].as_str(), key["crv"].as_str(), key["alg"].as_str()), (Some("OKP"), Some("Ed25519"), Some("EdDSA")));
        assert!(key.get("d").is_none(), "the private key is never published");

        let decoding = jsonwebtoken::DecodingKey::from_ed_components(key["x"].as_str().unwrap()).unwrap();
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
        v.set_audience(&["panal"]);
        v.set_issuer(&["http://localhost:8000"]);
        let claims = jsonwebtoken::decode::<AccessClaims>(&tokens.access, &decoding, &v).unwrap().claims;
        assert_eq!(claims.sid.unwrap().to_string(), tokens.session);
        assert_eq!(claims.exp - claims.iat, 900, "access tokens live 15 minutes");

        let meta: Value = reqwest::get(app.url("/.well-known/oauth-authorization-server")).await.unwrap().json().await.unwrap();
        assert_eq!(meta["issuer"], "http://localhost:8000");
        assert_eq!(meta["jwks_uri"], "http://localhost:8000/.well-known/jwks.json");
        // No ID tokens, so no OpenID Connect discovery: auth is not an OpenID provider.
        assert_eq!(reqwest::get(app.url("/.well-known/openid-configuration")).await.unwrap().status(), 404);
    }

    async fn a_taken_email_gets_the_same_answer_and_its_owner_a_mail(db) {
        let app = TestApp::spawn(&db).await;
        let first = app.register("ada@example.com").await;
        assert_eq!(first.status(), 202);
        let first: Value = first.json().await.unwrap();
        let again = app.register("ADA@EXAMPLE.COM").await;
        assert_eq!(again.status(), 202, "registering cannot tell who has an account");
        assert_eq!(again.json::<Value>().await.unwrap(), first);
        let n: i64 = kit::with_db!(&app.db, pool => sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(pool).await).unwrap();
        assert_eq!(n, 1);
        let mails = app.handle.mailer.logged();
        assert!(mails.iter().any(|m| m.to == "ada@example.com" && m.kind == "account_exists"));
        // Many more attempts do not turn the form into a mail cannon.
        for _ in 0..30 {
            assert_eq!(app.register("ada@example.com").await.status(), 202);
        }
        let notices = app.handle.mailer.logged().iter().filter(|m| m.kind == "account_exists").count();
        assert!(notices <= 21, "{notices} notices");
    }

    async fn registration_lists_every_invalid_field(db) {
        let app = TestApp::spawn(&db).await;
        let r = app.post("/v1/auth/register", json!({"email": "not-an-email", "password": "short", "display_name": "  "})).await;
        assert_eq!(r.status(), 422);
        let p = problem(r).await;
        let fields: Vec<_> = p["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap().to_owned()).collect();
        assert_eq!(fields, ["email", "password", "display_name"]);

        let r = app.post("/v1/auth/register", json!({})).await;
        assert_eq!(problem(r).await["errors"].as_array().unwrap().len(), 3, "missing fields are listed too");
    }

    async fn passwords_are_between_8_and_128_characters_and_never_truncated(db) {
        let app = TestApp::spawn(&db).await;
        let long = "p".repeat(128);
        let r = app.post("/v1/auth/register", json!({"email": "a@example.com", "password": long, "display_name": "A"})).await;
        assert_eq!(r.status(), 202);
        let r = app.post("/v1/auth/register", json!({"email": "b@example.com", "password": "p".repeat(129), "display_name": "B"})).await;
        assert_eq!(r.status(), 422);
        assert_eq!(problem(r).await["errors"][0]["message"], "must be at most 128 characters");
        // Nothing is truncated: the same password less its last character fails.
        assert_eq!(app.login("a@example.com", &"p".repeat(127)).await.status(), 401);
        assert_eq!(app.login("a@example.com", &long).await.status(), 200);
    }

    async fn passwords_are_stored_as_argon2id_at_owasp_parameters(db) {
        let app = TestApp::spawn(&db).await;
        app.register("ada@example.com").await;
        let hash: String = kit::with_db!(&app.db, pool => sqlx::query_scalar("SELECT password_hash FROM users").fetch_one(pool).await).unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        assert!(!hash.contains(PASSWORD));
    }

    async fn registering_records_user_registered_in_the_outbox(db) {
        let app = TestApp::spawn(&db).await;
        app.register("ada@example.com").await;
        let id = app.user_id("ada@example.com").await.to_string();
        let (kind, payload): (String, String) = kit::with_db!(&app.db, pool =>
            sqlx::query_as("SELECT event_type, payload FROM outbox").fetch_one(pool).await).unwrap();
        assert_eq!(kind, "panal.auth.user_registered.v1");
        let envelope: Value = serde_json::from_str(&payload).unwrap();
        assert_eq!(envelope["specversion"], "1.0");
        assert_eq!(envelope["data"]["user_id"], id);
        assert_eq!(envelope["subject"], id);
    }

    async fn registering_publishes_user_registered_on_the_bus(db) {
        let app = TestApp::spawn(&db).await;
        use futures_util::StreamExt;
        let kind = contracts::auth::UserRegistered::TYPE.to_owned();
        let mut deliveries = app._ctx.bus.subscribe("auth-test", std::slice::from_ref(&kind)).await.unwrap();
        let r = app.http.post(app.url("/v1/auth/register"))
            .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .json(&json!({"email": "ada@example.com", "password": PASSWORD, "display_name": "Ada"}))
            .send().await.unwrap();
        assert_eq!(r.status(), 202);
        let id = app.user_id("ada@example.com").await.to_string();
        let delivery = tokio::time::timeout(std::time::Duration::from_secs(10), deliveries.next()).await.unwrap().unwrap().unwrap();
        let envelope: contracts::Envelope = serde_json::from_slice(&delivery.payload).unwrap();
        let event: contracts::auth::UserRegistered = envelope.decode().unwrap().unwrap();
        assert_eq!(event.user_id.to_string(), id);
        assert_eq!(event.email, "ada@example.com");
        assert!(envelope.traceparent.unwrap().starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "the request's trace travels with the event");
        delivery.ack().await.unwrap();
        // The relay marks the row sent once the broker confirmed it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let unsent: i64 = kit::with_db!(&app.db, pool =>
                sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL").fetch_one(pool).await).unwrap();
            if unsent == 0 { break; }
            assert!(std::time::Instant::now() < deadline, "the outbox row was never marked sent");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    async fn a_wrong_password_and_an_unknown_email_get_the_same_answer(db) {
        let app = TestApp::spawn(&db).await;
        app.register("ada@example.com").await;
        let wrong = app.login("ada@example.com", "wrong password!").await;
        let unknown = app.login("nobody@example.com", "wrong password!").await;
        assert_eq!(wrong.status(), 401);
        assert_eq!(unknown.status(), 401);
        let (mut a, mut b) = (problem(wrong).await, problem(unknown).await);
        a.as_object_mut().unwrap().remove("request_id");
        b.as_object_mut().unwrap().remove("request_id");
        assert_eq!(a, b);
    }

    async fn refresh_rotates_the_token_and_the_old_one_stops_working(db) {
        let app = TestApp::spawn(&db).await;
        let first = app.signed_in("ada@example.com").await;
        let second = tokens_of(app.refresh(&first.refresh).await).await;
        assert_ne!(second.refresh, first.refresh);
        assert_eq!(second.session, first.session, "rotation stays in the session");
        assert_eq!(app.me(&second.access).await.status(), 200);
        let third = tokens_of(app.refresh(&second.refresh).await).await;
        assert_eq!(app.me(&third.access).await.status(), 200);
    }

    async fn refresh_token_reuse_revokes_the_whole_family(db) {
        let app = TestApp::spawn(&db).await;
        let first = app.signed_in("ada@example.com").await;
        let second = tokens_of(app.refresh(&first.refresh).await).await;

        // The first token again: a copy is in someone else's hands.
        let r = app.refresh(&first.refresh).await;
        assert_eq!(r.status(), 401);
        assert_eq!(problem(r).await["type"], "urn:panal:problem:invalid-refresh-token");

        // Its successor stops working too, and so does the session's access token.
        assert_eq!(app.refresh(&second.refresh).await.status(), 401);
        assert_eq!(app.me(&second.access).await.status(), 401);

        // Another session of the same user is untouched.
        let other = tokens_of(app.login("ada@example.com", PASSWORD).await).await;
        assert_eq!(app.me(&other.access).await.status(), 200);
    }

    async fn refresh_tokens_are_stored_only_as_hashes(db) {
        let app = TestApp::spawn(&db).await;
        let t = app.signed_in("ada@example.com").await;
        let stored: Vec<Vec<u8>> = kit::with_db!(&app.db, pool =>
            sqlx::query_scalar("SELECT token_hash FROM refresh_tokens").fetch_all(pool).await).unwrap();
        assert_eq!(stored, vec![tokens::hash_refresh_token(&t.refresh)]);
        assert_ne!(stored[0], t.refresh.as_bytes());
    }

    async fn logout_ends_the_session_at_once(db) {
        let app = TestApp::spawn(&db).await;
        let t = app.signed_in("ada@example.com").await;
        assert_eq!(app.logout(&t.access).await.status(), 204);

        let r = app.me(&t.access).await;
        assert_eq!(r.status(), 401);
        assert_eq!(problem(r).await["detail"], "the session of this token has ended");
        assert_eq!(app.refresh(&t.refresh).await.status(), 401);
        assert_eq!(app.logout(&t.access).await.status(), 204, "logging out twice is harmless");
    }

    async fn logout_also_works_with_the_refresh_token(db) {
        let app = TestApp::spawn(&db).await;
        let t = app.signed_in("ada@example.com").await;
        let r = app.post("/v1/auth/logout", json!({"refresh_token": t.refresh})).await;
        assert_eq!(r.status(), 204);
        assert_eq!(app.me(&t.access).await.status(), 401);
        let r = app.http.post(app.url("/v1/auth/logout")).send().await.unwrap();
        assert_eq!(r.status(), 401, "neither token: nothing to end");
    }

    async fn missing_garbled_expired_and_foreign_tokens_are_refused_with_401(db) {
        let app = TestApp::spawn(&db).await;
        let t = app.signed_in("ada@example.com").await;
        let (sub, sid) = ids(&t);

        let r = app.http.get(app.url("/v1/auth/me")).send().await.unwrap();
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()["www-authenticate"], "Bearer");

        let r = app.http.get(app.url("/v1/auth/me")).header("authorization", "Basic YWRhOnB3").send().await.unwrap();
        assert_eq!(r.status(), 401);

        let expired = app.forge(&AccessClaims { exp: Utc::now().timestamp() - 120, iat: Utc::now().timestamp() - 1000, ..claims_for(sub, sid) }).await;
        let wrong_iss = app.forge(&AccessClaims { iss: "https://evil.example".into(), ..claims_for(sub, sid) }).await;
        let wrong_aud = app.forge(&AccessClaims { aud: "someone-else".into(), ..claims_for(sub, sid) }).await;
        let future_iat = app.forge(&AccessClaims { iat: Utc::now().timestamp() + 3600, ..claims_for(sub, sid) }).await;
        let mut tampered = t.access.clone();
        tampered.replace_range(tampered.len() - 6.., "AAAAAA");
        let cases = [
            ("garbage", "not.a.jwt".to_owned(), "the token is malformed"),
            ("expired", expired, "the token has expired"),
            ("wrong issuer", wrong_iss, "the token was issued for another issuer"),
            ("wrong audience", wrong_aud, "the token was issued for another audience"),
            ("issued in the future", future_iat, "the token is not valid yet"),
            ("bad signature", tampered, "the token signature is invalid"),
            // Under the server's 16 KiB head limit, over the verifier's 4 KiB.
            ("oversized", "a".repeat(15 * 1024), "the token is too long"),
        ];
        for (what, token, detail) in cases {
            let r = app.me(&token).await;
            assert_eq!(r.status(), 401, "{what}");
            assert_eq!(r.headers()["www-authenticate"], "Bearer error=\"invalid_token\"", "{what}");
            assert_eq!(problem(r).await["detail"], detail, "{what}");
        }
        // A well-formed token for a session that does not exist.
        let orphan = app.forge(&claims_for(sub, Uuid::now_v7())).await;
        assert_eq!(app.me(&orphan).await.status(), 401);
    }

    async fn bad_request_bodies_get_clear_problems(db) {
        let app = TestApp::spawn(&db).await;
        let url = app.url("/v1/auth/register");
        let r = app.http.post(&url).body("{\"email\":").header("content-type", "application/json").send().await.unwrap();
        assert_eq!(r.status(), 400);
        let r = app.http.post(&url).body("email=a").header("content-type", "application/x-www-form-urlencoded").send().await.unwrap();
        assert_eq!(r.status(), 415);
        let r = app.post("/v1/auth/register", json!({"email": "a@example.com", "password": PASSWORD, "display_name": "A", "role": "admin"})).await;
        assert_eq!(r.status(), 422);
        assert!(problem(r).await["detail"].as_str().unwrap().contains("unknown field `role`"));
        let r = app.http.post(&url).body(vec![b' '; 100_000]).header("content-type", "application/json").send().await.unwrap();
        assert_eq!(r.status(), 413);
        let r = app.post("/v1/auth/refresh", json!({"refresh_token": 42})).await;
        assert_eq!(r.status(), 422);
        let r = app.post("/v1/auth/refresh", json!({})).await;
        assert_eq!(problem(r).await["errors"][0]["field"], "refresh_token");
    }

    async fn the_signing_key_survives_a_restart(db) {
        let mut first = TestApp::spawn(&db).await;
        let t = first.signed_in("ada@example.com").await;
        first.server.stop().await.unwrap();
        first.db.close().await;

        let second = TestApp::spawn(&db).await;
        assert_eq!(second.me(&t.access).await.status(), 200, "tokens signed before the restart still verify");
        assert_eq!(second.refresh(&t.refresh).await.status(), 200);
    }

    async fn sessions_record_the_device(db) {
        let app = TestApp::spawn(&db).await;
        app.register("ada@example.com").await;
        let r = app.http.post(app.url("/v1/auth/login"))
            .header("user-agent", "panal-test/1.0")
            .json(&json!({"email": "ada@example.com", "password": PASSWORD}))
            .send().await.unwrap();
        assert_eq!(r.status(), 200);
        let (ua, ip): (Option<String>, Option<String>) = kit::with_db!(&app.db, pool =>
            sqlx::query_as("SELECT user_agent, ip FROM sessions").fetch_one(pool).await).unwrap();
        assert_eq!(ua.as_deref(), Some("panal-test/1.0"));
        assert_eq!(ip.as_deref(), Some("127.0.0.1"));
    }
}
