//! Users over real HTTP, with the real auth service and the event bus between
//! them, on SQLite and (with `PANAL_TEST_POSTGRES_URL`) PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Cursor;
use std::time::{Duration, Instant};

use chrono::Utc;
use kit::auth::AccessClaims;
use kit::config::HttpSettings;
use kit::db::Db;
use kit::testing::{TestContext, TestDb, TestServer};
use serde_json::{Value, json};
use uuid::Uuid;

const PASSWORD: &str = "correct horse battery staple";

struct Platform {
    ctx: TestContext,
    _auth: TestServer,
    _users: TestServer,
    gateway: TestServer,
    auth_db: Db,
    users_db: Db,
    http: reqwest::Client,
    _dbs: (TestDb, TestDb),
    _avatars: TempDir,
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

impl Platform {
    async fn start(db: TestDb) -> Self {
        let users_test_db = db.another().await;
        let avatars = TempDir(std::env::temp_dir().join(format!("panal-avatars-{}", Uuid::new_v4().simple())));
        let toml = format!(
            "[users.avatars]\nbackend = \"local\"\ndir = \"{}\"\n[bus]\nbackoff_base_ms = 20\n",
            avatars.0.display()
        );
        let config = kit::config::Config::from_toml(&toml).unwrap();
        let ctx = TestContext::new(config.clone()).await;
        let auth_db = Db::connect(&db.url, &config.settings.db).await.unwrap();
        let auth = kit::testing::server::<auth::Auth>(&ctx, Some(auth_db.clone())).await;
        let auth = TestServer::spawn(auth, HttpSettings::default()).await;
        let ctx = ctx.with_service(&auth::Auth, format!("http://{}", auth.addr));
        let users_db = Db::connect(&users_test_db.url, &config.settings.db).await.unwrap();
        let users = kit::testing::server::<users::Users>(&ctx, Some(users_db.clone())).await;
        let users = TestServer::spawn(users, HttpSettings::default()).await;
        let ctx = ctx.with_service(&users::Users, format!("http://{}", users.addr));
        let gateway = kit::testing::server::<gateway::Gateway>(&ctx, None).await;
        let gateway = TestServer::spawn(gateway, HttpSettings::default()).await;
        Self {
            ctx,
            _auth: auth,
            _users: users,
            gateway,
            auth_db,
            users_db,
            http: reqwest::Client::new(),
            _dbs: (db, users_test_db),
            _avatars: avatars,
        }
    }

    fn url(&self, path: &str) -> String {
        self.gateway.url(path)
    }

    /// Registers, signs in, and waits for the profile users builds from the event.
    async fn signup(&self, name: &str) -> User {
        let email = format!("{}@example.com", Uuid::new_v4().simple());
        let r = self
            .http
            .post(self.url("/v1/auth/register"))
            .json(&json!({"email": email, "password": PASSWORD, "display_name": name}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
        self.login(&email).await
    }

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
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = self.get("/v1/users/me", &token).await;
            if r.status() == 200 {
                let me: Value = r.json().await.unwrap();
                return User { id: me["id"].as_str().unwrap().parse().unwrap(), token, email: email.to_owned() };
            }
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

    /// Gives `user` the admin role (auth's role API is a later issue) and
    /// signs them in again for a token that carries it.
    async fn make_admin(&self, user: &User) -> User {
        kit::with_db!(write &self.auth_db, pool => sqlx::query("INSERT INTO user_roles (user_id, role, granted_at) VALUES ($1, 'admin', $2)")
            .bind(user.id)
            .bind(Utc::now())
            .execute(pool)
            .await
            .map(|_| ()))
        .unwrap();
        self.login(&user.email).await
    }

    /// A token for `user` issued `age` ago, signed with auth's real key.
    async fn old_token(&self, user: &User, age: chrono::Duration) -> String {
        let key = auth::store::Store::new(self.auth_db.clone()).keys().await.unwrap().remove(0).material;
        let session: Uuid = {
            use base64::Engine;
            let payload = user.token.split('.').nth(1).unwrap();
            let claims: Value =
                serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap())
                    .unwrap();
            claims["sid"].as_str().unwrap().parse().unwrap()
        };
        let iat = (Utc::now() - age).timestamp();
        let claims = AccessClaims {
            iss: "http://localhost:8000".into(),
            aud: "panal".into(),
            sub: user.id,
            sid: Some(session),
            iat,
            exp: Utc::now().timestamp() + 300,
            jti: Uuid::now_v7(),
            roles: vec!["user".into()],
            client_id: None,
            scope: None,
        };
        auth::tokens::sign_access_token(&key, &claims).unwrap()
    }
}

async fn problem(r: reqwest::Response) -> Value {
    assert_eq!(r.headers()["content-type"], "application/problem+json", "status {}", r.status());
    r.json().await.unwrap()
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

mod gdpr;
mod media;
mod profiles;
mod social;
