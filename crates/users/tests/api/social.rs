//! Friends and blocks.

use super::*;

kit::backend_tests! {
    async fn friend_requests_go_both_ways_and_end_cleanly(db) {
        let p = Platform::start(db).await;
        let ada = p.signup("Ada").await;
        let bob = p.signup("Bob").await;
        let cy = p.signup("Cy").await;

        let r = p.post("/v1/users/me/friends/requests", &ada.token, Some(json!({"user_id": bob.id}))).await;
        assert_eq!(r.status(), 201);
        let r = p.post("/v1/users/me/friends/requests", &ada.token, Some(json!({"user_id": bob.id}))).await;
        assert_eq!(r.status(), 409);
        let mine: Value = p.get("/v1/users/me/friends/requests", &ada.token).await.json().await.unwrap();
        assert_eq!(mine["outgoing"][0]["user"]["id"], bob.id.to_string());
        let theirs: Value = p.get("/v1/users/me/friends/requests", &bob.token).await.json().await.unwrap();
        assert_eq!(theirs["incoming"][0]["user"]["id"], ada.id.to_string());

        let r = p.post(&format!("/v1/users/me/friends/requests/{}/accept", ada.id), &bob.token, None).await;
        assert_eq!(r.status(), 200);
        let friends: Value = p.get("/v1/users/me/friends", &ada.token).await.json().await.unwrap();
        assert_eq!(friends[0]["id"], bob.id.to_string());
        assert_eq!(friends[0]["online"], false, "not connected to realtime");

        // Asking someone who already asked you makes you friends.
        p.post("/v1/users/me/friends/requests", &cy.token, Some(json!({"user_id": ada.id}))).await;
        let r = p.post("/v1/users/me/friends/requests", &ada.token, Some(json!({"user_id": cy.id}))).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.json::<Value>().await.unwrap()["state"], "friends");

        assert_eq!(p.delete(&format!("/v1/users/me/friends/{}", bob.id), &ada.token).await.status(), 204);
        assert_eq!(p.delete(&format!("/v1/users/me/friends/{}", bob.id), &ada.token).await.status(), 404);
        p.post("/v1/users/me/friends/requests", &bob.token, Some(json!({"user_id": ada.id}))).await;
        assert_eq!(p.post(&format!("/v1/users/me/friends/requests/{}/decline", bob.id), &ada.token, None).await.status(), 204);
        p.post("/v1/users/me/friends/requests", &bob.token, Some(json!({"user_id": ada.id}))).await;
        assert_eq!(p.delete(&format!("/v1/users/me/friends/requests/{}", ada.id), &bob.token).await.status(), 204);
        let left: Value = p.get("/v1/users/me/friends", &ada.token).await.json().await.unwrap();
        assert_eq!(left.as_array().unwrap().len(), 1, "only Cy remains");

        // Every change was published.
        let states: Vec<String> = kit::with_db!(&p.users_db, pool =>
            sqlx::query_scalar("SELECT payload FROM outbox WHERE event_type = 'panal.users.friendship_changed.v1' ORDER BY seq")
                .fetch_all(pool).await).unwrap()
            .into_iter()
            .map(|payload: String| serde_json::from_str::<Value>(&payload).unwrap()["data"]["state"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(states, ["requested", "accepted", "requested", "accepted", "removed", "requested", "declined", "requested", "cancelled"]);
    }

    async fn bad_friend_requests_get_clear_answers(db) {
        let p = Platform::start(db).await;
        let ada = p.signup("Ada").await;
        let bob = p.signup("Bob").await;
        let r = p.post("/v1/users/me/friends/requests", &ada.token, Some(json!({"user_id": ada.id}))).await;
        assert_eq!(r.status(), 422);
        assert_eq!(problem(r).await["detail"], "you cannot send a friend request to yourself");
        let r = p.post("/v1/users/me/friends/requests", &ada.token, Some(json!({"user_id": Uuid::now_v7()}))).await;
        assert_eq!(r.status(), 404);
        let r = p.post("/v1/users/me/friends/requests", &ada.token, Some(json!({}))).await;
        assert_eq!(problem(r).await["errors"][0]["field"], "user_id");
        p.put("/v1/users/me", &bob.token, json!({"privacy": {"friend_requests": "nobody"}})).await;
        let r = p.post("/v1/users/me/friends/requests", &ada.token, Some(json!({"user_id": bob.id}))).await;
        assert_eq!(r.status(), 403);
        let r = p.post(&format!("/v1/users/me/friends/requests/{}/accept", bob.id), &ada.token, None).await;
        assert_eq!(r.status(), 404, "nothing to accept");
    }

    async fn a_block_hides_the_blocker_and_stops_requests(db) {
        let p = Platform::start(db).await;
        let ada = p.signup("Ada").await;
        let troll = p.signup("Troll").await;
        p.post("/v1/users/me/friends/requests", &troll.token, Some(json!({"user_id": ada.id}))).await;
        p.post(&format!("/v1/users/me/friends/requests/{}/accept", troll.id), &ada.token, None).await;

        assert_eq!(p.send(reqwest::Method::PUT, &format!("/v1/users/me/blocks/{}", troll.id), &ada.token, None).await.status(), 204);
        let friends: Value = p.get("/v1/users/me/friends", &ada.token).await.json().await.unwrap();
        assert!(friends.as_array().unwrap().is_empty(), "a block ends the friendship");
        assert_eq!(p.get(&format!("/v1/users/{}", ada.id), &troll.token).await.status(), 404, "the blocked user cannot see the profile");
        let r = p.post("/v1/users/me/friends/requests", &troll.token, Some(json!({"user_id": ada.id}))).await;
        assert_eq!(r.status(), 403);
        let found: Value = p.get("/v1/users?q=ada", &troll.token).await.json().await.unwrap();
        assert!(found["items"].as_array().unwrap().is_empty(), "nor find it");
        let r = p.post("/v1/users/me/friends/requests", &ada.token, Some(json!({"user_id": troll.id}))).await;
        assert_eq!(r.status(), 409, "the blocker must unblock first");
        let blocks: Value = p.get("/v1/users/me/blocks", &ada.token).await.json().await.unwrap();
        assert_eq!(blocks[0]["user"]["id"], troll.id.to_string());
        let r = p.send(reqwest::Method::PUT, &format!("/v1/users/me/blocks/{}", ada.id), &ada.token, None).await;
        assert_eq!(r.status(), 422, "blocking oneself");

        let published: i64 = kit::with_db!(&p.users_db, pool =>
            sqlx::query_scalar("SELECT count(*) FROM outbox WHERE event_type = 'panal.users.user_blocked.v1'").fetch_one(pool).await).unwrap();
        assert_eq!(published, 1, "chat and game learn of the block");

        assert_eq!(p.delete(&format!("/v1/users/me/blocks/{}", troll.id), &ada.token).await.status(), 204);
        assert_eq!(p.get(&format!("/v1/users/{}", ada.id), &troll.token).await.status(), 200);
    }

    async fn administrators_list_view_ban_and_unban(db) {
        let p = Platform::start(db).await;
        let mut banned_events = p.ctx.watch::<contracts::users::UserBanned>().await;
        let root = p.signup("Root").await;
        let user = p.signup("Mallory").await;
        assert_eq!(p.get("/v1/users/admin/users", &user.token).await.status(), 403);
        let admin = p.make_admin(&root).await;
        let admin_id = admin.id;

        let all: Value = p.get("/v1/users/admin/users?q=mal", &admin.token).await.json().await.unwrap();
        assert_eq!(all["items"][0]["id"], user.id.to_string());
        let r = p.post(&format!("/v1/users/admin/users/{}/ban", user.id), &admin.token, Some(json!({"reason": ""}))).await;
        assert_eq!(r.status(), 422);
        let r = p.post(&format!("/v1/users/admin/users/{}/ban", user.id), &admin.token, Some(json!({"reason": "spam"}))).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.json::<Value>().await.unwrap()["status"], "banned");
        assert_eq!(p.get(&format!("/v1/users/{}", user.id), &admin.token).await.status(), 404, "banned profiles disappear");
        let banned: Value = p.get("/v1/users/admin/users?status=banned", &admin.token).await.json().await.unwrap();
        assert_eq!(banned["items"].as_array().unwrap().len(), 1);

        // Auth learns of it from user_banned (walkthrough.rs follows it there).
        let (envelope, event) = banned_events.next().await;
        assert_eq!((event.user_id, event.banned_by, event.reason.as_str()), (user.id, admin_id, "spam"));
        assert_eq!(envelope.subject, user.id.to_string());
        let r = p.post(&format!("/v1/users/admin/users/{}/unban", user.id), &admin.token, None).await;
        assert_eq!(r.json::<Value>().await.unwrap()["status"], "active");
    }
}

kit::backend_tests! {
    async fn friends_are_online_while_a_realtime_replica_vouches_for_them(db) {
        use contracts::realtime::{PresenceChanged, PresenceSnapshot};
        let p = Platform::start(db).await;
        let ada = p.signup("Ada").await;
        let bob = p.signup("Bob").await;
        p.post("/v1/users/me/friends/requests", &bob.token, Some(json!({"user_id": ada.id}))).await;
        p.post(&format!("/v1/users/me/friends/requests/{}/accept", bob.id), &ada.token, None).await;
        let online = |v: Value| v[0]["online"].as_bool();
        let change = |replica: &str, on: bool, at: chrono::DateTime<Utc>| PresenceChanged {
            user_id: ada.id,
            replica: replica.to_owned(),
            online: on,
            at,
            valid_secs: 150,
        };
        let friends = || async { p.get("/v1/users/me/friends", &bob.token).await.json::<Value>().await.unwrap() };
        assert_eq!(online(friends().await), Some(false));

        // Bob is told on his channel when Ada's status changes, and only then.
        let mut told_bob = p.ctx.watch::<contracts::realtime::Publication>().await;
        async fn told(
            published: &mut kit::testing::Published<contracts::realtime::Publication>,
            to: uuid::Uuid,
            about: uuid::Uuid,
        ) -> Option<bool> {
            let (_, publication) = published.next().await;
            assert_eq!(publication.channel, format!("user:{to}"));
            assert!(publication.ephemeral);
            assert_eq!(publication.data["type"], "presence");
            assert_eq!(publication.data["user_id"], about.to_string());
            publication.data["online"].as_bool()
        }
        let (bob_id, ada_id) = (bob.id, ada.id);
        macro_rules! next_told {
            () => {
                told(&mut told_bob, bob_id, ada_id).await
            };
        }

        // Ada connects to replica r1, then to r2: online while either vouches.
        let t0 = Utc::now();
        p.ctx.publish(&change("r1", true, t0)).await;
        eventually("online after connecting", || async { online(friends().await) == Some(true) }).await;
        p.ctx.publish(&change("r2", true, t0)).await;
        p.ctx.publish(&change("r1", false, t0 + chrono::Duration::seconds(1))).await;
        // An older snapshot from r1 arriving late does not revive r1's "offline".
        p.ctx.publish(&PresenceSnapshot { replica: "r1".into(), online: vec![ada.id], at: t0, valid_secs: 150 }).await;
        p.ctx.publish(&change("r2", false, t0 + chrono::Duration::seconds(2))).await;
        eventually("offline once no replica vouches", || async { online(friends().await) == Some(false) }).await;
        // Online, then offline: r2 joining and r1 leaving changed nothing Bob sees.
        assert_eq!(next_told!(), Some(true));
        assert_eq!(next_told!(), Some(false));

        // A replica that stops renewing stops vouching when its word expires.
        let old = Utc::now() - chrono::Duration::seconds(200);
        p.ctx.publish(&PresenceSnapshot { replica: "r3".into(), online: vec![ada.id], at: old, valid_secs: 150 }).await;
        p.ctx.publish(&PresenceSnapshot { replica: "r4".into(), online: vec![ada.id], at: Utc::now(), valid_secs: 150 }).await;
        eventually("online from r4's snapshot", || async { online(friends().await) == Some(true) }).await;
        let seen: Value = p.get(&format!("/v1/users/{}", ada.id), &bob.token).await.json().await.unwrap();
        assert_eq!(seen["online"], true);
        assert_eq!(next_told!(), Some(true), "online again from r4's snapshot");
        // Shown only to whom Ada shows her status: no word of her going
        // offline while she shows it to nobody, then her next change is told.
        p.put("/v1/users/me", &ada.token, json!({"privacy": {"online_status": "nobody"}})).await;
        assert_eq!(online(friends().await), None);
        p.ctx.publish(&change("r4", false, Utc::now())).await;
        // Ada sees her own status whatever her settings: offline, handled.
        let own = || async { p.get(&format!("/v1/users/{}", ada.id), &ada.token).await.json::<Value>().await.unwrap() };
        eventually("offline, as Ada sees herself", || async { own().await["online"] == false }).await;
        p.put("/v1/users/me", &ada.token, json!({"privacy": {"online_status": "friends"}})).await;
        assert_eq!(online(friends().await), Some(false));
        p.ctx.publish(&change("r5", true, Utc::now())).await;
        assert_eq!(next_told!(), Some(true), "the change after she shows it again");
    }
}
