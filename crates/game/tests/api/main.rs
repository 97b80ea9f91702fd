//! Game over real HTTP, on SQLite and (with `PANAL_TEST_POSTGRES_URL`)
//! PostgreSQL: matches created and joined, played from curl-like clients,
//! paused, forfeited, resumed after a restart; bad input refused. Tokens
//! come from a test issuer; events are read off the test bus.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use contracts::game::{MatchFinished, MatchStarted};
use kit::config::HttpSettings;
use kit::db::Db;
use kit::testing::{TestContext, TestDb, TestIssuer, TestServer, assert_problem};
use serde_json::{Value, json};
use uuid::Uuid;

struct Platform {
    ctx: TestContext,
    issuer: TestIssuer,
    game: TestServer,
    db: Db,
    http: reqwest::Client,
    _db: TestDb,
}

struct User {
    id: Uuid,
    token: String,
}

impl Platform {
    async fn start(db: TestDb, extra: &str) -> Self {
        // Game publishes frames in its own name; here nobody answers for
        // auth's token endpoint, so publishing fails quietly (the socket
        // path is tested through `panal up` in crates/panal/tests/cli/game.rs).
        let clients = "[clients.game]\nid = \"game-test\"\nsecret = \"unused\"\n";
        let config = kit::config::Config::from_toml(&format!("[bus]\nbackoff_base_ms = 20\n{clients}{extra}")).unwrap();
        let ctx = TestContext::new(config).await;
        let issuer = TestIssuer::start(&ctx.config).await;
        let ctx = ctx.with_issuer(&issuer);
        let game_db = Db::connect(&db.url, &ctx.config.settings.db).await.unwrap();
        let game = kit::testing::server::<game::GameService>(&ctx, Some(game_db.clone())).await;
        let game = TestServer::spawn(game, HttpSettings::default()).await;
        Self { ctx, issuer, game, db: game_db, http: reqwest::Client::new(), _db: db }
    }

    /// The same database, a new game process (the old one stopped first).
    async fn restart(&mut self) {
        self.game.stop().await.unwrap();
        // Stopping closed the old process's pool.
        self.db = Db::connect(&self._db.url, &self.ctx.config.settings.db).await.unwrap();
        let game = kit::testing::server::<game::GameService>(&self.ctx, Some(self.db.clone())).await;
        self.game = TestServer::spawn(game, HttpSettings::default()).await;
    }

    fn user(&self) -> User {
        let id = Uuid::now_v7();
        User { id, token: self.issuer.token(id, &[]) }
    }

    async fn call(&self, method: reqwest::Method, path: &str, user: &User, body: Option<Value>) -> reqwest::Response {
        let mut r = self.http.request(method, self.game.url(path)).bearer_auth(&user.token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        r.send().await.unwrap()
    }

    async fn get(&self, path: &str, user: &User) -> reqwest::Response {
        self.call(reqwest::Method::GET, path, user, None).await
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

    /// A match `players[0]` created, the others joined: live when full.
    async fn match_of(&self, mode: &str, options: Value, players: &[&User]) -> Uuid {
        let body = json!({"mode": mode, "options": options});
        let created = self.json(self.post("/v1/game/matches", players[0], body).await, 201).await;
        let id: Uuid = created["id"].as_str().unwrap().parse().unwrap();
        for user in &players[1..] {
            self.json(self.post(&format!("/v1/game/matches/{id}/join"), user, json!({})).await, 200).await;
        }
        id
    }

    async fn state(&self, id: Uuid, user: &User) -> Value {
        self.json(self.get(&format!("/v1/game/matches/{id}/state"), user).await, 200).await
    }

    /// Plays (keeping `players` present) until someone concedes; the state then.
    async fn first_goal(&self, id: Uuid, players: &[&User]) -> Value {
        self.until(id, players, Duration::from_secs(60), |s| score(s).iter().any(|&c| c > 0)).await
    }

    /// Where the process that runs a live match says it answers.
    async fn owner_url(&self, id: Uuid) -> Option<String> {
        kit::with_db!(&self.db, pool => sqlx::query_scalar("SELECT owner_url FROM matches WHERE id = $1")
            .bind(id).fetch_one(pool).await)
        .unwrap()
    }

    /// The state of a match once a process runs it again (503 meanwhile).
    async fn resumed(&self, id: Uuid, user: &User) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let r = self.get(&format!("/v1/game/matches/{id}/state"), user).await;
            if r.status() != 503 {
                return self.json(r, 200).await;
            }
            assert!(std::time::Instant::now() < deadline, "nobody took the match over");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn heartbeat(&self, id: Uuid, user: &User) -> reqwest::Response {
        self.post(&format!("/v1/game/matches/{id}/heartbeat"), user, json!({})).await
    }

    /// Polls the state until `done` says so, keeping `present` players'
    /// heartbeats going; fails after `within`.
    async fn until(&self, id: Uuid, present: &[&User], within: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + within;
        loop {
            for user in present {
                self.heartbeat(id, user).await;
            }
            let r = self.get(&format!("/v1/game/matches/{id}/state"), present[0]).await;
            if r.status() == 409 {
                // Over: the stored match has the result.
                return self.json(self.get(&format!("/v1/game/matches/{id}"), present[0]).await, 200).await;
            }
            let state = self.json(r, 200).await;
            if done(&state) {
                return state;
            }
            assert!(Instant::now() < deadline, "not within {within:?}: {state}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Plays (both present) until the match ends; its `match_finished`.
async fn finished_after(
    p: &Platform,
    id: Uuid,
    players: &[&User],
    finished: &mut kit::testing::Published<MatchFinished>,
) -> (contracts::Envelope, MatchFinished) {
    p.until(id, players, Duration::from_secs(60), |_| false).await;
    loop {
        let (envelope, event) = finished.next().await;
        if event.match_id == id {
            return (envelope, event);
        }
    }
}

/// Goals conceded per seat.
fn score(state: &Value) -> Vec<u64> {
    state["paddles"].as_array().unwrap().iter().map(|p| p["conceded"].as_u64().unwrap()).collect()
}

const PATIENT: &str = "[game]\nabsent_after_ms = 60000\n";

kit::backend_tests! {
    async fn a_duel_is_created_joined_played_from_http_and_finished_with_its_result(db) {
        let p = Platform::start(db, PATIENT).await;
        let (ada, bob) = (p.user(), p.user());
        let mut started = p.ctx.watch::<MatchStarted>().await;
        let mut finished = p.ctx.watch::<MatchFinished>().await;
        let created = p.json(p.post("/v1/game/matches", &ada, json!({"mode": "duel", "options": {"points_to_win": 2}})).await, 201).await;
        assert_eq!(created["status"], "waiting");
        let id: Uuid = created["id"].as_str().unwrap().parse().unwrap();
        assert_eq!(created["channel"], format!("game:{id}"));
        let open = p.json(p.get("/v1/game/matches?status=waiting", &bob).await, 200).await;
        assert!(open["items"].as_array().unwrap().iter().any(|m| m["id"] == id.to_string()));
        // Not live yet: no state, no inputs.
        assert_problem(p.get(&format!("/v1/game/matches/{id}/state"), &ada).await, 409, None).await;

        let joined = p.json(p.post(&format!("/v1/game/matches/{id}/join"), &bob, json!({})).await, 200).await;
        assert_eq!(joined["status"], "live");
        let (_, event) = started.next().await;
        assert_eq!(event.match_id, id);
        assert_eq!(event.players.iter().map(|p| (p.user_id, p.seat, p.bot)).collect::<Vec<_>>(), vec![(ada.id, 0, false), (bob.id, 1, false)]);
        let live = p.json(p.get("/v1/game/matches?status=live", &bob).await, 200).await;
        assert!(live["items"].as_array().unwrap().iter().any(|m| m["id"] == id.to_string()));

        // The clock runs: ticks advance at about 60 a second.
        let first = p.state(id, &ada).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let second = p.state(id, &ada).await;
        let advanced = second["tick"].as_u64().unwrap() - first["tick"].as_u64().unwrap();
        assert!((15..=45).contains(&advanced), "{advanced} ticks in 0.5 s");
        assert_eq!(second["paddles"][0]["user_id"], ada.id.to_string());
        assert_eq!(second["paddles"][0]["side"], "left");

        // Inputs: applied in order, a duplicate ignored, the paddle moves.
        let path = format!("/v1/game/matches/{id}/inputs");
        let r = p.json(p.post(&path, &ada, json!({"seq": 1, "key": "up", "pressed": true})).await, 200).await;
        assert_eq!(r["applied"], true);
        let r = p.json(p.post(&path, &ada, json!({"seq": 1, "key": "up", "pressed": true})).await, 200).await;
        assert_eq!(r["applied"], false, "a duplicate");
        let moved = p.until(id, &[&ada, &bob], Duration::from_secs(5), |s| s["paddles"][0]["last_seq"] == 1 && s["paddles"][0]["moving"] == -1).await;
        assert_eq!(moved["paddles"][1]["moving"], 0);
        p.json(p.post(&path, &ada, json!({"seq": 2, "key": "up", "pressed": false})).await, 200).await;

        // Nobody plays: the serves go in until someone concedes twice.
        let over = p.until(id, &[&ada, &bob], Duration::from_secs(60), |_| false).await;
        assert_eq!(over["status"], "finished");
        let (_, result) = finished.next().await;
        assert_eq!(result.match_id, id);
        assert_eq!(over["result"]["winner"], result.winner.to_string());
        assert!(!result.forfeit);
        let winner = result.players.iter().find(|r| r.place == 1).unwrap();
        let loser = result.players.iter().find(|r| r.place == 2).unwrap();
        assert_eq!((winner.user_id, winner.scored, loser.conceded), (result.winner, 2, 2));
        assert!(result.duration_ms > 0);
        // Over is over.
        assert_problem(p.post(&path, &ada, json!({"seq": 3, "key": "up", "pressed": true})).await, 409, None).await;
        assert_problem(p.post(&format!("/v1/game/matches/{id}/join"), &p.user(), json!({})).await, 409, None).await;

        // A rematch: made when both have asked, same seats and options.
        let rematch = format!("/v1/game/matches/{id}/rematch");
        let pending = p.json(p.post(&rematch, &ada, json!({})).await, 202).await;
        assert_eq!(pending["waiting_for"], json!([bob.id]));
        p.json(p.post(&rematch, &ada, json!({})).await, 202).await;
        assert_problem(p.post(&rematch, &p.user(), json!({})).await, 403, None).await;
        let again = p.json(p.post(&rematch, &bob, json!({})).await, 201).await;
        assert_eq!((again["status"].as_str(), again["origin"].as_str()), (Some("live"), Some("rematch")));
        assert_eq!(again["players"][0]["user_id"], ada.id.to_string());
        assert_eq!(again["players"][1]["user_id"], bob.id.to_string());
        assert_eq!(again["options"]["points_to_win"], 2);
        assert_problem(p.post(&rematch, &bob, json!({})).await, 409, None).await;
        let new_id = again["id"].as_str().unwrap();
        assert_problem(p.post(&format!("/v1/game/matches/{new_id}/rematch"), &ada, json!({})).await, 409, None).await;
    }

    async fn a_bots_seat_is_marked_as_a_bots_and_so_is_its_result(db) {
        let p = Platform::start(db, PATIENT).await;
        let ada = p.user();
        // Auth signs the `bot` role only into its bots' tokens.
        let bot_id = Uuid::now_v7();
        let bot = User { id: bot_id, token: p.issuer.token(bot_id, &[kit::auth::ROLE_BOT]) };
        let mut started = p.ctx.watch::<MatchStarted>().await;
        let mut finished = p.ctx.watch::<MatchFinished>().await;
        let id = p.match_of("duel", json!({"points_to_win": 1}), &[&ada, &bot]).await;
        let (_, event) = started.next().await;
        assert_eq!(event.players.iter().map(|p| (p.user_id, p.bot)).collect::<Vec<_>>(), vec![(ada.id, false), (bot.id, true)]);
        let m = p.json(p.get(&format!("/v1/game/matches/{id}"), &ada).await, 200).await;
        assert_eq!(m["players"][1]["bot"], true);
        assert_eq!(m["players"][0]["bot"], false);
        let (_, result) = finished_after(&p, id, &[&ada, &bot], &mut finished).await;
        assert!(result.players.iter().all(|r| r.bot == (r.user_id == bot.id)), "{result:?}");
        // A person with a role of their own is never taken for a bot.
        let cy = User { id: Uuid::now_v7(), token: String::new() };
        let cy = User { token: p.issuer.token(cy.id, &["admin"]), ..cy };
        let again = p.match_of("duel", json!({}), &[&cy, &ada]).await;
        let m = p.json(p.get(&format!("/v1/game/matches/{again}"), &ada).await, 200).await;
        assert_eq!((m["players"][0]["bot"].as_bool(), m["players"][1]["bot"].as_bool()), (Some(false), Some(false)));
    }

    async fn a_player_alone_in_the_queue_gets_a_match_with_seats_for_bots(db) {
        let p = Platform::start(db, "[game]\nabsent_after_ms = 60000\nbots_after_secs = 1\n").await;
        let ada = p.user();
        let mut wanted = p.ctx.watch::<contracts::game::BotsWanted>().await;
        p.json(p.post("/v1/game/queue", &ada, json!({"mode": "duel"})).await, 202).await;
        let (_, want) = wanted.next().await;
        assert_eq!((want.mode.as_str(), want.bots, want.rating), ("duel", 1, 1500.0));
        // Out of the queue, in a match of theirs waiting for a bot.
        assert_problem(p.get("/v1/game/queue", &ada).await, 404, None).await;
        let m = p.json(p.get(&format!("/v1/game/matches/{}", want.match_id), &ada).await, 200).await;
        assert_eq!((m["status"].as_str(), m["origin"].as_str()), (Some("waiting"), Some("queue")));
        assert_eq!(m["players"].as_array().unwrap().len(), 1);
        assert_eq!(m["players"][0]["user_id"], ada.id.to_string());
        // The bot takes the seat as anyone would: the match is live.
        let bot_id = Uuid::now_v7();
        let bot = User { id: bot_id, token: p.issuer.token(bot_id, &[kit::auth::ROLE_BOT]) };
        let joined = p.json(p.post(&format!("/v1/game/matches/{}/join", want.match_id), &bot, json!({})).await, 200).await;
        assert_eq!(joined["status"], "live");
        assert_eq!(joined["players"][1]["bot"], true);
    }

    async fn a_service_has_a_match_made_for_given_players_once_per_reference(db) {
        let p = Platform::start(db, PATIENT).await;
        let (ada, bob) = (p.user(), p.user());
        let service = |scope: &str| {
            let mut c = p.issuer.claims(Uuid::now_v7(), &[]);
            c.sid = None;
            c.client_id = Some("tournament".to_owned());
            c.roles = Vec::new();
            c.scope = Some(scope.to_owned());
            p.issuer.sign(&c)
        };
        let ask = |token: String, body: Value| {
            let http = p.http.clone();
            let url = p.game.url("/v1/game/service/matches");
            async move { http.post(url).bearer_auth(token).json(&body).send().await.unwrap() }
        };
        let body = json!({"players": [ada.id, bob.id], "mode": "duel", "options": {"points_to_win": 3},
            "origin": "tournament", "reference": "tournament:t1:0:0"});
        // Only a service client with the scope; never a person.
        assert_problem(ask(service("chat:post"), body.clone()).await, 403, None).await;
        assert_problem(ask(ada.token.clone(), body.clone()).await, 403, None).await;
        for bad in [
            json!({"players": [ada.id], "mode": "duel", "origin": "tournament", "reference": "r"}),
            json!({"players": [ada.id, ada.id], "mode": "duel", "origin": "tournament", "reference": "r"}),
            json!({"players": [ada.id, bob.id], "mode": "four_players", "origin": "tournament", "reference": "r"}),
            json!({"players": [ada.id, bob.id], "mode": "duel", "origin": "queue", "reference": "r"}),
            json!({"players": [ada.id, bob.id], "mode": "duel", "origin": "tournament", "reference": ""}),
            json!({"players": [ada.id, bob.id], "mode": "duel", "origin": "tournament", "reference": "r", "options": {"points_to_win": 0}}),
        ] {
            assert_problem(ask(service("game:matches"), bad).await, 422, None).await;
        }
        let made = p.json(ask(service("game:matches"), body.clone()).await, 201).await;
        assert_eq!((made["status"].as_str(), made["origin"].as_str()), (Some("live"), Some("tournament")));
        assert_eq!(made["players"][1]["user_id"], bob.id.to_string());
        assert_eq!(made["options"]["points_to_win"], 3);
        // Asked again (a retry): the same match.
        let again = p.json(ask(service("game:matches"), body).await, 200).await;
        assert_eq!(again["id"], made["id"]);
        // It runs: the players play it as any other.
        let id: Uuid = made["id"].as_str().unwrap().parse().unwrap();
        assert_eq!(p.post(&format!("/v1/game/matches/{id}/leave"), &bob, json!({})).await.status(), 204);
    }

    async fn bad_input_is_refused_and_the_match_is_untouched(db) {
        let p = Platform::start(db, PATIENT).await;
        let (ada, bob, eve) = (p.user(), p.user(), p.user());
        for bad in [
            json!({"mode": "duel", "options": {"points_to_win": 0}}),
            json!({"mode": "duel", "options": {"points_to_win": 22}}),
            json!({"mode": "eight_players"}),
            json!({"mode": "duel", "options": {"gravity": true}}),
            json!({"mode": "duel", "options": {"ball_speed": "ludicrous"}}),
        ] {
            assert_problem(p.post("/v1/game/matches", &ada, bad).await, 422, None).await;
        }
        let created = p.json(p.post("/v1/game/matches", &ada, json!({"mode": "duel"})).await, 201).await;
        let id: Uuid = created["id"].as_str().unwrap().parse().unwrap();
        assert_eq!(created["options"]["points_to_win"], 11, "the default");
        // Joining one's own match, a missing match; inputs before it is live.
        assert_problem(p.post(&format!("/v1/game/matches/{id}/join"), &ada, json!({})).await, 409, None).await;
        assert_problem(p.post(&format!("/v1/game/matches/{}/join", Uuid::now_v7()), &bob, json!({})).await, 404, None).await;
        let path = format!("/v1/game/matches/{id}/inputs");
        assert_problem(p.post(&path, &ada, json!({"seq": 1, "key": "up", "pressed": true})).await, 409, None).await;
        p.json(p.post(&format!("/v1/game/matches/{id}/join"), &bob, json!({})).await, 200).await;
        // Full now.
        assert_problem(p.post(&format!("/v1/game/matches/{id}/join"), &eve, json!({})).await, 409, None).await;
        // A stranger's inputs; absurd ones.
        assert_problem(p.post(&path, &eve, json!({"seq": 1, "key": "up", "pressed": true})).await, 403, None).await;
        assert_problem(p.post(&path, &ada, json!({"seq": 0, "key": "up", "pressed": true})).await, 422, None).await;
        assert_problem(p.post(&path, &ada, json!({"seq": -1, "key": "up", "pressed": true})).await, 422, None).await;
        assert_problem(p.post(&path, &ada, json!({"seq": 1, "key": "sideways", "pressed": true})).await, 422, None).await;
        assert_problem(p.post(&path, &ada, json!({"seq": 1, "key": "up"})).await, 422, None).await;
        assert_problem(p.post(&format!("/v1/game/matches/{}/inputs", Uuid::now_v7()), &ada, json!({"seq": 1, "key": "up", "pressed": true})).await, 404, None).await;
        assert_problem(p.heartbeat(id, &eve).await, 403, None).await;
        assert_problem(p.post(&format!("/v1/game/matches/{id}/leave"), &eve, json!({})).await, 403, None).await;
        // Timestamps from the future or the far past are clamped, not trusted.
        let r = p.json(p.post(&path, &ada, json!({"seq": 5, "key": "down", "pressed": true, "tick": u64::MAX, "ack": 0})).await, 200).await;
        assert_eq!(r["applied"], true);
        let r = p.json(p.post(&path, &ada, json!({"seq": 6, "key": "down", "pressed": false, "tick": 0, "ack": u64::MAX})).await, 200).await;
        assert_eq!(r["applied"], true);
        // A huge sequence number is just the latest; older ones after it are ignored.
        p.json(p.post(&path, &ada, json!({"seq": u32::MAX, "key": "up", "pressed": false})).await, 200).await;
        let r = p.json(p.post(&path, &ada, json!({"seq": 7, "key": "up", "pressed": true})).await, 200).await;
        assert_eq!(r["applied"], false);
        // The next frame (30 a second) shows it.
        let state = p.until(id, &[&ada, &bob], Duration::from_secs(5), |s| s["paddles"][0]["last_seq"] == u32::MAX).await;
        assert_eq!(state["paddles"][0]["moving"], 0);
        // Bad pages.
        assert_problem(p.get("/v1/game/matches?limit=0", &ada).await, 422, None).await;
        assert_problem(p.get("/v1/game/matches?cursor=nonsense", &ada).await, 422, None).await;
        assert_problem(p.get("/v1/game/matches?status=paused", &ada).await, 400, None).await;
    }

    async fn a_player_who_goes_away_pauses_the_match_and_forfeits_after_the_grace(db) {
        let p = Platform::start(db, "[game]\nabsent_after_ms = 300\nreconnect_grace_secs = 2\n").await;
        let (ada, bob) = (p.user(), p.user());
        let mut finished = p.ctx.watch::<MatchFinished>().await;
        let id = p.match_of("duel", json!({}), &[&ada, &bob]).await;
        // Bob goes quiet: paused, and he is shown away.
        let paused = p.until(id, &[&ada], Duration::from_secs(5), |s| s["paused"] == true).await;
        assert_eq!(paused["paddles"][1]["away"], true);
        assert_eq!(paused["paddles"][0]["away"], false);
        let frozen = paused["tick"].as_u64().unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(p.state(id, &ada).await["tick"].as_u64().unwrap(), frozen, "the clock stops while paused");
        // He comes back in time: it resumes.
        p.json(p.heartbeat(id, &bob).await, 200).await;
        p.until(id, &[&ada, &bob], Duration::from_secs(5), |s| s["paused"] == false && s["tick"].as_u64().unwrap() > frozen).await;
        // Gone for good: after the grace he forfeits and Ada wins.
        let over = p.until(id, &[&ada], Duration::from_secs(10), |_| false).await;
        assert_eq!(over["status"], "finished");
        let (_, result) = finished.next().await;
        assert!(result.forfeit);
        assert_eq!(result.winner, ada.id);
        let bob_line = result.players.iter().find(|r| r.user_id == bob.id).unwrap();
        assert!(bob_line.forfeited);
        assert_eq!(bob_line.place, 2);
    }

    async fn leaving_is_a_forfeit_and_four_players_go_out_until_one_is_left(db) {
        let p = Platform::start(db, PATIENT).await;
        let players: Vec<User> = (0..4).map(|_| p.user()).collect();
        let all: Vec<&User> = players.iter().collect();
        let mut finished = p.ctx.watch::<MatchFinished>().await;
        let id = p.match_of("four_players", json!({"points_to_win": 3}), &all).await;
        let state = p.state(id, &players[0]).await;
        assert_eq!(state["width"], state["height"], "a square field");
        let sides: Vec<&str> = state["paddles"].as_array().unwrap().iter().map(|p| p["side"].as_str().unwrap()).collect();
        assert_eq!(sides, ["left", "right", "top", "bottom"]);
        // Three leave, one after the other: the last one standing wins.
        for (n, user) in players[1..].iter().enumerate() {
            assert_eq!(p.post(&format!("/v1/game/matches/{id}/leave"), user, json!({})).await.status(), 204);
            if n < 2 {
                let s = p.state(id, &players[0]).await;
                assert_eq!(s["paddles"][n + 1]["out"], true);
            }
        }
        let (_, result) = finished.next().await;
        assert_eq!(result.winner, players[0].id);
        assert!(result.forfeit);
        let places: Vec<(Uuid, u8)> = result.players.iter().map(|r| (r.user_id, r.place)).collect();
        assert_eq!(places[0], (players[0].id, 1));
        assert_eq!(places[1], (players[3].id, 2), "the last to leave is second");
        assert_eq!(places[3], (players[1].id, 4), "the first to leave is last");
        assert_problem(p.post(&format!("/v1/game/matches/{id}/leave"), &players[0], json!({})).await, 409, None).await;
    }

    async fn an_invitation_is_only_stored_once_its_card_is_posted(db) {
        // No chat (and no auth for game's token) here: the card cannot be
        // posted, so there is no invitation (the accepted path runs through
        // `panal up` in crates/panal/tests/cli/realtime.rs).
        let p = Platform::start(db, PATIENT).await;
        let (ada, bob) = (p.user(), p.user());
        assert_problem(p.post("/v1/game/invitations", &ada, json!({"to": ada.id})).await, 422, None).await;
        assert_problem(p.post("/v1/game/invitations", &ada, json!({"to": bob.id, "options": {"points_to_win": 0}})).await, 422, None).await;
        assert_problem(p.post("/v1/game/invitations", &ada, json!({"to": bob.id})).await, 503, None).await;
        assert_eq!(p.json(p.get("/v1/game/invitations", &bob).await, 200).await, json!([]));
        let missing = format!("/v1/game/invitations/{}/accept", Uuid::now_v7());
        assert_problem(p.post(&missing, &bob, json!({})).await, 404, None).await;
    }

    async fn the_queue_pairs_close_ratings_at_once_and_far_ones_as_the_window_widens(db) {
        let p = Platform::start(db, PATIENT).await;
        let (ada, bob, cy, dee) = (p.user(), p.user(), p.user(), p.user());
        // Ratings as stats announces them: Ada and Bob have none (1500), Cy
        // and Dee are 300 apart and far above them. A late, older
        // announcement for Dee does not overwrite the newer one.
        let now = chrono::Utc::now();
        for (user, rating, at) in [(&cy, 1800.0, now), (&dee, 2100.0, now), (&dee, 1500.0, now - chrono::Duration::minutes(5))] {
            p.ctx.publish(&contracts::stats::RatingChanged {
                user_id: user.id, mode: "duel".to_owned(), rating, deviation: 80.0, rated_matches: 30,
                match_id: Some(Uuid::now_v7()), changed_at: at,
            }).await;
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let applied: i64 = kit::with_db!(&p.db, pool => sqlx::query_scalar(
                "SELECT count(*) FROM inbox").fetch_one(pool).await).unwrap();
            if applied >= 3 { break; }
            assert!(std::time::Instant::now() < deadline, "game applies stats' ratings");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let dees: f64 = kit::with_db!(&p.db, pool => sqlx::query_scalar(
            "SELECT rating FROM ratings WHERE user_id = $1").bind(dee.id).fetch_one(pool).await).unwrap();
        assert_eq!(dees, 2100.0);
        let mut started = p.ctx.watch::<MatchStarted>().await;
        for user in [&ada, &bob, &cy, &dee] {
            let queued = p.json(p.post("/v1/game/queue", user, json!({"mode": "duel"})).await, 202).await;
            assert_eq!(queued["mode"], "duel");
        }
        assert_problem(p.post("/v1/game/queue", &ada, json!({"mode": "duel"})).await, 409, None).await;
        assert_problem(p.post("/v1/game/queue", &ada, json!({"mode": "solo"})).await, 422, None).await;
        // Ada and Bob (both 1500) are paired in the first round.
        let (_, first) = started.next().await;
        assert_eq!(first.origin, "queue");
        let mut pair: Vec<Uuid> = first.players.iter().map(|p| p.user_id).collect();
        pair.sort();
        let mut expected = vec![ada.id, bob.id];
        expected.sort();
        assert_eq!(pair, expected);
        assert_problem(p.get("/v1/game/queue", &ada).await, 404, None).await;
        // Playing: cannot queue again.
        assert_problem(p.post("/v1/game/queue", &ada, json!({"mode": "duel"})).await, 409, None).await;
        // Cy and Dee, 300 apart, wait until their windows reach 300 (4 s).
        let waiting = p.json(p.get("/v1/game/queue", &cy).await, 200).await;
        assert_eq!(waiting["rating"], 1800.0);
        assert!(waiting["window"].as_f64().unwrap() < 300.0, "{waiting}");
        let (_, second) = started.next().await;
        let waited = second.started_at - first.started_at;
        assert!(waited >= chrono::Duration::seconds(3), "matched after {waited}");
        assert_eq!(second.players.len(), 2);
        // Leaving the queue.
        p.json(p.post("/v1/game/queue", &p.user(), json!({"mode": "four_players"})).await, 202).await;
        let eve = p.user();
        p.json(p.post("/v1/game/queue", &eve, json!({"mode": "four_players"})).await, 202).await;
        assert_eq!(p.call(reqwest::Method::DELETE, "/v1/game/queue", &eve, None).await.status(), 204);
        assert_problem(p.call(reqwest::Method::DELETE, "/v1/game/queue", &eve, None).await, 404, None).await;
    }

    async fn a_restarted_process_resumes_a_live_match_from_its_last_goal(db) {
        let mut p = Platform::start(db, PATIENT).await;
        let (ada, bob) = (p.user(), p.user());
        let id = p.match_of("duel", json!({"points_to_win": 11}), &[&ada, &bob]).await;
        // Play until the first goal: the snapshot is written then.
        let before = score(&p.first_goal(id, &[&ada, &bob]).await);
        // Give the snapshot a moment to land, then the process dies.
        tokio::time::sleep(Duration::from_millis(300)).await;
        p.restart().await;
        // The match is back (503 until the new process has claimed it),
        // paused until its players return, score intact.
        let resumed = p.resumed(id, &ada).await;
        assert_eq!(resumed["paused"], true);
        let after = score(&resumed);
        assert!(after.iter().sum::<u64>() >= before.iter().sum::<u64>(), "{before:?} → {after:?}");
        assert!(after.iter().sum::<u64>() >= 1);
        p.until(id, &[&ada, &bob], Duration::from_secs(5), |s| s["paused"] == false).await;
    }

    async fn a_second_process_forwards_to_the_owner_and_takes_over_when_it_dies(db) {
        // Process A: the test's; its lease is a second, so it takes over fast.
        let p = Platform::start(db, "[game]\nabsent_after_ms = 60000\nlease_secs = 1\n").await;
        let (ada, bob) = (p.user(), p.user());
        // Process B: the same database, in a runtime of its own, so that it
        // can die as a killed process does — every task gone at once, no
        // handover, no last snapshot, its leases left to run out.
        let doomed = Doomed::start(&p, "[game]\nabsent_after_ms = 60000\nlease_secs = 1\n");
        // B makes the match live, so B runs it.
        let created = p.json(p.http.post(format!("{}/v1/game/matches", doomed.url)).bearer_auth(&ada.token)
            .json(&json!({"mode": "duel", "options": {"points_to_win": 11}})).send().await.unwrap(), 201).await;
        let id: Uuid = created["id"].as_str().unwrap().parse().unwrap();
        p.json(p.http.post(format!("{}/v1/game/matches/{id}/join", doomed.url)).bearer_auth(&bob.token)
            .json(&json!({})).send().await.unwrap(), 200).await;

        assert_eq!(p.owner_url(id).await.as_deref(), Some(doomed.url.as_str()));
        // Players talk to A: state, inputs and heartbeats reach B through it.
        let pressed = p.json(p.post(&format!("/v1/game/matches/{id}/inputs"), &ada,
            json!({"seq": 1, "key": "up", "pressed": true})).await, 200).await;
        assert_eq!(pressed["applied"], true);
        let moved = p.until(id, &[&ada, &bob], Duration::from_secs(5), |s| s["paddles"][0]["last_seq"] == 1).await;
        assert_eq!(moved["paddles"][0]["moving"], -1);
        // Play on (through A) until a goal: B snapshots it.
        let before = score(&p.first_goal(id, &[&ada, &bob]).await);
        tokio::time::sleep(Duration::from_millis(300)).await;
        doomed.kill();
        // A takes it over once B's lease has run out (503 meanwhile), paused,
        // the score intact; then play resumes under A.
        let resumed = p.resumed(id, &ada).await;
        assert_eq!(resumed["paused"], true);
        let after = score(&resumed);
        assert!(after.iter().sum::<u64>() >= before.iter().sum::<u64>(), "{before:?} → {after:?}");
        assert_eq!(p.owner_url(id).await, None, "A runs it (A advertises no URL)");
        p.until(id, &[&ada, &bob], Duration::from_secs(5), |s| s["paused"] == false).await;
        // Never two owners: a process that lost the lease writes nothing.
        let stale = game::store::Store::new(p.db.clone(), game::store::Owner {
            id: "a-process-that-lost-its-lease".to_owned(), url: None, lease: Duration::from_secs(1),
        });
        stale.snapshot(id, "{}").await.unwrap();
        let result = contracts::game::MatchFinished {
            match_id: id, mode: "duel".to_owned(), origin: "open".to_owned(), winner: ada.id, players: Vec::new(),
            forfeit: false, duration_ms: 1, started_at: chrono::Utc::now(), finished_at: chrono::Utc::now(),
        };
        assert!(!stale.finish(&result).await.unwrap());
        let still = p.json(p.get(&format!("/v1/game/matches/{id}"), &ada).await, 200).await;
        assert_eq!(still["status"], "live", "{still}");
    }

    async fn players_queued_through_two_processes_are_matched_by_one_matchmaker(db) {
        let p = Platform::start(db, PATIENT).await;
        let other = Doomed::start(&p, PATIENT);
        let (ada, bob) = (p.user(), p.user());
        let mut started = p.ctx.watch::<MatchStarted>().await;
        p.json(p.post("/v1/game/queue", &ada, json!({"mode": "duel"})).await, 202).await;
        let through_other = p.http.post(format!("{}/v1/game/queue", other.url)).bearer_auth(&bob.token)
            .json(&json!({"mode": "duel"})).send().await.unwrap();
        p.json(through_other, 202).await;
        // One queue: Bob is queued as far as either process knows.
        assert_problem(p.post("/v1/game/queue", &bob, json!({"mode": "duel"})).await, 409, None).await;
        let (_, m) = started.next().await;
        let mut seated: Vec<Uuid> = m.players.iter().map(|p| p.user_id).collect();
        seated.sort();
        let mut expected = vec![ada.id, bob.id];
        expected.sort();
        assert_eq!(seated, expected);
        assert_problem(p.get("/v1/game/queue", &bob).await, 404, None).await;
        other.kill();
    }

    async fn a_players_data_is_exported_and_erasure_leaves_no_trace_of_them(db) {
        let p = Platform::start(db, PATIENT).await;
        let (ada, bob) = (p.user(), p.user());
        let id = p.match_of("duel", json!({"points_to_win": 3}), &[&ada, &bob]).await;
        assert_eq!(p.post(&format!("/v1/game/matches/{id}/leave"), &bob, json!({})).await.status(), 204);
        // Finished once its result is recorded (the arena lets go of it first).
        let deadline = Instant::now() + Duration::from_secs(5);
        while p.json(p.get(&format!("/v1/game/matches/{id}"), &ada).await, 200).await["status"] != "finished" {
            assert!(Instant::now() < deadline, "the forfeit is recorded");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        p.ctx.publish(&contracts::stats::RatingChanged {
            user_id: ada.id, mode: "duel".to_owned(), rating: 1662.3, deviation: 290.3, rated_matches: 1,
            match_id: Some(id), changed_at: chrono::Utc::now(),
        }).await;
        p.json(p.post("/v1/game/queue", &ada, json!({"mode": "four_players"})).await, 202).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        let export = loop {
            let export = p.json(p.get("/v1/game/me/export", &ada).await, 200).await;
            if !export["ratings"].as_array().unwrap().is_empty() {
                break export;
            }
            assert!(Instant::now() < deadline, "the rating reaches game");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(export["matches"][0]["id"], id.to_string());
        assert_eq!(export["matches"][0]["result"]["winner"], ada.id.to_string());
        assert_eq!(export["queue"]["mode"], "four_players");
        assert_eq!(export["ratings"][0]["rating"], 1662.3);

        p.ctx.publish(&contracts::users::UserErased { user_id: ada.id, erased_at: chrono::Utc::now() }).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let export = p.json(p.get("/v1/game/me/export", &ada).await, 200).await;
            if export["matches"].as_array().unwrap().is_empty() {
                assert!(export["ratings"].as_array().unwrap().is_empty() && export["queue"].is_null(), "{export}");
                break;
            }
            assert!(Instant::now() < deadline, "game erases her");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Bob's match keeps its shape, under a pseudonym.
        let seen = p.json(p.get(&format!("/v1/game/matches/{id}"), &bob).await, 200).await;
        assert!(!seen.to_string().contains(&ada.id.to_string()), "{seen}");
        let pseudonym = seen["result"]["winner"].as_str().unwrap();
        assert!(seen["players"].as_array().unwrap().iter().any(|p| p["user_id"] == pseudonym), "{seen}");
        assert_eq!(p.json(p.get("/v1/game/me/export", &bob).await, 200).await["matches"].as_array().unwrap().len(), 1);
    }
}

/// A game process in a runtime of its own, killed by dropping the runtime.
struct Doomed {
    runtime: Option<tokio::runtime::Runtime>,
    url: String,
}

impl Doomed {
    fn start(p: &Platform, extra: &str) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let (ctx, db_url) = (p.ctx.ctx.clone(), p._db.url.clone());
        let extra = extra.to_owned();
        let handle = runtime.handle().clone();
        let url = std::thread::spawn(move || {
            handle.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let url = format!("http://{}", listener.local_addr().unwrap());
                let clients = "[clients.game]\nid = \"game-test\"\nsecret = \"unused\"\n";
                let config = kit::config::Config::from_toml(&format!(
                    "[bus]\nbackoff_base_ms = 20\n{clients}{extra}advertise_url = \"{url}\"\n"
                ))
                .unwrap();
                let ctx = kit::Context { config, ..ctx };
                let db = Db::connect(&db_url, &ctx.config.settings.db).await.unwrap();
                let game = kit::testing::server::<game::GameService>(&ctx, Some(db)).await;
                // Served until the runtime dies.
                std::mem::forget(TestServer::spawn_on(listener, game, HttpSettings::default()).await);
                url
            })
        })
        .join()
        .unwrap();
        Self { runtime: Some(runtime), url }
    }

    fn kill(mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for Doomed {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
