//! Tournaments over real HTTP, on SQLite and (with
//! `PANAL_TEST_POSTGRES_URL`) PostgreSQL: local tournaments run to their end
//! from the host's reports, online ones registered, seeded by stats'
//! ratings and drawn; bad input refused with the bracket untouched; export
//! and erasure. Tokens come from a test issuer; events are read off the
//! test bus.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use contracts::realtime::Publication;
use contracts::tournament::{RoundStarted, TournamentFinished, TournamentStarted};
use kit::config::HttpSettings;
use kit::db::Db;
use kit::testing::{TestContext, TestDb, TestIssuer, TestServer, assert_problem};
use serde_json::{Value, json};
use uuid::Uuid;

struct Platform {
    ctx: TestContext,
    issuer: TestIssuer,
    server: TestServer,
    db: Db,
    http: reqwest::Client,
    _db: TestDb,
}

struct User {
    id: Uuid,
    token: String,
}

impl Platform {
    async fn start(db: TestDb) -> Self {
        // The scheduler asks game for online matches in the service's own
        // name; no game runs here (the whole path runs through `panal up` in
        // crates/panal/tests/cli/tournament.rs).
        let clients = "[clients.tournament]\nid = \"tournament-test\"\nsecret = \"unused\"\n";
        let config = kit::config::Config::from_toml(&format!("[bus]\nbackoff_base_ms = 20\n{clients}")).unwrap();
        let ctx = TestContext::new(config).await;
        let issuer = TestIssuer::start(&ctx.config).await;
        let ctx = ctx.with_issuer(&issuer);
        let pool = Db::connect(&db.url, &ctx.config.settings.db).await.unwrap();
        let server = kit::testing::server::<tournament::TournamentService>(&ctx, Some(pool.clone())).await;
        let server = TestServer::spawn(server, HttpSettings::default()).await;
        Self { ctx, issuer, server, db: pool, http: reqwest::Client::new(), _db: db }
    }

    fn user(&self) -> User {
        let id = Uuid::now_v7();
        User { id, token: self.issuer.token(id, &[]) }
    }

    async fn call(&self, method: reqwest::Method, path: &str, user: &User, body: Option<Value>) -> reqwest::Response {
        let mut r = self.http.request(method, self.server.url(path)).bearer_auth(&user.token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        r.send().await.unwrap()
    }

    async fn post(&self, path: &str, user: &User, body: Value) -> reqwest::Response {
        self.call(reqwest::Method::POST, path, user, Some(body)).await
    }

    async fn json(&self, r: reqwest::Response, status: u16) -> Value {
        let got = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert_eq!(got, status, "{text}");
        if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() }
    }

    async fn create(&self, host: &User, body: Value) -> Uuid {
        let t = self.json(self.post("/v1/tournament/tournaments", host, body).await, 201).await;
        t["id"].as_str().unwrap().parse().unwrap()
    }

    async fn get(&self, id: Uuid, user: &User) -> Value {
        self.json(self.call(reqwest::Method::GET, &format!("/v1/tournament/tournaments/{id}"), user, None).await, 200)
            .await
    }
}

/// The matches of a tournament view still to be played (both players known).
fn open(t: &Value) -> Vec<(u64, u64, String, String)> {
    t["matches"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["winner"].is_null() && !m["b"].is_null())
        .map(|m| {
            (
                m["round"].as_u64().unwrap(),
                m["index"].as_u64().unwrap(),
                m["a"].as_str().unwrap().to_owned(),
                m["b"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn alias_of(t: &Value, entrant: &str) -> String {
    t["entrants"].as_array().unwrap().iter().find(|e| e["entrant_id"] == entrant).unwrap()["alias"]
        .as_str()
        .unwrap()
        .to_owned()
}

kit::backend_tests! {
    async fn a_local_tournament_runs_to_its_end_from_the_hosts_reports(db) {
        let p = Platform::start(db).await;
        let (host, eve) = (p.user(), p.user());
        let mut started = p.ctx.watch::<TournamentStarted>().await;
        let mut rounds = p.ctx.watch::<RoundStarted>().await;
        let mut finished = p.ctx.watch::<TournamentFinished>().await;
        let id = p.create(&host, json!({"name": "Kitchen cup", "format": "single_elimination", "kind": "local", "capacity": 8})).await;
        let entrants = format!("/v1/tournament/tournaments/{id}/entrants");
        for alias in ["Ada", "Bob", "Cy", "Dee", "Eve"] {
            p.json(p.post(&entrants, &host, json!({"alias": alias})).await, 201).await;
        }
        // Only the host enters people; aliases are unique, whatever the case.
        assert_problem(p.post(&entrants, &eve, json!({"alias": "Mallory"})).await, 403, None).await;
        assert_problem(p.post(&entrants, &host, json!({"alias": "ADA"})).await, 409, None).await;
        assert_problem(p.post(&entrants, &host, json!({"alias": ""})).await, 422, None).await;
        assert_problem(p.post(&format!("/v1/tournament/tournaments/{id}/start"), &eve, json!({})).await, 403, None).await;

        let t = p.json(p.post(&format!("/v1/tournament/tournaments/{id}/start"), &host, json!({})).await, 200).await;
        assert_eq!((t["status"].as_str(), t["rounds"].as_u64()), (Some("running"), Some(3)));
        // Five entrants, eight lines: the top three seeds have byes; 4 v 5
        // plays, and so do seeds 2 and 3 (both through by byes) in round 1.
        let byes = t["matches"].as_array().unwrap().iter().filter(|m| m["b"].is_null()).count();
        assert_eq!(byes, 3);
        assert_eq!(open(&t).iter().map(|m| (m.0, m.1)).collect::<Vec<_>>(), vec![(0, 1), (1, 1)]);
        let (_, s) = started.next().await;
        assert_eq!((s.tournament_id, s.entrants.len(), s.rounds, s.kind.as_str()), (id, 5, 3, "local"));
        let (_, r) = rounds.next().await;
        assert_eq!((r.round, r.pairings.len()), (0, 4));
        // Started: nobody else enters.
        assert_problem(p.post(&entrants, &host, json!({"alias": "Late"})).await, 409, None).await;
        assert_problem(p.post(&format!("/v1/tournament/tournaments/{id}/start"), &host, json!({})).await, 409, None).await;

        // Bad reports change nothing.
        let results = format!("/v1/tournament/tournaments/{id}/results");
        let (round, index, a, b) = open(&t)[0].clone();
        assert_problem(p.post(&results, &host, json!({"round": round, "index": index, "winner": Uuid::now_v7()})).await, 422, None).await;
        assert_problem(p.post(&results, &host, json!({"round": 9, "index": 0, "winner": a})).await, 404, None).await;
        assert_problem(p.post(&results, &host, json!({"round": 2, "index": 0, "winner": a})).await, 404, None).await;
        assert_problem(p.post(&results, &eve, json!({"round": round, "index": index, "winner": a})).await, 403, None).await;
        assert_problem(p.post(&results, &host, json!({"round": round, "index": index})).await, 422, None).await;
        assert_eq!(p.get(id, &host).await["matches"], t["matches"], "the bracket is untouched");

        // The first-named player wins every match.
        p.json(p.post(&results, &host, json!({"round": round, "index": index, "winner": a})).await, 200).await;
        assert_problem(p.post(&results, &host, json!({"round": round, "index": index, "winner": b})).await, 409, None).await;
        let mut played = 1;
        loop {
            let t = p.get(id, &host).await;
            let Some((round, index, a, _)) = open(&t).first().cloned() else { break };
            p.json(p.post(&results, &host, json!({"round": round, "index": index, "winner": a})).await, 200).await;
            played += 1;
        }
        assert_eq!(played, 4, "five entrants play four matches");
        let t = p.get(id, &host).await;
        assert_eq!(t["status"], "finished");
        let (_, f) = finished.next().await;
        assert_eq!(f.tournament_id, id);
        assert_eq!(f.standings.len(), 5);
        assert_eq!(f.standings[0].place, 1);
        assert_eq!(t["standings"][0]["alias"], f.standings[0].alias.as_str());
        assert_eq!(alias_of(&t, &f.standings[0].entrant_id.to_string()), f.standings[0].alias);
        assert_eq!(f.standings.iter().filter(|s| s.place == 3).count(), 2);
        let listed = p.json(p.call(reqwest::Method::GET, "/v1/tournament/tournaments?status=finished", &eve, None).await, 200).await;
        assert!(listed["items"].as_array().unwrap().iter().any(|t| t["id"] == id.to_string()));
    }

    async fn an_online_tournament_registers_players_seeds_them_by_rating_and_calls_them_to_their_matches(db) {
        let p = Platform::start(db).await;
        let host = p.user();
        let players: Vec<User> = (0..4).map(|_| p.user()).collect();
        // Stats rated the last player highest.
        p.ctx.publish(&contracts::stats::RatingChanged {
            user_id: players[3].id, mode: "duel".to_owned(), rating: 1900.0, deviation: 100.0, rated_matches: 5,
            match_id: None, changed_at: chrono::Utc::now(),
        }).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while kit::with_db!(&p.db, pool => sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM ratings").fetch_one(pool).await).unwrap() == 0 {
            assert!(Instant::now() < deadline, "the rating reaches the tournament service");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let id = p.create(&host, json!({"name": "Swiss night", "format": "swiss", "kind": "online", "capacity": 4})).await;
        let entrants = format!("/v1/tournament/tournaments/{id}/entrants");
        for (n, player) in players.iter().enumerate() {
            let e = p.json(p.post(&entrants, player, json!({"alias": format!("Player {n}")})).await, 201).await;
            assert_eq!(e["entrant_id"], player.id.to_string());
        }
        assert_problem(p.post(&entrants, &players[0], json!({"alias": "Again"})).await, 409, None).await;
        assert_problem(p.post(&entrants, &host, json!({"alias": "Host"})).await, 409, None).await;
        // Withdrawing: one's own entry only.
        let mine = format!("/v1/tournament/tournaments/{id}/entrants/{}", players[0].id);
        assert_problem(p.call(reqwest::Method::DELETE, &mine, &players[1], None).await, 403, None).await;
        assert_eq!(p.call(reqwest::Method::DELETE, &mine, &players[0], None).await.status(), 204);
        p.json(p.post(&entrants, &players[0], json!({"alias": "Player 0"})).await, 201).await;

        let mut published = p.ctx.watch::<Publication>().await;
        let t = p.json(p.post(&format!("/v1/tournament/tournaments/{id}/start"), &host, json!({})).await, 200).await;
        assert_eq!(t["rounds"], 2, "⌈log2 4⌉ Swiss rounds");
        assert_eq!(t["entrants"][0]["entrant_id"], players[3].id.to_string(), "the best-rated is seed 1");
        assert_eq!(t["entrants"][0]["seed"], 1);
        assert_eq!(open(&t).len(), 2);
        // Each player is called to their match, against whom.
        let mut called = std::collections::HashSet::new();
        while called.len() < 4 {
            let (_, publication) = published.next().await;
            if publication.data["type"] == "tournament_match" {
                assert!(publication.data["opponent"]["alias"].as_str().unwrap().starts_with("Player"));
                called.insert(publication.channel);
            }
        }
        for player in &players {
            assert!(called.contains(&format!("user:{}", player.id)));
        }
        // Online results come from the matches, not from reports.
        let (round, index, a, _) = open(&t)[0].clone();
        assert_problem(p.post(&format!("/v1/tournament/tournaments/{id}/results"), &host, json!({"round": round, "index": index, "winner": a})).await, 409, None).await;
        // Anyone signed in may watch it live.
        let grant = format!("/v1/tournament/realtime/channels/tournament:{id}");
        assert_eq!(p.call(reqwest::Method::GET, &grant, &players[0], None).await.status(), 204);
        let missing = format!("/v1/tournament/realtime/channels/tournament:{}", Uuid::now_v7());
        assert_eq!(p.call(reqwest::Method::GET, &missing, &players[0], None).await.status(), 404);
    }

    async fn an_online_matchs_result_comes_from_games_match_finished(db) {
        let p = Platform::start(db).await;
        let host = p.user();
        let (ada, bob) = (p.user(), p.user());
        let mut finished = p.ctx.watch::<TournamentFinished>().await;
        let id = p.create(&host, json!({"name": "Duel", "format": "single_elimination", "kind": "online"})).await;
        for (user, alias) in [(&ada, "Ada"), (&bob, "Bob")] {
            p.json(p.post(&format!("/v1/tournament/tournaments/{id}/entrants"), user, json!({"alias": alias})).await, 201).await;
        }
        p.json(p.post(&format!("/v1/tournament/tournaments/{id}/start"), &host, json!({})).await, 200).await;
        // What the scheduler records once game made the match.
        let match_id = Uuid::now_v7();
        tournament::store::Store::new(p.db.clone()).scheduled(id, 0, 0, match_id).await.unwrap();
        let result = |origin: &str, match_id: Uuid| contracts::game::MatchFinished {
            match_id, mode: "duel".to_owned(), origin: origin.to_owned(), winner: bob.id, players: Vec::new(),
            forfeit: true, duration_ms: 1000, started_at: chrono::Utc::now(), finished_at: chrono::Utc::now(),
        };
        // Someone else's match is not the tournament's business.
        p.ctx.publish(&result("queue", Uuid::now_v7())).await;
        p.ctx.publish(&result("tournament", match_id)).await;
        let (_, f) = finished.next().await;
        assert_eq!(f.tournament_id, id);
        assert_eq!((f.standings[0].entrant_id, f.standings[0].alias.as_str()), (bob.id, "Bob"));
        // The same result again (a redelivery) changes nothing.
        p.ctx.publish(&result("tournament", match_id)).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let t = p.get(id, &host).await;
        assert_eq!(t["status"], "finished");
        assert_eq!(t["matches"][0]["winner"], bob.id.to_string());
    }

    async fn bad_tournaments_are_refused(db) {
        let p = Platform::start(db).await;
        let host = p.user();
        for bad in [
            json!({"name": "", "format": "swiss", "kind": "local"}),
            json!({"name": "x".repeat(65), "format": "swiss", "kind": "local"}),
            json!({"name": "Cup", "format": "round_robin", "kind": "local"}),
            json!({"name": "Cup", "format": "swiss", "kind": "remote"}),
            json!({"name": "Cup", "format": "swiss", "kind": "local", "capacity": 1}),
            json!({"name": "Cup", "format": "swiss", "kind": "local", "capacity": 65}),
            json!({"name": "Cup", "format": "swiss", "kind": "local", "seeding": "alphabetical"}),
            json!({"name": "Cup", "format": "swiss", "kind": "local", "prize": 100}),
        ] {
            assert_problem(p.post("/v1/tournament/tournaments", &host, bad).await, 422, None).await;
        }
        // Full; too few to start; unknown.
        let id = p.create(&host, json!({"name": "Tiny", "format": "single_elimination", "kind": "local", "capacity": 2})).await;
        let entrants = format!("/v1/tournament/tournaments/{id}/entrants");
        p.json(p.post(&entrants, &host, json!({"alias": "Ada"})).await, 201).await;
        assert_problem(p.post(&format!("/v1/tournament/tournaments/{id}/start"), &host, json!({})).await, 409, None).await;
        p.json(p.post(&entrants, &host, json!({"alias": "Bob"})).await, 201).await;
        assert_problem(p.post(&entrants, &host, json!({"alias": "Cy"})).await, 409, None).await;
        let unknown = Uuid::now_v7();
        assert_problem(p.call(reqwest::Method::GET, &format!("/v1/tournament/tournaments/{unknown}"), &host, None).await, 404, None).await;
        assert_problem(p.post(&format!("/v1/tournament/tournaments/{unknown}/start"), &host, json!({})).await, 404, None).await;
    }

    async fn a_players_entries_are_exported_and_erasure_removes_their_name(db) {
        let p = Platform::start(db).await;
        let (host, ada) = (p.user(), p.user());
        let id = p.create(&host, json!({"name": "Open", "format": "swiss", "kind": "online"})).await;
        p.json(p.post(&format!("/v1/tournament/tournaments/{id}/entrants"), &ada, json!({"alias": "Ada Lovelace"})).await, 201).await;
        let export = p.json(p.call(reqwest::Method::GET, "/v1/tournament/me/export", &ada, None).await, 200).await;
        assert_eq!(export["entered"][0]["alias"], "Ada Lovelace");
        let host_export = p.json(p.call(reqwest::Method::GET, "/v1/tournament/me/export", &host, None).await, 200).await;
        assert_eq!(host_export["organised"][0], id.to_string());
        p.ctx.publish(&contracts::users::UserErased { user_id: ada.id, erased_at: chrono::Utc::now() }).await;
        p.ctx.publish(&contracts::users::UserErased { user_id: host.id, erased_at: chrono::Utc::now() }).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let t = p.get(id, &p.user()).await;
            if t["organiser"].is_null() && t["entrants"][0]["alias"] == "Erased player" {
                assert!(t["entrants"][0]["user_id"].is_null());
                break;
            }
            assert!(Instant::now() < deadline, "the erasure is applied: {t}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let export = p.json(p.call(reqwest::Method::GET, "/v1/tournament/me/export", &ada, None).await, 200).await;
        assert_eq!(export["entered"], json!([]));
    }
}
