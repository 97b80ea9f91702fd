//! Profiles: creation from auth's event, reading, updating, names, privacy, search.

use super::*;

kit::backend_tests! {
    async fn a_profile_is_created_once_from_user_registered(db) {
        let p = Platform::start(db).await;
        let ada = p.signup("Ada").await;
        let me: Value = p.get("/v1/users/me", &ada.token).await.json().await.unwrap();
        assert_eq!(me["display_name"], "Ada");
        assert_eq!(me["privacy"], json!({"profile": "everyone", "online_status": "friends", "friend_requests": "everyone"}));
        assert!(me["avatar_url"].as_str().unwrap().starts_with(&format!("/v1/users/{}/avatar?v=", ada.id)));

        // The same event delivered again changes nothing.
        p.ctx.publish(&UserRegistered { user_id: ada.id, email: ada.email.clone(), display_name: "Ada 2".to_owned(), registered_at: Utc::now() }).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let n: i64 = kit::with_db!(&p.users_db, pool => sqlx::query_scalar("SELECT count(*) FROM profiles").fetch_one(pool).await).unwrap();
        assert_eq!(n, 1);
    }

    async fn a_taken_name_gets_a_number_at_signup_and_a_409_on_change(db) {
        let p = Platform::start(db).await;
        let first = p.signup("Grace").await;
        let second = p.signup("grace").await;
        let me: Value = p.get("/v1/users/me", &second.token).await.json().await.unwrap();
        assert_eq!(me["display_name"], "grace 2", "a profile is never lost to a name clash");

        for taken in ["GRACE", "Ｇｒａｃｅ", "grace "] {
            let r = p.put("/v1/users/me", &second.token, json!({"display_name": taken})).await;
            assert_eq!(r.status(), 409, "{taken}");
        }
        // Cyrillic "а" looks like Latin "a": the same name to people, refused.
        let r = p.put("/v1/users/me", &second.token, json!({"display_name": "Gr\u{0430}ce"})).await;
        assert_eq!(r.status(), 422, "mixed scripts");
        let r = p.put("/v1/users/me", &first.token, json!({"display_name": "Grace"})).await;
        assert_eq!(r.status(), 200, "keeping one's own name is not a clash");
    }

    async fn updates_are_validated_field_by_field(db) {
        let p = Platform::start(db).await;
        let ada = p.signup("Ada").await;
        let r = p.put("/v1/users/me", &ada.token, json!({
            "display_name": "Ad\u{200B}a", "bio": "x".repeat(501), "locale": "en_US", "timezone": "../etc/passwd"
        })).await;
        assert_eq!(r.status(), 422);
        let body = problem(r).await;
        let fields: Vec<&str> = body["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
        assert_eq!(fields, ["display_name", "bio", "locale", "timezone"]);

        let r = p.put("/v1/users/me", &ada.token, json!({"display_name": "Ada L", "bio": "Engines.", "locale": "en-GB", "timezone": "Europe/London"})).await;
        assert_eq!(r.status(), 200);
        let r = p.put("/v1/users/me", &ada.token, json!({"locale": null})).await;
        let me: Value = r.json().await.unwrap();
        assert_eq!((me["display_name"].as_str(), me["bio"].as_str(), me["locale"].as_str(), me["timezone"].as_str()),
            (Some("Ada L"), Some("Engines."), None, Some("Europe/London")), "omitted fields stay, null clears");
        let r = p.put("/v1/users/me", &ada.token, json!({"role": "admin"})).await;
        assert_eq!(r.status(), 422, "unknown fields are refused");
    }

    async fn others_see_only_what_the_owner_shares(db) {
        let p = Platform::start(db).await;
        let ada = p.signup("Ada").await;
        let bob = p.signup("Bob").await;
        p.put("/v1/users/me", &ada.token, json!({"bio": "Engines.", "privacy": {"profile": "friends"}})).await;
        let seen: Value = p.get(&format!("/v1/users/{}", ada.id), &bob.token).await.json().await.unwrap();
        assert_eq!(seen["display_name"], "Ada");
        assert!(seen.get("bio").is_none(), "{seen}");
        assert!(seen.get("last_seen_at").is_none(), "online status is for friends by default");

        p.post("/v1/users/me/friends/requests", &bob.token, Some(json!({"user_id": ada.id}))).await;
        p.post(&format!("/v1/users/me/friends/requests/{}/accept", bob.id), &ada.token, None).await;
        let seen: Value = p.get(&format!("/v1/users/{}", ada.id), &bob.token).await.json().await.unwrap();
        assert_eq!(seen["bio"], "Engines.");
        assert_eq!(seen["online"], false, "not connected to realtime");
        assert!(seen["last_seen_at"].is_string());
        assert_eq!(seen["relationship"]["friends"], true);

        let r = p.get(&format!("/v1/users/{}", Uuid::now_v7()), &bob.token).await;
        assert_eq!(r.status(), 404);
        let r = p.get("/v1/users/not-a-uuid", &bob.token).await;
        assert_eq!(r.status(), 400);
        assert_eq!(problem(r).await["type"], "urn:panal:problem:invalid-path");
    }

    async fn search_finds_by_prefix_page_by_page_within_bounds(db) {
        let p = Platform::start(db).await;
        let viewer = p.signup("Viewer").await;
        for i in 0..7 {
            p.signup(&format!("Marie {i}")).await;
        }
        p.signup("Mario").await;
        let page: Value = p.get("/v1/users?q=MARIE&limit=3", &viewer.token).await.json().await.unwrap();
        let names: Vec<&str> = page["items"].as_array().unwrap().iter().map(|i| i["display_name"].as_str().unwrap()).collect();
        assert_eq!(names, ["Marie 0", "Marie 1", "Marie 2"]);
        let mut seen = names.len();
        let mut cursor = page["next_cursor"].as_str().unwrap().to_owned();
        loop {
            let page: Value = p.get(&format!("/v1/users?q=marie&limit=3&cursor={cursor}"), &viewer.token).await.json().await.unwrap();
            seen += page["items"].as_array().unwrap().len();
            match page["next_cursor"].as_str() {
                Some(c) => cursor = c.to_owned(),
                None => break,
            }
        }
        assert_eq!(seen, 7);
        let all: Value = p.get("/v1/users?q=mari", &viewer.token).await.json().await.unwrap();
        assert_eq!(all["items"].as_array().unwrap().len(), 8);

        let r = p.get("/v1/users?q=m&limit=51", &viewer.token).await;
        assert_eq!(r.status(), 422);
        assert_eq!(problem(r).await["errors"][0]["field"], "limit");
        let r = p.get("/v1/users?q=m&cursor=garbage", &viewer.token).await;
        assert_eq!(problem(r).await["errors"][0]["field"], "cursor");
        let r = p.get("/v1/users?q=%25", &viewer.token).await;
        assert_eq!(r.status(), 200);
        let none: Value = r.json().await.unwrap();
        assert!(none["items"].as_array().unwrap().is_empty(), "% is a character, not a wildcard");
        let r = p.get("/v1/users?page=2", &viewer.token).await;
        assert_eq!(r.status(), 400, "unknown query parameters are refused");
    }
}
