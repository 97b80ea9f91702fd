//! Notify over real HTTP, on SQLite and (with `PANAL_TEST_POSTGRES_URL`)
//! PostgreSQL. People arrive as auth's and users' events; notifications as
//! users', game's, tournament's and auth's events on the test bus; e-mail
//! goes to a real SMTP server (aiosmtpd; `PANAL_TEST_SMTP=1` requires it);
//! the inbox's live pushes are read off the bus.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod push_service;
mod sms_provider;

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use contracts::auth::{PasswordChanged, UserLoggedIn, UserRegistered};
use contracts::game::InvitationSent;
use contracts::realtime::Publication;
use contracts::tournament::{Pairing, RoundStarted};
use contracts::users::{FriendshipChanged, FriendshipState, ProfileUpdated, UserErased};
use kit::config::HttpSettings;
use kit::db::Db;
use kit::testing::{Smtpd, TestContext, TestDb, TestIssuer, TestServer, assert_problem};
use kit::with_db;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::push_service::PushService;
use crate::sms_provider::SmsProvider;

struct Notify {
    ctx: TestContext,
    issuer: TestIssuer,
    server: TestServer,
    db: Db,
    http: reqwest::Client,
}

struct Person {
    id: Uuid,
    token: String,
}

impl Notify {
    /// Notify with digests off (each e-mail at once).
    async fn start(db: &TestDb, smtp: Option<&Smtpd>) -> Self {
        Self::start_with(db, smtp, 0).await
    }

    /// Push endpoints on this machine taken (the test's push service).
    async fn start_with(db: &TestDb, smtp: Option<&Smtpd>, digest_secs: u64) -> Self {
        Self::start_config(db, smtp, &format!("digest_secs = {digest_secs}\npush_allow_local = true\n")).await
    }

    /// With `notify` lines of its own (`[notify]` settings).
    async fn start_config(db: &TestDb, smtp: Option<&Smtpd>, notify: &str) -> Self {
        let smtp = smtp.map(|s| format!("smtp_url = \"{}\"\n", s.url())).unwrap_or_default();
        let dir = std::env::temp_dir().join(format!("panal-notify-{}", Uuid::now_v7().simple()));
        let toml = format!(
            "{smtp}data_dir = {dir:?}\npublic_url = \"https://panal.example\"\n[bus]\nbackoff_base_ms = 20\nmax_attempts = 2\n[notify]\ninterval_ms = 20\n{notify}"
        );
        let ctx = TestContext::new(kit::config::Config::from_toml(&toml).unwrap()).await;
        let issuer = TestIssuer::start(&ctx.config).await;
        let ctx = ctx.with_issuer(&issuer);
        let pool = Db::connect(&db.url, &ctx.config.settings.db).await.unwrap();
        let server = kit::testing::server::<notify::NotifyService>(&ctx, Some(pool.clone())).await;
        let server = TestServer::spawn(server, HttpSettings::default()).await;
        Self { ctx, issuer, server, db: pool, http: reqwest::Client::new() }
    }

    /// A registered person notify knows, in `locale`.
    async fn person(&self, name: &str, locale: Option<&str>) -> Person {
        let id = Uuid::now_v7();
        let email = format!("{}@example.com", name.to_lowercase());
        self.ctx
            .publish(&UserRegistered { user_id: id, email, display_name: name.into(), registered_at: Utc::now() })
            .await;
        if let Some(locale) = locale {
            self.ctx
                .publish(&ProfileUpdated {
                    user_id: id,
                    display_name: name.into(),
                    locale: Some(locale.into()),
                    timezone: Some("Europe/Madrid".into()),
                    updated_at: Utc::now(),
                })
                .await;
        }
        self.eventually("notify knows the person", || async {
            let n: i64 = with_db!(&self.db, pool => sqlx::query_scalar(
                "SELECT count(*) FROM recipients WHERE user_id = $1 AND ($2 IS NULL OR locale = $2)")
                .bind(id).bind(locale).fetch_one(pool).await)
            .unwrap();
            n == 1
        })
        .await;
        Person { id, token: self.issuer.token(id, &[]) }
    }

    async fn eventually<F, Fut>(&self, what: &str, check: F)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !check().await {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, token: &str, body: Option<Value>) -> reqwest::Response {
        let mut r = self.http.request(method, self.server.url(path)).bearer_auth(token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        r.send().await.unwrap()
    }

    async fn json(&self, path: &str, who: &Person) -> Value {
        let r = self.call(reqwest::Method::GET, path, &who.token, None).await;
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().await.unwrap()
    }

    async fn inbox(&self, who: &Person) -> Value {
        self.json("/v1/notify/inbox", who).await
    }

    /// Waits until `who` has `n` inbox items.
    async fn items(&self, who: &Person, n: usize) -> Value {
        self.eventually("the inbox fills", || async { self.inbox(who).await["items"].as_array().unwrap().len() >= n })
            .await;
        self.inbox(who).await
    }

    async fn deliveries(&self, who: &Person, status: &str) -> i64 {
        with_db!(&self.db, pool => sqlx::query_scalar(
            "SELECT count(*) FROM deliveries WHERE user_id = $1 AND status = $2")
            .bind(who.id).bind(status).fetch_one(pool).await)
        .unwrap()
    }
}

/// A 422 naming `field`.
async fn assert_field(r: reqwest::Response, field: &str) {
    let p = assert_problem(r, 422, None).await;
    let fields: Vec<&str> = p["errors"].as_array().unwrap().iter().filter_map(|e| e["field"].as_str()).collect();
    assert_eq!(fields, [field], "{p}");
}

fn friend_request(from: &Person, to: &Person) -> FriendshipChanged {
    FriendshipChanged { actor: from.id, other: to.id, state: FriendshipState::Requested, changed_at: Utc::now() }
}

kit::backend_tests! {
    async fn a_friend_request_is_one_inbox_item_pushed_live_and_one_email_even_when_redelivered(db) {
        let smtpd = Smtpd::start();
        let n = Notify::start(&db, smtpd.as_ref()).await;
        let ada = n.person("Ada", None).await;
        let bob = n.person("Bob", None).await;
        let push_service = PushService::start().await;
        let r = n.call(reqwest::Method::POST, "/v1/notify/push/subscriptions", &ada.token, Some(push_service.browser("adas-phone"))).await;
        assert_eq!(r.status(), 201);
        let mut pushes = n.ctx.watch::<Publication>().await;
        let event = friend_request(&bob, &ada);
        let envelope = contracts::Envelope::new(&event, None);
        n.ctx.publish_envelope(&envelope).await;
        let inbox = n.items(&ada, 1).await;
        assert_eq!(inbox["unread"], 1);
        let item = &inbox["items"][0];
        assert_eq!((item["kind"].as_str(), item["title"].as_str()), (Some("friend_request"), Some("Friend request")));
        assert_eq!(item["body"], "Bob wants to be your friend.");
        assert_eq!(item["link"], "/friends");
        // Pushed live on Ada's channel.
        let (_, push) = pushes.next().await;
        assert_eq!(push.channel, format!("user:{}", ada.id));
        assert_eq!((push.data["type"].as_str(), push.data["id"].as_str()), (Some("notification"), item["id"].as_str()));
        // The e-mail: sent once.
        n.eventually("the e-mail is sent", || async { n.deliveries(&ada, "sent").await == 1 }).await;
        // The same event again (a redelivery): nothing more.
        n.ctx.publish_envelope(&envelope).await;
        let other = friend_request(&ada, &bob);
        n.ctx.publish(&other).await;
        n.items(&bob, 1).await;
        assert_eq!(n.inbox(&ada).await["items"].as_array().unwrap().len(), 1);
        n.eventually("the push is sent", || async { n.deliveries(&ada, "sent").await == 2 }).await;
        // One Web Push, decrypted by Ada's browser.
        let received = push_service.received();
        assert_eq!(received.len(), 1, "exactly one push: {received:?}");
        let payload = received[0].payload.as_ref().unwrap();
        assert_eq!((payload["title"].as_str(), payload["kind"].as_str()), (Some("Friend request"), Some("friend_request")));
        assert_eq!(payload["body"], "Bob wants to be your friend.");
        assert_eq!(payload["link"], "https://panal.example/friends");
        assert_eq!(received[0].urgency.as_deref(), Some("normal"));
        // The topic is the delivery's id (a resend replaces, RFC 8030 §5.4), and so is the payload's.
        let topic = received[0].topic.clone().unwrap();
        assert_eq!(Uuid::try_parse(&topic).unwrap().to_string(), payload["id"].as_str().unwrap());
        if let Some(smtpd) = &smtpd {
            n.eventually("Bob's e-mail arrives", || async { smtpd.delivered().len() == 2 }).await;
            let to_ada: Vec<String> = smtpd.delivered().into_iter().filter(|m| m.contains("To: ada@example.com")).collect();
            assert_eq!(to_ada.len(), 1, "exactly one e-mail to Ada");
            let mail = &to_ada[0];
            assert!(mail.contains("Subject: Bob wants to be your friend on Panal"), "{mail}");
            assert!(mail.contains("https://panal.example/friends"), "absolute links in e-mail: {mail}");
            assert!(mail.contains("text/html") && mail.contains("text/plain"), "{mail}");
        }
    }

    async fn the_inbox_is_read_one_by_one_or_all_at_once_and_only_by_its_owner(db) {
        let n = Notify::start(&db, None).await;
        let ada = n.person("Ada", None).await;
        let bob = n.person("Bob", None).await;
        let cy = n.person("Cy", None).await;
        n.ctx.publish(&friend_request(&bob, &ada)).await;
        n.ctx.publish(&friend_request(&cy, &ada)).await;
        let inbox = n.items(&ada, 2).await;
        let newest = inbox["items"][0]["id"].as_str().unwrap().to_owned();
        // Bob cannot read Ada's item; Ada can.
        let path = format!("/v1/notify/inbox/{newest}/read");
        assert_problem(n.call(reqwest::Method::POST, &path, &bob.token, None).await, 404, None).await;
        assert_eq!(n.call(reqwest::Method::POST, &path, &ada.token, None).await.status(), 204);
        assert_eq!(n.inbox(&ada).await["unread"], 1);
        // Pages: one at a time, then the older.
        let first = n.json("/v1/notify/inbox?limit=1", &ada).await;
        assert_eq!((first["items"].as_array().unwrap().len(), first["has_more"].as_bool()), (1, Some(true)));
        // (The two events may be handled in either order: the older is
        // whichever came second in the inbox.)
        let second = n.json(&format!("/v1/notify/inbox?limit=1&before={newest}"), &ada).await;
        assert_eq!(second["items"][0]["id"], inbox["items"][1]["id"]);
        assert_eq!(second["has_more"], false);
        let r = n.call(reqwest::Method::POST, "/v1/notify/inbox/read", &ada.token, None).await;
        assert_eq!(r.json::<Value>().await.unwrap()["marked"], 1);
        assert_eq!(n.inbox(&ada).await["unread"], 0);
        for bad in ["/v1/notify/inbox?limit=0", "/v1/notify/inbox?limit=101"] {
            assert_problem(n.call(reqwest::Method::GET, bad, &ada.token, None).await, 422, None).await;
        }
        assert_problem(n.call(reqwest::Method::GET, "/v1/notify/inbox?unknown=1", &ada.token, None).await, 400, None).await;
        assert_problem(n.call(reqwest::Method::POST, "/v1/notify/inbox/not-an-id/read", &ada.token, None).await, 400, None).await;
    }

    async fn preferences_hold_and_a_security_email_cannot_be_turned_off(db) {
        let n = Notify::start(&db, None).await;
        let ada = n.person("Ada", None).await;
        let bob = n.person("Bob", None).await;
        let put = |body: Value| n.call(reqwest::Method::PUT, "/v1/notify/preferences", &ada.token, Some(body));
        let r = put(json!({"kind": "friend_request", "channel": "email", "enabled": false})).await;
        assert_eq!(r.status(), 200);
        let prefs: Value = r.json().await.unwrap();
        let email = prefs.as_array().unwrap().iter().find(|p| p["kind"] == "friend_request" && p["channel"] == "email").unwrap();
        assert_eq!(email["enabled"], false);
        // Refused: a security e-mail off, an unknown kind or channel.
        assert_problem(put(json!({"kind": "password_changed", "channel": "email", "enabled": false})).await, 422, None).await;
        assert_problem(put(json!({"kind": "nonsense", "channel": "email", "enabled": false})).await, 422, None).await;
        assert_problem(put(json!({"kind": "friend_request", "channel": "pigeon", "enabled": false})).await, 422, None).await;
        assert_problem(put(json!({"kind": "friend_request", "channel": "email", "enabled": false, "user_id": bob.id})).await, 422, None).await;
        // Bob's request reaches Ada's inbox, not her mail.
        n.ctx.publish(&friend_request(&bob, &ada)).await;
        n.items(&ada, 1).await;
        let channels: Vec<String> = with_db!(&n.db, pool => sqlx::query_scalar(
            "SELECT channel FROM deliveries WHERE user_id = $1").bind(ada.id).fetch_all(pool).await).unwrap();
        assert_eq!(channels, ["inbox"]);
        // Her password changed: the e-mail goes, turned off or not.
        put(json!({"kind": "password_changed", "channel": "inbox", "enabled": false})).await;
        n.ctx.publish(&PasswordChanged { user_id: ada.id, how: "reset".into(), changed_at: Utc::now() }).await;
        n.eventually("the security e-mail is sent", || async { n.deliveries(&ada, "sent").await == 1 }).await;
        assert_eq!(n.inbox(&ada).await["items"].as_array().unwrap().len(), 1, "no inbox item: turned off");
        // Bob's preferences are his own: Ada's choice did not touch them.
        let bobs = n.json("/v1/notify/preferences", &bob).await;
        // (All on but SMS for game invitations, which is asked for.)
        let off: Vec<(&Value, &Value)> = bobs.as_array().unwrap().iter()
            .filter(|p| p["enabled"] == false).map(|p| (&p["kind"], &p["channel"])).collect();
        assert_eq!(off, [(&json!("game_invitation"), &json!("sms"))], "{bobs}");
    }

    async fn invitations_and_tournament_calls_arrive_in_the_persons_language(db) {
        let n = Notify::start(&db, None).await;
        let ada = n.person("Ada", Some("es-ES")).await;
        let bob = n.person("Bob", None).await;
        let invitation = Uuid::now_v7();
        n.ctx.publish(&InvitationSent {
            invitation_id: invitation, from: bob.id, to: ada.id, bot: false,
            invited_at: Utc::now(), expires_at: Utc::now() + chrono::Duration::minutes(5),
        }).await;
        let inbox = n.items(&ada, 1).await;
        assert_eq!(inbox["items"][0]["title"], "Invitación a jugar");
        assert_eq!(inbox["items"][0]["link"], format!("/play/invitations/{invitation}"));
        // An invitation to a bot is nobody's notification.
        n.ctx.publish(&InvitationSent {
            invitation_id: Uuid::now_v7(), from: ada.id, to: bob.id, bot: true,
            invited_at: Utc::now(), expires_at: Utc::now(),
        }).await;
        // A round: both players told, in their languages; a bye and an
        // unknown entrant (a local alias) nobody.
        let tournament = Uuid::now_v7();
        n.ctx.publish(&RoundStarted {
            tournament_id: tournament, round: 1, started_at: Utc::now(),
            pairings: vec![
                Pairing { index: 0, a: ada.id, b: Some(bob.id) },
                Pairing { index: 1, a: Uuid::now_v7(), b: None },
            ],
        }).await;
        let bobs = n.items(&bob, 1).await;
        assert_eq!(bobs["items"][0]["body"], "Round 2: you play Ada now.");
        assert_eq!(bobs["items"].as_array().unwrap().len(), 1, "nothing for the invitation to a bot: {bobs}");
        let adas = n.items(&ada, 2).await;
        assert_eq!(adas["items"][0]["body"], "Ronda 2: juegas contra Bob ahora.");
    }

    async fn an_erased_person_is_forgotten_and_gets_nothing_more(db) {
        let n = Notify::start(&db, None).await;
        let ada = n.person("Ada", None).await;
        let bob = n.person("Bob", None).await;
        n.ctx.publish(&friend_request(&bob, &ada)).await;
        n.items(&ada, 1).await;
        let export = n.json("/v1/notify/me/export", &ada).await;
        assert_eq!(export["recipient"]["email"], "ada@example.com");
        assert_eq!(export["inbox"].as_array().unwrap().len(), 1);
        assert_eq!(export["deliveries"].as_array().unwrap().len(), 2);
        n.ctx.publish(&UserErased { user_id: ada.id, erased_at: Utc::now() }).await;
        n.eventually("the erasure is applied", || async {
            n.json("/v1/notify/me/export", &ada).await["recipient"].is_null()
        }).await;
        let export = n.json("/v1/notify/me/export", &ada).await;
        assert_eq!(export["inbox"].as_array().unwrap().len(), 0);
        let vars: Vec<String> = with_db!(&n.db, pool => sqlx::query_scalar(
            "SELECT vars FROM deliveries WHERE user_id = $1").bind(ada.id).fetch_all(pool).await).unwrap();
        assert!(vars.iter().all(|v| v == "{}"), "deliveries kept without their contents: {vars:?}");
        n.ctx.publish(&friend_request(&bob, &ada)).await;
        n.ctx.publish(&friend_request(&ada, &bob)).await;
        n.items(&bob, 1).await;
        assert_eq!(n.json("/v1/notify/inbox", &ada).await["items"].as_array().unwrap().len(), 0);
    }

    async fn quiet_hours_hold_e_mail_but_not_security_messages(db) {
        let n = Notify::start(&db, None).await;
        let ada = n.person("Ada", None).await;
        let bob = n.person("Bob", None).await;
        let put = |body: Value| n.call(reqwest::Method::PUT, "/v1/notify/quiet-hours", &ada.token, Some(body));
        // A window around now in Tokyo.
        let tokyo = Utc::now().with_timezone(&chrono_tz::Asia::Tokyo);
        let fmt = |d: chrono::Duration| (tokyo + d).format("%H:%M").to_string();
        let window = json!({"from": fmt(-chrono::Duration::hours(1)), "to": fmt(chrono::Duration::hours(2)), "timezone": "Asia/Tokyo"});
        assert_eq!(put(window.clone()).await.status(), 200);
        assert_eq!(n.json("/v1/notify/quiet-hours", &ada).await, window);
        n.ctx.publish(&friend_request(&bob, &ada)).await;
        n.items(&ada, 1).await;
        // The e-mail waits for the window's end (two hours from now, give or
        // take the minute); the security message goes now.
        n.ctx.publish(&PasswordChanged { user_id: ada.id, how: "change".into(), changed_at: Utc::now() }).await;
        n.eventually("the security e-mail is sent", || async { n.deliveries(&ada, "sent").await == 1 }).await;
        n.eventually("the e-mail is held", || async {
            let next: Option<chrono::DateTime<Utc>> = with_db!(&n.db, pool => sqlx::query_scalar(
                "SELECT next_at FROM deliveries WHERE user_id = $1 AND kind = 'friend_request' AND channel = 'email'
                 AND status = 'pending'").bind(ada.id).fetch_optional(pool).await).unwrap();
            next.is_some_and(|t| t > Utc::now() + chrono::Duration::minutes(100))
        }).await;
        // Removed, the held e-mail keeps its time; bad windows are refused.
        assert_eq!(n.call(reqwest::Method::DELETE, "/v1/notify/quiet-hours", &ada.token, None).await.status(), 204);
        assert_problem(n.call(reqwest::Method::DELETE, "/v1/notify/quiet-hours", &ada.token, None).await, 404, None).await;
        assert_problem(n.call(reqwest::Method::GET, "/v1/notify/quiet-hours", &ada.token, None).await, 404, None).await;
        for bad in [
            json!({"from": "22:00", "to": "07:00", "timezone": "Mars/Olympus"}),
            json!({"from": "25:00", "to": "07:00"}),
            json!({"from": "22:00", "to": "7am"}),
            json!({"from": "22:00", "to": "22:00"}),
        ] {
            assert_problem(put(bad).await, 422, None).await;
        }
    }

    async fn one_click_unsubscribe_turns_off_that_kinds_e_mail_and_only_for_its_link(db) {
        let Some(smtpd) = Smtpd::start() else { return };
        let n = Notify::start(&db, Some(&smtpd)).await;
        let ada = n.person("Ada", None).await;
        let bob = n.person("Bob", None).await;
        n.ctx.publish(&friend_request(&bob, &ada)).await;
        n.ctx.publish(&PasswordChanged { user_id: ada.id, how: "change".into(), changed_at: Utc::now() }).await;
        n.eventually("both e-mails arrive", || async { smtpd.delivered().len() == 2 }).await;
        // Headers unfolded (a long one may continue on the next line).
        let mails: Vec<String> = smtpd.delivered().into_iter().map(|m| m.replace("\r\n ", " ").replace("\n ", " ")).collect();
        let security = mails.iter().find(|m| m.contains("password was changed")).unwrap();
        assert!(!security.contains("List-Unsubscribe"), "no way out of security mail: {security}");
        let mail = mails.iter().find(|m| m.contains("wants to be your friend")).unwrap();
        assert!(mail.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"), "{mail}");
        let url = mail
            .lines()
            .find_map(|l| l.strip_prefix("List-Unsubscribe: <"))
            .and_then(|l| l.trim().strip_suffix('>'))
            .unwrap()
            .to_owned();
        let path = url.strip_prefix("https://panal.example").expect("under the public URL");
        let post = |path: String| {
            n.http
                .post(n.server.url(&path))
                .header("content-type", "application/x-www-form-urlencoded")
                .body("List-Unsubscribe=One-Click")
                .send()
        };
        // A GET (a link scanner) changes nothing.
        n.http.get(n.server.url(path)).send().await.unwrap();
        let enabled = |prefs: Value| {
            prefs.as_array().unwrap().iter().find(|p| p["kind"] == "friend_request" && p["channel"] == "email").unwrap()["enabled"].clone()
        };
        assert_eq!(enabled(n.json("/v1/notify/preferences", &ada).await), true);
        // An altered link (Bob's id in Ada's): refused.
        let forged = path.replace(&ada.id.simple().to_string(), &bob.id.simple().to_string());
        assert_problem(post(forged).await.unwrap(), 403, None).await;
        assert_problem(post("/v1/notify/unsubscribe?token=nonsense".into()).await.unwrap(), 403, None).await;
        // The link, without signing in: Ada's friend-request e-mail is off.
        let r = post(path.to_owned()).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(enabled(n.json("/v1/notify/preferences", &ada).await), false);
        assert_eq!(enabled(n.json("/v1/notify/preferences", &bob).await), true);
    }

    async fn friend_requests_in_a_window_go_as_one_digest_e_mail(db) {
        let Some(smtpd) = Smtpd::start() else { return };
        let n = Notify::start_with(&db, Some(&smtpd), 2).await;
        let ada = n.person("Ada", None).await;
        let mut others = Vec::new();
        for name in ["Bob", "Cy", "Di"] {
            let p = n.person(name, None).await;
            n.ctx.publish(&friend_request(&p, &ada)).await;
            others.push(p);
        }
        // The inbox at once, one item each.
        n.items(&ada, 3).await;
        // The e-mail: one, after the window, listing all three.
        n.eventually("the digest is sent", || async { n.deliveries(&ada, "sent").await == 3 }).await;
        n.eventually("it arrives", || async { !smtpd.delivered().is_empty() }).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mails = smtpd.delivered();
        assert_eq!(mails.len(), 1, "one e-mail for three requests");
        assert!(mails[0].contains("Subject: 3 new friend requests on Panal"), "{}", mails[0]);
        for name in ["- Bob", "- Cy", "- Di"] {
            assert!(mails[0].contains(name), "{name} in {}", mails[0]);
        }
        // A security message is never digested: it goes at once.
        n.ctx.publish(&PasswordChanged { user_id: ada.id, how: "change".into(), changed_at: Utc::now() }).await;
        n.eventually("the security e-mail is sent", || async { n.deliveries(&ada, "sent").await == 4 }).await;
        let _ = others;
    }

    async fn the_email_channel_keeps_to_its_rate(db) {
        let n = Notify::start_config(&db, None, "digest_secs = 0\nemail_per_second = 2\nemail_burst = 1\n").await;
        let people = [n.person("Ada", None).await, n.person("Bob", None).await, n.person("Cy", None).await];
        for p in &people {
            n.ctx.publish(&PasswordChanged { user_id: p.id, how: "change".into(), changed_at: Utc::now() }).await;
        }
        // Over the rate, an e-mail waits its turn: seen held while another
        // has gone.
        n.eventually("one is sent while another waits", || async {
            let (sent, waiting): (i64, i64) = with_db!(&n.db, pool => sqlx::query_as(
                "SELECT count(*) FILTER (WHERE status = 'sent'),
                        count(*) FILTER (WHERE status = 'pending' AND next_at > $1)
                 FROM deliveries WHERE channel = 'email'").bind(Utc::now()).fetch_one(pool).await).unwrap();
            sent >= 1 && waiting >= 1
        }).await;
        n.eventually("all are sent", || async {
            let sent: i64 = with_db!(&n.db, pool => sqlx::query_scalar(
                "SELECT count(*) FROM deliveries WHERE channel = 'email' AND status = 'sent' AND attempts = 1")
                .fetch_one(pool).await).unwrap();
            sent == 3
        }).await;
    }

    async fn kinds_and_template_previews(db) {
        let n = Notify::start(&db, None).await;
        let ada = n.person("Ada", None).await;
        let kinds = n.json("/v1/notify/kinds", &ada).await;
        assert_eq!(kinds.as_array().unwrap().len(), 10);
        let admin_token = n.issuer.token(Uuid::now_v7(), &["admin"]);
        let code = n.call(reqwest::Method::GET, "/v1/notify/admin/templates/phone_code/es", &admin_token, None).await;
        let code: Value = code.json().await.unwrap();
        assert_eq!((code["sms"].as_str().map(|s| s.starts_with("Tu código")), &code["subject"]), (Some(true), &Value::Null));
        let admin = Person { id: Uuid::now_v7(), token: n.issuer.token(Uuid::now_v7(), &["admin"]) };
        let preview = n.json("/v1/notify/admin/templates/friend_request/es", &admin).await;
        assert_eq!(preview["subject"], "Bob quiere ser tu amigo en Panal");
        assert!(preview["html"].as_str().unwrap().starts_with("<p>Hola, Ada:</p>"));
        let r = n.call(reqwest::Method::GET, "/v1/notify/admin/templates/friend_request/es", &ada.token, None).await;
        assert_problem(r, 403, None).await;
        for bad in ["/v1/notify/admin/templates/nonsense/en", "/v1/notify/admin/templates/friend_request/fr"] {
            assert_problem(n.call(reqwest::Method::GET, bad, &admin.token, None).await, 404, None).await;
        }
    }

    async fn web_push_subscriptions_are_checked_kept_per_browser_and_dropped_when_gone(db) {
        let n = Notify::start(&db, None).await;
        let ada = n.person("Ada", None).await;
        let bob = n.person("Bob", None).await;
        let push = PushService::start().await;
        let key = n.json("/v1/notify/push/key", &ada).await;
        assert_eq!(URL_SAFE_NO_PAD.decode(key["public_key"].as_str().unwrap()).unwrap().len(), 65);
        let subscribe = |who: &Person, body: Value| {
            let token = who.token.clone();
            let n = &n;
            async move { n.call(reqwest::Method::POST, "/v1/notify/push/subscriptions", &token, Some(body)).await }
        };
        let laptop = subscribe(&ada, push.browser("laptop")).await.json::<Value>().await.unwrap();
        assert_eq!(subscribe(&ada, push.browser("phone")).await.status(), 201);
        let gone = push.browser("old-tablet");
        assert_eq!(subscribe(&ada, gone).await.status(), 201);
        push.answer("old-tablet", 410);
        // Bad keys: refused, each naming its field.
        let mut bad = push.browser("x");
        bad["keys"]["auth"] = json!("AAAA");
        assert_field(subscribe(&ada, bad).await, "keys.auth").await;
        let mut bad = push.browser("x");
        bad["keys"]["p256dh"] = json!(URL_SAFE_NO_PAD.encode([4u8; 65]));
        assert_field(subscribe(&ada, bad).await, "keys.p256dh").await;
        let mut bad = push.browser("x");
        bad["endpoint"] = json!("not a url");
        assert_field(subscribe(&ada, bad).await, "endpoint").await;
        // Another person cannot remove Ada's browser.
        let path = format!("/v1/notify/push/subscriptions/{}", laptop["id"].as_str().unwrap());
        assert_problem(n.call(reqwest::Method::DELETE, &path, &bob.token, None).await, 404, None).await;
        assert_eq!(n.json("/v1/notify/push/subscriptions", &ada).await.as_array().unwrap().len(), 3);

        // A security message: to every browser, urgent; the gone one removed.
        n.ctx.publish(&PasswordChanged { user_id: ada.id, how: "change".into(), changed_at: Utc::now() }).await;
        n.eventually("both browsers have it", || async { push.received().len() == 2 }).await;
        let received = push.received();
        assert!(received.iter().all(|r| r.urgency.as_deref() == Some("high")), "{received:?}");
        let mut browsers: Vec<&str> = received.iter().map(|r| r.browser.as_str()).collect();
        browsers.sort_unstable();
        assert_eq!(browsers, ["laptop", "phone"]);
        n.eventually("the gone browser is removed", || async {
            n.json("/v1/notify/push/subscriptions", &ada).await.as_array().unwrap().len() == 2
        }).await;
        // Ada removes her laptop; push off for friend requests: nothing more.
        assert_eq!(n.call(reqwest::Method::DELETE, &path, &ada.token, None).await.status(), 204);
        assert_problem(n.call(reqwest::Method::DELETE, &path, &ada.token, None).await, 404, None).await;
        n.call(reqwest::Method::PUT, "/v1/notify/preferences", &ada.token,
            Some(json!({"kind": "friend_request", "channel": "push", "enabled": false}))).await;
        n.ctx.publish(&friend_request(&bob, &ada)).await;
        n.items(&ada, 2).await;
        let export = n.json("/v1/notify/me/export", &ada).await;
        assert_eq!(export["push_subscriptions"].as_array().unwrap().len(), 1);
        // Erased: the subscriptions go.
        n.ctx.publish(&UserErased { user_id: ada.id, erased_at: Utc::now() }).await;
        n.eventually("the subscriptions are deleted", || async {
            n.json("/v1/notify/push/subscriptions", &ada).await.as_array().unwrap().is_empty()
        }).await;
        assert_eq!(push.received().len(), 2, "nothing after the preference was turned off");
    }

    async fn a_push_every_browser_refuses_fails_into_the_dead_letters_and_an_admin_retries_it(db) {
        let n = Notify::start(&db, None).await;
        let ada = n.person("Ada", None).await;
        let push = PushService::start().await;
        let r = n.call(reqwest::Method::POST, "/v1/notify/push/subscriptions", &ada.token, Some(push.browser("phone"))).await;
        assert_eq!(r.status(), 201);
        push.answer("phone", 400);
        n.ctx.publish(&PasswordChanged { user_id: ada.id, how: "change".into(), changed_at: Utc::now() }).await;
        n.eventually("the push fails", || async { n.deliveries(&ada, "failed").await == 1 }).await;
        let letters = kit::bus::store::dead_letters(&n.db).await.unwrap();
        assert_eq!(letters.len(), 1, "{letters:?}");
        assert_eq!((letters[0].consumer.as_str(), letters[0].event_type.as_str()), ("notify.sender", "notify.delivery.push"));
        assert!(letters[0].error.contains("400"), "{}", letters[0].error);
        // Fixed; an administrator sends it again.
        push.answer("phone", 201);
        let delivery = letters[0].event_id.clone().unwrap();
        let path = format!("/v1/notify/admin/deliveries/{delivery}/retry");
        assert_problem(n.call(reqwest::Method::POST, &path, &ada.token, None).await, 403, None).await;
        let admin = n.issuer.token(Uuid::now_v7(), &["admin"]);
        assert_eq!(n.call(reqwest::Method::POST, &path, &admin, None).await.status(), 204);
        assert!(kit::bus::store::dead_letters(&n.db).await.unwrap().is_empty());
        // (The browser refused once, so this delivery counts it done:
        // a refusal is final for that browser; the retry finds none left.)
        n.eventually("the retry is settled", || async { n.deliveries(&ada, "pending").await == 0 }).await;
        assert_problem(n.call(reqwest::Method::POST, &path, &admin, None).await, 404, None).await;
    }

    async fn push_endpoints_on_private_addresses_are_refused_unless_configured(db) {
        let n = Notify::start_config(&db, None, "digest_secs = 0\n").await;
        let ada = n.person("Ada", None).await;
        let push = PushService::start().await;
        let local = push.browser("phone");
        let r = n.call(reqwest::Method::POST, "/v1/notify/push/subscriptions", &ada.token, Some(local.clone())).await;
        assert_field(r, "endpoint").await;
        for endpoint in ["https://10.0.0.1/push", "https://169.254.169.254/latest/meta-data", "https://localhost/x"] {
            let mut body = local.clone();
            body["endpoint"] = json!(endpoint);
            let r = n.call(reqwest::Method::POST, "/v1/notify/push/subscriptions", &ada.token, Some(body)).await;
            assert_field(r, "endpoint").await;
        }
    }

    async fn auths_mail_is_taken_only_from_auth_sent_once_and_its_link_wiped(db) {
        let smtpd = Smtpd::start();
        let n = Notify::start(&db, smtpd.as_ref()).await;
        let ada = n.person("Ada", Some("es")).await;
        let service = |scope: Option<&str>| {
            let mut claims = n.issuer.claims(Uuid::nil(), &[]);
            (claims.sid, claims.client_id, claims.scope) = (None, Some("auth".into()), scope.map(str::to_owned));
            n.issuer.sign(&claims)
        };
        let auth = service(Some("notify:security_mail"));
        let id = Uuid::now_v7();
        let path = format!("/v1/notify/security-mail/{id}");
        let link = "https://panal.example/reset-password#token=s3cr3t-t0ken";
        let mail = json!({"kind": "password_reset", "user_id": ada.id, "to": "ada@example.com", "link": link, "valid_for_minutes": 30});
        // Only a service client with the scope: not a person, not another client.
        assert_problem(n.call(reqwest::Method::PUT, &path, &ada.token, Some(mail.clone())).await, 403, None).await;
        assert_problem(n.call(reqwest::Method::PUT, &path, &service(Some("realtime:publish")), Some(mail.clone())).await, 403, None).await;
        for (field, value) in [("kind", json!("friend_request")), ("to", json!("not an address")), ("link", json!("/relative"))] {
            let mut bad = mail.clone();
            bad[field] = value;
            assert_field(n.call(reqwest::Method::PUT, &path, &auth, Some(bad)).await, field).await;
        }
        let r = n.call(reqwest::Method::PUT, &path, &auth, Some(mail.clone())).await;
        assert_eq!(r.status(), 202);
        assert_eq!(r.json::<Value>().await.unwrap()["new"], true);
        n.eventually("the mail is sent", || async { n.deliveries(&ada, "sent").await == 1 }).await;
        // The same id again (auth retrying): nothing more.
        let r = n.call(reqwest::Method::PUT, &path, &auth, Some(mail)).await;
        assert_eq!(r.json::<Value>().await.unwrap()["new"], false);
        // Sent: the link is gone from notify's database.
        let vars: String = with_db!(&n.db, pool => sqlx::query_scalar(
            "SELECT vars FROM deliveries WHERE id = $1").bind(id).fetch_one(pool).await).unwrap();
        assert_eq!(vars, "{}");
        // Not in the inbox, never pushed.
        assert!(n.inbox(&ada).await["items"].as_array().unwrap().is_empty());
        if let Some(smtpd) = &smtpd {
            n.eventually("it arrives", || async { !smtpd.delivered().is_empty() }).await;
            let delivered = smtpd.delivered();
            assert_eq!(delivered.len(), 1);
            let body = delivered[0].replace("=\r\n", "").replace("=\n", "").replace("=3D", "=");
            assert!(body.contains("Subject: Restablece tu "), "in Ada's language: {body}");
            assert!(body.contains(link), "{body}");
            assert!(body.contains("30 minutos"), "{body}");
            assert!(!body.contains("List-Unsubscribe"), "no way out of security mail: {body}");
        }
    }

    async fn the_providers_signed_reports_move_deliveries_forward_and_stop_mail_to_bad_addresses(db) {
        use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let provider = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        // The key as SendGrid shows it: base64 DER SubjectPublicKeyInfo.
        let spki = [hex_prefix(), provider.public_key().as_ref().to_vec()].concat();
        let key = base64::engine::general_purpose::STANDARD.encode(spki);
        let n = Notify::start_config(&db, None, &format!("digest_secs = 0\nemail_webhook_key = \"{key}\"\n")).await;
        let ada = n.person("Ada", None).await;
        let bob = n.person("Bob", None).await;
        let cy = n.person("Cy", None).await;
        n.ctx.publish(&friend_request(&bob, &ada)).await;
        n.ctx.publish(&friend_request(&ada, &cy)).await;
        n.eventually("both e-mails are sent", || async {
            n.deliveries(&ada, "sent").await == 1 && n.deliveries(&cy, "sent").await == 1
        }).await;
        let db = &n.db;
        let email_of = |who: Uuid| async move {
            with_db!(db, pool => sqlx::query_scalar::<_, Uuid>(
                "SELECT id FROM deliveries WHERE user_id = $1 AND channel = 'email'").bind(who).fetch_one(pool).await).unwrap()
        };
        let (to_ada, to_cy) = (email_of(ada.id).await, email_of(cy.id).await);
        let post = |body: Value, at: i64, sign_with: Option<&EcdsaKeyPair>| {
            let body = body.to_string();
            let timestamp = at.to_string();
            let signer = sign_with.unwrap_or(&provider);
            let signature = signer.sign(&rng, &[timestamp.as_bytes(), body.as_bytes()].concat()).unwrap();
            let signature = base64::engine::general_purpose::STANDARD.encode(signature.as_ref());
            n.http.post(n.server.url("/v1/notify/webhooks/email"))
                .header("X-Twilio-Email-Event-Webhook-Signature", signature)
                .header("X-Twilio-Email-Event-Webhook-Timestamp", timestamp)
                .body(body)
                .send()
        };
        let now = Utc::now().timestamp();
        let report = json!([
            {"email": "ada@example.com", "event": "delivered", "smtp-id": format!("<{to_ada}@panal>")},
            {"email": "ada@example.com", "event": "bounce", "type": "bounce", "smtp-id": format!("<{to_ada}@panal>"),
             "reason": "550 5.1.1 no such user", "sg_event_id": "ignored"},
            {"email": "cy@example.com", "event": "spamreport", "smtp-id": format!("<{to_cy}@panal>")},
            {"email": "cy@example.com", "event": "open"},
        ]);
        // Refused: another key's signature, an old call, no signature, not an array.
        let other = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING,
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap().as_ref(), &rng).unwrap();
        assert_problem(post(report.clone(), now, Some(&other)).await.unwrap(), 403, None).await;
        assert_problem(post(report.clone(), now - 3600, None).await.unwrap(), 403, None).await;
        let r = n.http.post(n.server.url("/v1/notify/webhooks/email")).body(report.to_string()).send().await.unwrap();
        assert_problem(r, 403, None).await;
        assert_problem(post(json!({"event": "bounce"}), now, None).await.unwrap(), 400, None).await;
        assert_eq!(n.deliveries(&ada, "sent").await, 1, "nothing moved yet");
        // The genuine report: delivered then bounced; complained.
        let r = post(report.clone(), now, None).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.json::<Value>().await.unwrap()["recorded"], 3);
        assert_eq!(n.deliveries(&ada, "bounced").await, 1);
        assert_eq!(n.deliveries(&cy, "complained").await, 1);
        // A full report (1,000 events, over the default 64 KiB body limit)
        // is taken; a body over 1 MiB is not.
        let many: Vec<Value> = (0..1000)
            .map(|i| json!({"email": format!("someone{i}@example.com"), "event": "open", "smtp-id": format!("<{to_cy}@panal>"),
                "sg_event_id": format!("event-{i}-padding-padding-padding-padding-padding-padding"), "timestamp": now}))
            .collect();
        let many = json!(many);
        assert!(many.to_string().len() > 64 * 1024);
        assert_eq!(post(many, now, None).await.unwrap().status(), 200);
        // Refused before it is read: sent raw, as a client that writes on
        // while the answer comes would otherwise fail with a broken pipe.
        let huge = json!([{"email": "x@example.com", "event": "open", "reason": "x".repeat(1024 * 1024)}]).to_string();
        let head = format!(
            "POST /v1/notify/webhooks/email HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            huge.len()
        );
        let (status, answer) = kit::testing::raw_answer(n.server.addr, &head, huge.as_bytes()).await;
        assert_eq!(status, 413, "{answer}");
        assert!(answer.to_ascii_lowercase().contains("content-type: application/problem+json"), "{answer}");
        // Again (the provider retries): nothing moves back or twice.
        assert_eq!(post(report, now, None).await.unwrap().json::<Value>().await.unwrap()["recorded"], 0);
        // Ada's address bounced: no more e-mail, not even security mail.
        // Cy complained: security mail only.
        n.ctx.publish(&friend_request(&bob, &ada)).await;
        n.ctx.publish(&friend_request(&bob, &cy)).await;
        n.ctx.publish(&PasswordChanged { user_id: ada.id, how: "change".into(), changed_at: Utc::now() }).await;
        n.ctx.publish(&PasswordChanged { user_id: cy.id, how: "change".into(), changed_at: Utc::now() }).await;
        n.items(&ada, 3).await;
        n.items(&cy, 3).await;
        n.eventually("Cy's security mail is sent", || async { n.deliveries(&cy, "sent").await == 1 }).await;
        let emails = |who: Uuid| async move {
            with_db!(db, pool => sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM deliveries WHERE user_id = $1 AND channel = 'email'").bind(who).fetch_one(pool).await).unwrap()
        };
        assert_eq!(emails(ada.id).await, 1, "only the first, bounced");
        assert_eq!(emails(cy.id).await, 2, "the first, and the security mail");
        assert_eq!(n.json("/v1/notify/me/export", &ada).await["email_reported_by_provider"], "bounce");
    }

    async fn without_a_configured_key_the_webhook_is_not_there(db) {
        let n = Notify::start(&db, None).await;
        let r = n.http.post(n.server.url("/v1/notify/webhooks/email")).body("[]").send().await.unwrap();
        assert_problem(r, 404, None).await;
    }

    async fn a_phone_is_verified_by_code_and_then_gets_the_sms_its_owner_chose(db) {
        let sms = SmsProvider::start().await;
        let n = Notify::start_config(&db, None, &format!("digest_secs = 0\n{}", sms.config())).await;
        let ada = n.person("Ada", Some("es")).await;
        let bob = n.person("Bob", None).await;
        let put = |number: &str| {
            n.call(reqwest::Method::PUT, "/v1/notify/phone", &ada.token, Some(json!({"number": number})))
        };
        assert_field(put("600 123 456").await, "number").await;
        assert_problem(n.call(reqwest::Method::GET, "/v1/notify/phone", &ada.token, None).await, 404, None).await;
        let r = put("+34 600 123 456").await;
        assert_eq!(r.status(), 202);
        assert_eq!(r.json::<Value>().await.unwrap(), json!({"number": "+34600123456", "verified": false}));
        n.eventually("the code is sent", || async { sms.sent().len() == 1 }).await;
        let text = sms.sent()[0].body.clone();
        assert_eq!(sms.sent()[0].to, "+34600123456");
        assert!(text.starts_with("Tu código de Panal es "), "in Ada's language: {text}");
        assert_eq!(sms.sent()[0].callback, "https://panal.example/v1/notify/webhooks/sms");
        let code: String = text.chars().filter(char::is_ascii_digit).take(6).collect();
        // Not again within the minute.
        let r = put("+34 600 123 456").await;
        assert!(r.headers().contains_key("retry-after"));
        assert_problem(r, 429, None).await;
        // A wrong code, then the right one.
        let verify = |code: &str| {
            n.call(reqwest::Method::POST, "/v1/notify/phone/verify", &ada.token, Some(json!({"code": code})))
        };
        let wrong = if code == "000000" { "111111" } else { "000000" };
        assert_field(verify(wrong).await, "code").await;
        assert_problem(n.call(reqwest::Method::POST, "/v1/notify/phone/verify", &bob.token, Some(json!({"code": code}))).await, 404, None).await;
        assert_eq!(verify(&code).await.json::<Value>().await.unwrap()["verified"], true);
        assert_problem(verify(&code).await, 404, None).await;
        // The code is gone from notify's database once sent.
        let vars: Vec<String> = with_db!(&n.db, pool => sqlx::query_scalar(
            "SELECT vars FROM deliveries WHERE kind = 'phone_code'").fetch_all(pool).await).unwrap();
        assert_eq!(vars, ["{}"]);

        // A tournament call goes by SMS unasked; an invitation only when asked.
        let tournament = Uuid::now_v7();
        n.ctx.publish(&RoundStarted {
            tournament_id: tournament, round: 0, started_at: Utc::now(),
            pairings: vec![Pairing { index: 0, a: ada.id, b: Some(bob.id) }],
        }).await;
        let invitation = |id: Uuid| InvitationSent {
            invitation_id: id, from: bob.id, to: ada.id, bot: false,
            invited_at: Utc::now(), expires_at: Utc::now() + chrono::Duration::minutes(5),
        };
        n.ctx.publish(&invitation(Uuid::now_v7())).await;
        n.items(&ada, 2).await;
        n.eventually("the tournament call is sent", || async { sms.sent().len() == 2 }).await;
        assert_eq!(sms.sent()[1].body, format!("Panal: ronda 1 - juegas contra Bob ahora. https://panal.example/tournaments/{tournament}"));
        n.call(reqwest::Method::PUT, "/v1/notify/preferences", &ada.token,
            Some(json!({"kind": "game_invitation", "channel": "sms", "enabled": true}))).await;
        let second = Uuid::now_v7();
        n.ctx.publish(&invitation(second)).await;
        n.eventually("the invitation is sent", || async { sms.sent().len() == 3 }).await;
        assert!(sms.sent()[2].body.contains(&format!("/play/invitations/{second}")), "{:?}", sms.sent()[2]);

        // The provider's status callback, signed with the auth token.
        let callback = |sid: &str, status: &str, signature: Option<String>| {
            let params = vec![("MessageSid".to_owned(), sid.to_owned()), ("MessageStatus".to_owned(), status.to_owned()),
                ("AccountSid".to_owned(), sms_provider::ACCOUNT.to_owned())];
            let signature = signature.unwrap_or_else(|| notify::domain::twilio_signature(
                sms_provider::TOKEN, "https://panal.example/v1/notify/webhooks/sms", &params));
            let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&params).finish();
            n.http.post(n.server.url("/v1/notify/webhooks/sms"))
                .header("X-Twilio-Signature", signature)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(body).send()
        };
        let sid = sms.sent()[1].sid.clone();
        assert_problem(callback(&sid, "delivered", Some("AAAA".into())).await.unwrap(), 403, None).await;
        assert_eq!(callback(&sid, "delivered", None).await.unwrap().status(), 204);
        let status = |sid: String| {
            let db = n.db.clone();
            async move { with_db!(&db, pool => sqlx::query_scalar::<_, String>(
                "SELECT status FROM deliveries WHERE provider_id = $1").bind(sid).fetch_one(pool).await).unwrap() }
        };
        assert_eq!(status(sid.clone()).await, "delivered");
        // A late "sent" does not move it back.
        assert_eq!(callback(&sid, "sent", None).await.unwrap().status(), 204);
        assert_eq!(status(sid).await, "delivered");
        let undelivered = sms.sent()[2].sid.clone();
        callback(&undelivered, "undelivered", None).await.unwrap();
        assert_eq!(status(undelivered).await, "failed");
        // Removed: no more SMS; in the export until then.
        assert_eq!(n.json("/v1/notify/me/export", &ada).await["phone"]["number"], "+34600123456");
        assert_eq!(n.call(reqwest::Method::DELETE, "/v1/notify/phone", &ada.token, None).await.status(), 204);
        n.ctx.publish(&invitation(Uuid::now_v7())).await;
        n.items(&ada, 4).await;
        assert_eq!(sms.sent().len(), 3);
    }

    async fn a_number_the_provider_refuses_fails_and_without_a_provider_there_is_no_sms(db) {
        let sms = SmsProvider::start().await;
        let n = Notify::start_config(&db, None, &format!("digest_secs = 0\n{}", sms.config())).await;
        let ada = n.person("Ada", None).await;
        let r = n.call(reqwest::Method::PUT, "/v1/notify/phone", &ada.token, Some(json!({"number": sms_provider::INVALID}))).await;
        assert_eq!(r.status(), 202);
        n.eventually("the code fails", || async { n.deliveries(&ada, "failed").await == 1 }).await;
        let letters = kit::bus::store::dead_letters(&n.db).await.unwrap();
        assert!(letters[0].error.contains("21211"), "{}", letters[0].error);

        let plain = Notify::start(&db, None).await;
        let bob = plain.person("Bob", None).await;
        let r = plain.call(reqwest::Method::PUT, "/v1/notify/phone", &bob.token, Some(json!({"number": "+34600123456"}))).await;
        assert_problem(r, 409, None).await;
        let r = plain.http.post(plain.server.url("/v1/notify/webhooks/sms")).body("MessageSid=x").send().await.unwrap();
        assert_problem(r, 404, None).await;
    }

    async fn a_sign_in_from_a_new_device_is_told_and_others_are_not(db) {
        let n = Notify::start(&db, None).await;
        let ada = n.person("Ada", None).await;
        let signed_in = |new_device: bool, device: &str| UserLoggedIn {
            user_id: ada.id, session_id: Uuid::now_v7(), method: "password".into(), logged_in_at: Utc::now(),
            new_device, device: Some(device.into()),
        };
        n.ctx.publish(&signed_in(false, "Firefox on Linux")).await;
        n.ctx.publish(&signed_in(true, "Safari on iOS")).await;
        let inbox = n.items(&ada, 1).await;
        assert_eq!(inbox["items"][0]["title"], "New sign-in");
        assert_eq!(inbox["items"][0]["body"], "Your account was signed in to from Safari on iOS. Not you? Secure your account.");
        n.eventually("the e-mail is sent", || async { n.deliveries(&ada, "sent").await == 1 }).await;
        // A security message: its e-mail cannot be turned off.
        let r = n.call(reqwest::Method::PUT, "/v1/notify/preferences", &ada.token,
            Some(json!({"kind": "new_device", "channel": "email", "enabled": false}))).await;
        assert_field(r, "enabled").await;
        assert_eq!(n.inbox(&ada).await["items"].as_array().unwrap().len(), 1, "the known device told nothing");
    }

    async fn two_notify_processes_on_one_database_send_each_email_once(db) {
        let Some(smtpd) = Smtpd::start() else { return };
        let one = Notify::start(&db, Some(&smtpd)).await;
        let two = Notify::start(&db, Some(&smtpd)).await;
        let ada = one.person("Ada", None).await;
        let mut friends = Vec::new();
        for i in 0..30 {
            friends.push(one.person(&format!("Friend{i}"), None).await);
        }
        for f in &friends {
            one.ctx.publish(&friend_request(f, &ada)).await;
        }
        // Both senders race for the same rows.
        one.eventually("all 30 are sent", || async { one.deliveries(&ada, "sent").await == 30 }).await;
        two.eventually("the relay has them", || async { smtpd.delivered().len() >= 30 }).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(smtpd.delivered().len(), 30, "each e-mail once, though two processes send");
    }
}

/// The DER header of a P-256 SubjectPublicKeyInfo, before the point.
fn hex_prefix() -> Vec<u8> {
    (0..52)
        .step_by(2)
        .map(|i| u8::from_str_radix(&"3059301306072a8648ce3d020106082a8648ce3d030107034200"[i..i + 2], 16).unwrap())
        .collect()
}

/// The SMTP relay's URL (and the password in it) rotated in its file
/// (`PANAL_SMTP_URL_FILE`): the next e-mail goes through the new one, with no
/// restart.
#[tokio::test]
async fn a_smtp_url_rotated_in_its_file_is_used_for_the_next_mail() {
    let (Some(first), Some(second)) = (Smtpd::start(), Smtpd::start()) else { return };
    let dir = std::env::temp_dir().join(format!("panal-smtp-rotation-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("smtp-url");
    std::fs::write(&file, format!("{}\n", first.url())).unwrap();
    let url = kit::secret::LiveSecret::from_file("smtp_url", file.clone(), kit::Secret::new(first.url()));
    let relay = notify::sender::Relay::new(url).unwrap();
    let mail = |subject: &str| {
        lettre::Message::builder()
            .from("Panal <no-reply@panal.example>".parse().unwrap())
            .to("ada@example.com".parse().unwrap())
            .subject(subject)
            .body("hello".to_owned())
            .unwrap()
    };
    relay.send(mail("before")).await.unwrap();
    std::fs::write(&file, format!("{}\n", second.url())).unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    relay.send(mail("after")).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while second.delivered().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (one, two) = (first.delivered(), second.delivered());
    assert!(one.len() == 1 && one[0].contains("Subject: before"), "{one:?}");
    assert!(two.len() == 1 && two[0].contains("Subject: after"), "{two:?}");
    let _ = std::fs::remove_dir_all(dir);
}
