//! Users over real HTTP, on SQLite and (with `PANAL_TEST_POSTGRES_URL`)
//! PostgreSQL.
//!
//! Most tests run users alone ([`Platform::start`]): accounts arrive as
//! `user_registered` events published on the test bus, and tokens come from a
//! test issuer in auth's place. The walk-throughs across services (auth
//! following a ban, the GDPR export and erasure) run auth, users and the
//! gateway together ([`Platform::walkthrough`]), in `walkthrough.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Cursor;
use std::time::{Duration, Instant};

use chrono::Utc;
use contracts::auth::UserRegistered;
use kit::auth::AccessClaims;
use kit::config::HttpSettings;
use kit::db::Db;
use kit::testing::{TestContext, TestDb, TestIssuer, TestServer, problem};
use serde_json::{Value, json};
use uuid::Uuid;

const PASSWORD: &str = "correct horse battery staple";

/// Auth and the gateway, when a walk-through runs them.
struct Others {
    _auth: TestServer,
    auth_db: Db,
    gateway: TestServer,
}

struct Platform {
    ctx: TestContext,
    /// Signs tokens when users runs alone.
    issuer: Option<TestIssuer>,
    others: Option<Others>,
    users: TestServer,
    users_db: Db,
    http: reqwest::Client,
    _dbs: Vec<TestDb>,
    avatars: TempDir,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[derive(Debug, Clone)]
struct User {
    id: Uuid,
    token: String,
    email: String,
}

async fn context() -> (TestContext, TempDir) {
    let avatars = TempDir(std::env::temp_dir().join(format!("panal-avatars-{}", Uuid::new_v4().simple())));
    let toml = format!(
        "[users.avatars]\nbackend = \"local\"\ndir = \"{}\"\n[bus]\nbackoff_base_ms = 20\n",
        avatars.0.display()
    );
    let config = kit::config::Config::from_toml(&toml).unwrap();
    (TestContext::new(config).await, avatars)
}

async fn spawn_users(ctx: &TestContext, db: &TestDb) -> (TestServer, Db) {
    let users_db = Db::connect(&db.url, &ctx.config.settings.db).await.unwrap();
    let users = kit::testing::server::<users::Users>(ctx, Some(users_db.clone())).await;
    (TestServer::spawn(users, HttpSettings::default()).await, users_db)
}

impl Platform {
    /// Users alone, with a test issuer in auth's place.
    async fn start(db: TestDb) -> Self {
        let (ctx, avatars) = context().await;
        let issuer = TestIssuer::start(&ctx.config).await;
        let ctx = ctx.with_issuer(&issuer);
        let (users, users_db) = spawn_users(&ctx, &db).await;
        Self {
            ctx,
            issuer: Some(issuer),
            others: None,
            users,
            users_db,
            http: reqwest::Client::new(),
            _dbs: vec![db],
            avatars,
        }
    }

    /// Auth, users and the gateway, as `panal up` runs them.
    async fn walkthrough(db: TestDb) -> Self {
        let users_test_db = db.another().await;
        let (ctx, avatars) = context().await;
        let auth_db = Db::connect(&db.url, &ctx.config.settings.db).await.unwrap();
        let auth = kit::testing::server::<auth::Auth>(&ctx, Some(auth_db.clone())).await;
        let auth = TestServer::spawn(auth, HttpSettings::default()).await;
        let ctx = ctx.with_service(&auth::Auth, format!("http://{}", auth.addr));
        let (users, users_db) = spawn_users(&ctx, &users_test_db).await;
        let ctx = ctx.with_service(&users::Users, format!("http://{}", users.addr));
        let gateway = kit::testing::server::<gateway::Gateway>(&ctx, None).await;
        let gateway = TestServer::spawn(gateway, HttpSettings::default()).await;
        Self {
            ctx,
            issuer: None,
            others: Some(Others { _auth: auth, auth_db, gateway }),
            users,
            users_db,
            http: reqwest::Client::new(),
            _dbs: vec![db, users_test_db],
            avatars,
        }
    }

    /// Where requests go: the gateway when it runs, users otherwise.
    fn url(&self, path: &str) -> String {
        match &self.others {
            Some(others) => others.gateway.url(path),
            None => self.users.url(path),
        }
    }

    fn addr(&self) -> std::net::SocketAddr {
        match &self.others {
            Some(others) => others.gateway.addr,
            None => self.users.addr,
        }
    }

    fn auth_db(&self) -> &Db {
        &self.others.as_ref().expect("a walk-through").auth_db
    }

    /// A new account with a profile: registered with auth in a walk-through,
    /// announced by a `user_registered` event otherwise.
    async fn signup(&self, name: &str) -> User {
        let email = format!("{}@example.com", Uuid::new_v4().simple());
        let Some(issuer) = &self.issuer else {
            let r = self
                .http
                .post(self.url("/v1/auth/register"))
                .json(&json!({"email": email, "password": PASSWORD, "display_name": name}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
            return self.login(&email).await;
        };
        let id = Uuid::now_v7();
        self.ctx
            .publish(&UserRegistered {
                user_id: id,
                email: email.clone(),
                display_name: name.to_owned(),
                registered_at: Utc::now(),
            })
            .await;
        let user = User { id, token: issuer.token(id, &[]), email };
        self.wait_for_profile(&user).await;
        user
    }

    /// Signs in with auth (walk-throughs).
    async fn login(&self, email: &str) -> User {
        let r = self
            .http
            .post(self.url("/v1/auth/login"))
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        let token = v["access_token"].as_str().unwrap().to_owned();
        let claims = claims_of(&token);
        let user = User { id: claims.sub, token, email: email.to_owned() };
        self.wait_for_profile(&user).await;
        user
    }

    /// Waits for users to build the profile from the event.
    async fn wait_for_profile(&self, user: &User) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.get("/v1/users/me", &user.token).await.status() != 200 {
            assert!(Instant::now() < deadline, "the profile was never created");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        self.http.get(self.url(path)).bearer_auth(token).send().await.unwrap()
    }

    async fn send(&self, method: reqwest::Method, path: &str, token: &str, body: Option<Value>) -> reqwest::Response {
        let mut r = self.http.request(method, self.url(path)).bearer_auth(token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        r.send().await.unwrap()
    }

    async fn put(&self, path: &str, token: &str, body: Value) -> reqwest::Response {
        self.send(reqwest::Method::PUT, path, token, Some(body)).await
    }

    async fn post(&self, path: &str, token: &str, body: Option<Value>) -> reqwest::Response {
        self.send(reqwest::Method::POST, path, token, body).await
    }

    async fn delete(&self, path: &str, token: &str) -> reqwest::Response {
        self.send(reqwest::Method::DELETE, path, token, None).await
    }

    async fn upload(&self, token: &str, bytes: Vec<u8>, file_name: &str) -> reqwest::Response {
        let part =
            reqwest::multipart::Part::bytes(bytes).file_name(file_name.to_owned()).mime_str("image/png").unwrap();
        let form = reqwest::multipart::Form::new().part("avatar", part);
        self.http.put(self.url("/v1/users/me/avatar")).bearer_auth(token).multipart(form).send().await.unwrap()
    }

    /// `user` as an administrator: a token with the role from the test
    /// issuer, or (walk-throughs) the role granted by auth's own operation
    /// and a new sign-in.
    async fn make_admin(&self, user: &User) -> User {
        match &self.issuer {
            Some(issuer) => User { token: issuer.token(user.id, &["admin"]), ..user.clone() },
            None => {
                auth::ops::grant_admin(self.auth_db(), &user.email).await.unwrap();
                self.login(&user.email).await
            }
        }
    }

    /// A token for `user` issued `age` ago, signed with the real key.
    async fn old_token(&self, user: &User, age: chrono::Duration) -> String {
        let claims = AccessClaims { iat: (Utc::now() - age).timestamp(), ..claims_of(&user.token) };
        match &self.issuer {
            Some(issuer) => issuer.sign(&claims),
            None => {
                let key = auth::store::Store::new(self.auth_db().clone()).keys().await.unwrap().remove(0).material;
                auth::tokens::sign_access_token(&key, &claims).unwrap()
            }
        }
    }
}

/// The claims a token carries (read, not verified).
fn claims_of(token: &str) -> AccessClaims {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f().await {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 90]));
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(img).write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png).unwrap();
    out
}

/// A PNG carrying a text chunk (where cameras and editors leave metadata).
fn png_with_metadata(secret: &str) -> Vec<u8> {
    let mut data = png(40, 40);
    let keyword_and_text = format!("Comment\0{secret}");
    let mut chunk = Vec::new();
    chunk.extend_from_slice(&(keyword_and_text.len() as u32).to_be_bytes());
    let mut body = b"tEXt".to_vec();
    body.extend_from_slice(keyword_and_text.as_bytes());
    let crc = crc32(&body);
    chunk.extend_from_slice(&body);
    chunk.extend_from_slice(&crc.to_be_bytes());
    // Insert after the IHDR chunk (8-byte signature + 25-byte IHDR).
    data.splice(33..33, chunk);
    data
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for b in bytes {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

mod media;
mod profiles;
mod social;
mod walkthrough;
