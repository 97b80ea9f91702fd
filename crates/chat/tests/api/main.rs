//! Chat over real HTTP, on SQLite and (with `PANAL_TEST_POSTGRES_URL`)
//! PostgreSQL. Chat runs alone: accounts and blocks arrive as users' and
//! auth's events published on the test bus, tokens come from a test issuer,
//! and what chat asks realtime to deliver is read off the bus
//! (`panal.realtime.publication.v1`). The walk-through with real sockets
//! through the gateway is in `crates/panal/tests/cli/realtime.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod flows;

use std::time::{Duration, Instant};

use chrono::Utc;
use contracts::auth::UserRegistered;
use contracts::realtime::Publication;
use contracts::users::{UserBlocked, UserErased};
use kit::config::HttpSettings;
use kit::db::Db;
use kit::testing::{Published, TestContext, TestDb, TestIssuer, TestServer, assert_problem};
use serde_json::{Value, json};
use uuid::Uuid;

struct Platform {
    ctx: TestContext,
    issuer: TestIssuer,
    chat: TestServer,
    db: Db,
    http: reqwest::Client,
    _db: TestDb,
}

#[derive(Debug, Clone)]
struct User {
    id: Uuid,
    token: String,
}

impl Platform {
    async fn start(db: TestDb) -> Self {
        Self::with_config(db, "").await
    }

    async fn with_config(db: TestDb, extra: &str) -> Self {
        let config = kit::config::Config::from_toml(&format!("[bus]\nbackoff_base_ms = 20\n{extra}")).unwrap();
        let ctx = TestContext::new(config).await;
        let issuer = TestIssuer::start(&ctx.config).await;
        let ctx = ctx.with_issuer(&issuer);
        let chat_db = Db::connect(&db.url, &ctx.config.settings.db).await.unwrap();
        let chat = kit::testing::server::<chat::Chat>(&ctx, Some(chat_db.clone())).await;
        let chat = TestServer::spawn(chat, HttpSettings::default()).await;
        Self { ctx, issuer, chat, db: chat_db, http: reqwest::Client::new(), _db: db }
    }

    /// A new account chat has heard of (from auth's `user_registered`).
    async fn user(&self, name: &str) -> User {
        let id = Uuid::now_v7();
        self.ctx
            .publish(&UserRegistered {
                user_id: id,
                email: format!("{}@example.com", id.simple()),
                display_name: name.to_owned(),
                registered_at: Utc::now(),
            })
            .await;
        self.eventually("chat learns the new user", || async {
            self.count("SELECT count(*) FROM people WHERE user_id = $1", id).await == 1
        })
        .await;
        User { id, token: self.issuer.token(id, &[]) }
    }

    fn with_roles(&self, user: &User, roles: &[&str]) -> User {
        User { id: user.id, token: self.issuer.token(user.id, roles) }
    }

    /// `blocker` blocks `blocked` (users' event), once chat has applied it.
    async fn block(&self, blocker: &User, blocked: &User) {
        self.ctx.publish(&UserBlocked { blocker: blocker.id, blocked: blocked.id, blocked_at: Utc::now() }).await;
        self.eventually("chat applies the block", || async {
            self.count("SELECT count(*) FROM blocks WHERE blocker = $1", blocker.id).await == 1
        })
        .await;
    }

    async fn erase(&self, user: &User) {
        self.ctx.publish(&UserErased { user_id: user.id, erased_at: Utc::now() }).await;
        self.eventually("chat applies the erasure", || async {
            self.count("SELECT count(*) FROM people WHERE user_id = $1 AND erased", user.id).await == 1
        })
        .await;
    }

    async fn count(&self, sql: &'static str, id: Uuid) -> i64 {
        kit::with_db!(&self.db, pool => sqlx::query_scalar::<_, i64>(sql).bind(id).fetch_one(pool).await).unwrap()
    }

    async fn eventually<F, Fut>(&self, what: &str, mut f: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f().await {
            assert!(Instant::now() < deadline, "{what}: not within 10 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn send(&self, method: reqwest::Method, path: &str, token: &str, body: Option<Value>) -> reqwest::Response {
        let mut r = self.http.request(method, self.chat.url(path)).bearer_auth(token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        r.send().await.unwrap()
    }

    async fn get(&self, path: &str, user: &User) -> reqwest::Response {
        self.send(reqwest::Method::GET, path, &user.token, None).await
    }

    async fn post(&self, path: &str, user: &User, body: Value) -> reqwest::Response {
        self.send(reqwest::Method::POST, path, &user.token, Some(body)).await
    }

    async fn put(&self, path: &str, user: &User, body: Value) -> reqwest::Response {
        self.send(reqwest::Method::PUT, path, &user.token, Some(body)).await
    }

    async fn patch(&self, path: &str, user: &User, body: Value) -> reqwest::Response {
        self.send(reqwest::Method::PATCH, path, &user.token, Some(body)).await
    }

    async fn delete(&self, path: &str, user: &User) -> reqwest::Response {
        self.send(reqwest::Method::DELETE, path, &user.token, None).await
    }

    async fn json(&self, r: reqwest::Response, status: u16) -> Value {
        let got = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert_eq!(got, status, "{text}");
        if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() }
    }

    /// A room `owner` made, with the others joined.
    async fn room(&self, owner: &User, name: &str, visibility: &str, others: &[&User]) -> Uuid {
        let mut body = json!({"name": name, "visibility": visibility});
        if visibility == "password" {
            body["password"] = json!("let me in");
        }
        let room = self.json(self.post("/v1/chat/rooms", owner, body).await, 201).await;
        let id: Uuid = room["id"].as_str().unwrap().parse().unwrap();
        for user in others {
            let r = self.post(&format!("/v1/chat/rooms/{id}/join"), user, json!({"password": "let me in"})).await;
            self.json(r, 200).await;
        }
        id
    }

    async fn say(&self, user: &User, conversation: Uuid, body: &str) -> Value {
        let r =
            self.post(&format!("/v1/chat/conversations/{conversation}/messages"), user, json!({"body": body})).await;
        self.json(r, 201).await
    }

    /// The bodies of `user`'s view of a conversation, oldest first.
    async fn bodies(&self, user: &User, conversation: Uuid) -> Vec<String> {
        let page =
            self.json(self.get(&format!("/v1/chat/conversations/{conversation}/messages"), user).await, 200).await;
        page["items"].as_array().unwrap().iter().map(|m| m["body"].as_str().unwrap().to_owned()).collect()
    }

    async fn unread(&self, user: &User, conversation: Uuid) -> i64 {
        let list = self.json(self.get("/v1/chat/conversations", user).await, 200).await;
        list.as_array().unwrap().iter().find(|c| c["id"] == conversation.to_string()).unwrap()["unread"]
            .as_i64()
            .unwrap()
    }

    async fn watch(&self) -> Published<Publication> {
        self.ctx.watch::<Publication>().await
    }
}

/// The next publication of `kind` (its `data.type`) on `channel`, skipping
/// others (those of earlier changes may still be on their way).
async fn next_on(watch: &mut Published<Publication>, channel: &str, kind: &str) -> Publication {
    loop {
        let (_, p) = watch.next().await;
        if p.channel == channel && p.data["type"] == kind {
            return p;
        }
    }
}

async fn problem_of(r: reqwest::Response, status: u16) -> Value {
    assert_problem(r, status, None).await
}
