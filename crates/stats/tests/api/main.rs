//! Stats over real HTTP, on SQLite and (with `PANAL_TEST_POSTGRES_URL`)
//! PostgreSQL. Stats runs alone: finished matches arrive as game's
//! `match_finished` on the test bus (exactly what game publishes), names as
//! auth's and users' events, tokens from a test issuer; what stats
//! announces (`rating_changed`) is read off the bus.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use contracts::auth::UserRegistered;
use contracts::game::{MatchFinished, PlayerResult};
use contracts::stats::RatingChanged;
use contracts::users::UserErased;
use kit::config::HttpSettings;
use kit::db::Db;
use kit::testing::{TestContext, TestDb, TestIssuer, TestServer, assert_problem};
use kit::with_db;
use serde_json::Value;
use uuid::Uuid;

struct Platform {
    ctx: TestContext,
    issuer: TestIssuer,
    stats: TestServer,
    db: Db,
    http: reqwest::Client,
    token: String,
    _db: TestDb,
}

impl Platform {
    async fn start(db: TestDb) -> Self {
        let config = kit::config::Config::from_toml("[bus]\nbackoff_base_ms = 20\nmax_attempts = 2\n").unwrap();
        let ctx = TestContext::new(config).await;
        let issuer = TestIssuer::start(&ctx.config).await;
        let ctx = ctx.with_issuer(&issuer);
        let stats_db = Db::connect(&db.url, &ctx.config.settings.db).await.unwrap();
        let stats = kit::testing::server::<stats::StatsService>(&ctx, Some(stats_db.clone())).await;
        let stats = TestServer::spawn(stats, HttpSettings::default()).await;
        let token = issuer.token(Uuid::now_v7(), &[]);
        Self { ctx, issuer, stats, db: stats_db, http: reqwest::Client::new(), token, _db: db }
    }

    async fn person(&self, name: &str) -> Uuid {
        let id = Uuid::now_v7();
        self.ctx
            .publish(&UserRegistered {
                user_id: id,
                email: format!("{}@example.com", id.simple()),
                display_name: name.to_owned(),
                registered_at: Utc::now(),
            })
            .await;
        self.eventually("stats learns the name", || async {
            let n: i64 =
                with_db!(&self.db, pool => sqlx::query_scalar("SELECT count(*) FROM people WHERE user_id = $1")
                .bind(id).fetch_one(pool).await)
                .unwrap();
            n == 1
        })
        .await;
        id
    }

    async fn count(&self, sql: &'static str) -> i64 {
        with_db!(&self.db, pool => sqlx::query_scalar(sql).fetch_one(pool).await).unwrap()
    }

    /// Publishes `result` and waits until stats has journaled it.
    async fn finish(&self, result: &MatchFinished) {
        let before = self.count("SELECT count(*) FROM journal").await;
        self.ctx.publish(result).await;
        self.eventually("stats applies the match", || async {
            self.count("SELECT count(*) FROM journal").await > before
        })
        .await;
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

    async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.stats.url(path)).bearer_auth(&self.token).send().await.unwrap()
    }

    async fn json(&self, path: &str) -> Value {
        let response = self.get(path).await;
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.unwrap()
    }

    /// Every player line, as the store holds it, in a stable order.
    async fn lines(&self) -> Vec<(Uuid, String, f64, f64, f64, i32, i32, i32, i32)> {
        with_db!(&self.db, pool => sqlx::query_as(
            "SELECT user_id, mode, rating, deviation, volatility, matches, wins, streak, best_streak
             FROM players ORDER BY user_id, mode").fetch_all(pool).await)
        .unwrap()
    }
}

/// A finished match with `players` as (id, place, bot); the first place wins.
fn finished(mode: &str, players: &[(Uuid, u8, bool)], at: DateTime<Utc>) -> MatchFinished {
    let winner = players.iter().find(|p| p.1 == 1).unwrap().0;
    MatchFinished {
        match_id: Uuid::now_v7(),
        mode: mode.to_owned(),
        origin: "queue".to_owned(),
        winner,
        players: players
            .iter()
            .enumerate()
            .map(|(seat, &(user_id, place, bot))| PlayerResult {
                user_id,
                seat: u8::try_from(seat).unwrap(),
                bot,
                scored: if place == 1 { 11 } else { 4 },
                conceded: if place == 1 { 4 } else { 11 },
                place,
                forfeited: false,
            })
            .collect(),
        forfeit: false,
        duration_ms: 95_000,
        started_at: at - chrono::Duration::seconds(95),
        finished_at: at,
    }
}

fn duel(winner: Uuid, loser: Uuid) -> MatchFinished {
    finished("duel", &[(winner, 1, false), (loser, 2, false)], Utc::now())
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test] async fn $name() { super::$name(super::TestDb::sqlite().await).await; })*
        }
        mod postgres {
            $(#[tokio::test] async fn $name() {
                let Some(db) = super::TestDb::postgres().await else { return };
                super::$name(db).await;
            })*
        }
    };
}

on_both_backends!(
    ratings_records_history_and_leaderboards,
    a_rebuild_arrives_at_the_same_numbers,
    an_erased_player_disappears_and_the_numbers_stay,
    bad_input_is_refused_and_contradictory_results_are_dead_lettered,
);

async fn ratings_records_history_and_leaderboards(db: TestDb) {
    let p = Platform::start(db).await;
    let (ana, ben, cai, dia) =
        (p.person("Ana").await, p.person("Ben").await, p.person("Cai").await, p.person("Dia").await);
    let mut announced = p.ctx.watch::<RatingChanged>().await;

    p.finish(&duel(ana, ben)).await;
    // Both players' new ratings are announced (game's matchmaking follows them).
    let mut seen = Vec::new();
    for _ in 0..2 {
        let (_, e) = announced.next().await;
        seen.push((e.user_id, e.rating.round()));
    }
    seen.sort_by_key(|s| s.0);
    let mut expected = vec![(ana, 1662.0), (ben, 1338.0)];
    expected.sort_by_key(|s| s.0);
    assert_eq!(seen, expected);

    p.finish(&duel(ana, cai)).await;
    p.finish(&duel(cai, ben)).await;
    let bot = Uuid::now_v7();
    // Against a bot: counted, not rated.
    p.finish(&finished("duel", &[(bot, 1, true), (ana, 2, false)], Utc::now())).await;
    p.finish(&finished(
        "four_players",
        &[(dia, 1, false), (cai, 2, false), (ben, 3, false), (ana, 4, false)],
        Utc::now(),
    ))
    .await;

    let a = p.json(&format!("/v1/stats/players/{ana}")).await;
    assert_eq!(a["display_name"], "Ana");
    let duel_line = a["modes"].as_array().unwrap().iter().find(|m| m["mode"] == "duel").unwrap();
    assert_eq!(
        (duel_line["matches"].as_u64(), duel_line["wins"].as_u64(), duel_line["losses"].as_u64()),
        (Some(3), Some(2), Some(1))
    );
    assert_eq!(duel_line["rated_matches"], 2, "the match against the bot is not rated");
    assert_eq!((duel_line["streak"].as_i64(), duel_line["best_streak"].as_i64()), (Some(-1), Some(2)));
    assert_eq!(duel_line["rank"], 1, "two wins against people: first in duels");
    assert_eq!(duel_line["points_scored"], 11 + 11 + 4);
    let four = a["modes"].as_array().unwrap().iter().find(|m| m["mode"] == "four_players").unwrap();
    assert!(four["rating"].as_f64().unwrap() < 1500.0, "last of four loses rating: {four}");

    // The bot has numbers, marked as a bot, and no rank.
    let b = p.json(&format!("/v1/stats/players/{bot}")).await;
    assert_eq!(b["modes"][0]["bot"], true);
    assert!(b["modes"][0].get("rank").is_none());
    assert_eq!(b["modes"][0]["rating"], 1500.0);

    // History: newest first, one per page, the cursor walks all three duels.
    let mut cursor = None::<String>;
    let mut walked = Vec::new();
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/stats/players/{ana}/matches?mode=duel&limit=1&cursor={c}"),
            None => format!("/v1/stats/players/{ana}/matches?mode=duel&limit=1"),
        };
        let page = p.json(&path).await;
        walked.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(walked.len(), 3);
    assert_eq!(walked[0]["rated"], false, "the newest duel was the one against the bot");
    assert_eq!(walked[0]["opponents"][0]["bot"], true);
    assert_eq!(walked[2]["won"], true);
    assert_eq!(walked[2]["rating_before"], 1500.0);
    let all = p.json(&format!("/v1/stats/players/{ana}/matches")).await;
    assert_eq!(all["items"].as_array().unwrap().len(), 4, "every mode without a filter");

    // Today's point on the chart.
    let series = p.json(&format!("/v1/stats/players/{ana}/series?mode=duel&days=7")).await;
    let days = series["days"].as_array().unwrap();
    assert_eq!(days.len(), 1);
    assert_eq!((days[0]["matches"].as_u64(), days[0]["wins"].as_u64()), (Some(3), Some(2)));
    assert_eq!(days[0]["rating"], duel_line["rating"]);

    // The duel leaderboard: Ana, Cai, Ben (the bot is not ranked); ranks
    // carry across pages.
    let first = p.json("/v1/stats/leaderboards/duel?limit=2").await;
    let items = first["items"].as_array().unwrap();
    assert_eq!(
        items.iter().map(|i| i["user_id"].as_str().unwrap().to_owned()).collect::<Vec<_>>(),
        vec![ana.to_string(), cai.to_string()]
    );
    assert_eq!((items[0]["rank"].as_u64(), items[1]["rank"].as_u64()), (Some(1), Some(2)));
    assert_eq!(items[0]["display_name"], "Ana");
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = p.json(&format!("/v1/stats/leaderboards/duel?limit=2&cursor={cursor}")).await;
    let items = second["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!((items[0]["user_id"].as_str(), items[0]["rank"].as_u64()), (Some(ben.to_string().as_str()), Some(3)));
    assert!(second.get("next_cursor").is_none());
    let four = p.json("/v1/stats/leaderboards/four_players").await;
    assert_eq!(four["items"][0]["user_id"], dia.to_string());
    assert_eq!(four["items"].as_array().unwrap().len(), 4);

    // The same event again (a redelivery with a new envelope): applied once.
    let again = duel(ana, ben);
    p.finish(&again).await;
    p.ctx.publish(&again).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(p.count("SELECT count(*) FROM journal").await, 6);
    let a = p.json(&format!("/v1/stats/players/{ana}")).await;
    assert_eq!(a["modes"].as_array().unwrap().iter().find(|m| m["mode"] == "duel").unwrap()["matches"], 4);

    // The caller's export holds their numbers and every match.
    let ana_token = p.issuer.token(ana, &[]);
    let export: Value = p
        .http
        .get(p.stats.url("/v1/stats/me/export"))
        .bearer_auth(ana_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(export["display_name"], "Ana");
    assert_eq!(export["matches"].as_array().unwrap().len(), 5);
    assert_eq!(export["modes"].as_array().unwrap().len(), 2);
}

/// Many matches among a few players, in a fixed pseudo-random order.
async fn play_a_season(p: &Platform, players: &[Uuid], matches: usize) {
    let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
    let mut next = |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        usize::try_from(seed % n as u64).unwrap()
    };
    let start = Utc::now() - chrono::Duration::days(10);
    for i in 0..matches {
        let a = players[next(players.len())];
        let mut b = players[next(players.len())];
        while b == a {
            b = players[next(players.len())];
        }
        let at = start + chrono::Duration::hours(i64::try_from(i).unwrap() * 3);
        if i % 5 == 4 {
            let mut four: Vec<Uuid> = players.iter().copied().filter(|x| *x != a && *x != b).take(2).collect();
            four.insert(0, b);
            four.insert(0, a);
            let places: Vec<(Uuid, u8, bool)> =
                four.iter().enumerate().map(|(k, id)| (*id, u8::try_from(k).unwrap() + 1, false)).collect();
            p.finish(&finished("four_players", &places, at)).await;
        } else {
            p.finish(&finished("duel", &[(a, 1, false), (b, 2, false)], at)).await;
        }
    }
}

async fn a_rebuild_arrives_at_the_same_numbers(db: TestDb) {
    let p = Platform::start(db).await;
    let mut players = Vec::new();
    for name in ["Ana", "Ben", "Cai", "Dia", "Eli"] {
        players.push(p.person(name).await);
    }
    play_a_season(&p, &players, 40).await;
    let before = p.lines().await;
    let history_before = p.count("SELECT count(*) FROM history").await;
    let days_before = p.count("SELECT count(*) FROM daily").await;
    let board_before = p.json("/v1/stats/leaderboards/duel").await;

    let rebuilt = stats::rebuild(&p.db).await.unwrap();
    assert_eq!((rebuilt.matches, rebuilt.changed), (40, 0), "{rebuilt:?}");
    assert_eq!(p.lines().await, before, "the same ratings, to the last bit");
    assert_eq!(p.count("SELECT count(*) FROM history").await, history_before);
    assert_eq!(p.count("SELECT count(*) FROM daily").await, days_before);
    assert_eq!(p.json("/v1/stats/leaderboards/duel").await, board_before);

    // A read model gone wrong is repaired, and the change announced.
    let mut announced = p.ctx.watch::<RatingChanged>().await;
    with_db!(&p.db, pool => sqlx::query("UPDATE players SET rating = 1.0 WHERE user_id = $1 AND mode = 'duel'")
        .bind(players[0]).execute(pool).await.map(|_| ()))
    .unwrap();
    let rebuilt = stats::rebuild(&p.db).await.unwrap();
    assert_eq!(rebuilt.changed, 1);
    assert_eq!(p.lines().await, before);
    // (Announcements of the season's matches may still be on their way.)
    loop {
        let (_, e) = announced.next().await;
        if e.match_id.is_none() {
            assert_eq!(e.user_id, players[0]);
            break;
        }
    }
}

async fn an_erased_player_disappears_and_the_numbers_stay(db: TestDb) {
    let p = Platform::start(db).await;
    let (ana, ben, cai) = (p.person("Ana").await, p.person("Ben").await, p.person("Cai").await);
    p.finish(&duel(ana, ben)).await;
    p.finish(&duel(ben, cai)).await;
    p.finish(&duel(ana, cai)).await;
    let mut ben_before = p.json(&format!("/v1/stats/players/{ben}")).await;

    p.ctx.publish(&UserErased { user_id: ana, erased_at: Utc::now() }).await;
    p.eventually("stats erases Ana", || async { p.count("SELECT count(*) FROM erased").await == 1 }).await;

    assert_problem(p.get(&format!("/v1/stats/players/{ana}")).await, 404, None).await;
    let board = p.json("/v1/stats/leaderboards/duel").await;
    let ids: Vec<&str> = board["items"].as_array().unwrap().iter().map(|i| i["user_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 2, "{board}");
    assert!(!ids.contains(&ana.to_string().as_str()));
    assert_eq!(board["items"][0]["rank"], 1);
    // Nothing stats holds names her id any more; her opponents' lines stay.
    let her_id = ana.to_string();
    let history = p.json(&format!("/v1/stats/players/{ben}/matches")).await;
    assert!(!history.to_string().contains(&her_id));
    let pseudonym = history["items"][1]["opponents"][0]["user_id"].as_str().unwrap().to_owned();
    assert_problem(p.get(&format!("/v1/stats/players/{pseudonym}")).await, 404, None).await;
    assert_problem(p.get(&format!("/v1/stats/players/{pseudonym}/matches")).await, 404, None).await;
    for table in ["history", "players", "daily", "people"] {
        let left: i64 = with_db!(&p.db, pool => sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {table} WHERE user_id = $1"))).bind(ana).fetch_one(pool).await)
        .unwrap();
        assert_eq!(left, 0, "{table} still holds her id");
    }
    let bodies: Vec<String> =
        with_db!(&p.db, pool => sqlx::query_scalar("SELECT body FROM journal").fetch_all(pool).await).unwrap();
    assert!(bodies.iter().all(|b| !b.contains(&her_id)), "the journal still names her");
    // Ben's numbers are untouched; he moves up to first with her gone.
    let mut ben_after = p.json(&format!("/v1/stats/players/{ben}")).await;
    assert_eq!((ben_before["modes"][0]["rank"].as_u64(), ben_after["modes"][0]["rank"].as_u64()), (Some(2), Some(1)));
    for v in [&mut ben_before, &mut ben_after] {
        v["modes"][0].as_object_mut().unwrap().remove("rank");
    }
    assert_eq!(ben_after, ben_before);
    // And a rebuild after the erasure gives the same numbers.
    let before = p.lines().await;
    assert_eq!(stats::rebuild(&p.db).await.unwrap().changed, 0);
    assert_eq!(p.lines().await, before);
    // Her export is empty.
    let export: Value = p
        .http
        .get(p.stats.url("/v1/stats/me/export"))
        .bearer_auth(p.issuer.token(ana, &[]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(export["matches"].as_array().unwrap().len(), 0);
}

async fn bad_input_is_refused_and_contradictory_results_are_dead_lettered(db: TestDb) {
    let p = Platform::start(db).await;
    let (ana, ben) = (p.person("Ana").await, p.person("Ben").await);
    p.finish(&duel(ana, ben)).await;

    let anonymous = p.http.get(p.stats.url("/v1/stats/leaderboards/duel")).send().await.unwrap();
    assert_problem(anonymous, 401, None).await;
    assert_problem(p.get("/v1/stats/leaderboards/chess").await, 400, None).await;
    assert_problem(p.get("/v1/stats/players/not-a-uuid").await, 400, None).await;
    assert_problem(p.get(&format!("/v1/stats/players/{}", Uuid::now_v7())).await, 404, None).await;
    for query in ["limit=0", "limit=51", "cursor=bogus"] {
        assert_problem(p.get(&format!("/v1/stats/leaderboards/duel?{query}")).await, 422, None).await;
        assert_problem(p.get(&format!("/v1/stats/players/{ana}/matches?{query}")).await, 422, None).await;
    }
    for days in ["0", "367"] {
        assert_problem(p.get(&format!("/v1/stats/players/{ana}/series?days={days}")).await, 422, None).await;
    }
    assert_problem(p.get(&format!("/v1/stats/players/{ana}/series?mode=golf")).await, 400, None).await;
    // A leaderboard cursor from the history is not a leaderboard cursor.
    let history = p.json(&format!("/v1/stats/players/{ana}/matches?limit=1")).await;
    let cursor = history["next_cursor"].as_str().unwrap();
    assert_problem(p.get(&format!("/v1/stats/leaderboards/duel?cursor={cursor}")).await, 422, None).await;

    // A result whose winner did not play, and one with a player twice:
    // dead-lettered at once, nothing counted.
    let lines = p.lines().await;
    let mut stranger = duel(ana, ben);
    stranger.winner = Uuid::now_v7();
    p.ctx.publish(&stranger).await;
    let mut twice = duel(ana, ben);
    twice.players[1].user_id = ana;
    p.ctx.publish(&twice).await;
    p.eventually("both go to the dead letters", || async { p.count("SELECT count(*) FROM dead_letters").await == 2 })
        .await;
    // Refused on the first try (`max_attempts` is 2 here): retrying cannot help.
    assert_eq!(p.count("SELECT CAST(max(attempts) AS BIGINT) FROM dead_letters").await, 1);
    assert_eq!(p.count("SELECT count(*) FROM journal").await, 1);
    assert_eq!(p.lines().await, lines);
}
