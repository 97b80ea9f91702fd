//! Roles, the admin API and `panal admin create`.

use serde_json::{Value, json};

use super::*;

async fn admin_session(app: &TestApp, email: &str) -> Tokens {
    app.register(email).await;
    app.make_admin(email).await;
    tokens_of(app.login(email, PASSWORD).await).await
}

kit::backend_tests! {
    async fn only_administrators_reach_the_admin_api(db) {
        let app = TestApp::spawn(&db).await;
        let user = app.signed_in("ada@example.com").await;
        let r = app.get("/v1/auth/admin/accounts", &user.access).await;
        assert_eq!(r.status(), 403);
        assert_eq!(app.http.get(app.url("/v1/auth/admin/accounts")).send().await.unwrap().status(), 401);

        // A token still carrying `admin` after the role was taken away is refused.
        let admin = admin_session(&app, "root@example.com").await;
        let other = admin_session(&app, "other@example.com").await;
        let root_id = app.user_id("root@example.com").await;
        let r = app.http.put(app.url(&format!("/v1/auth/admin/accounts/{root_id}/roles"))).bearer_auth(&other.access)
            .json(&json!({"roles": ["user"]})).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(app.get("/v1/auth/admin/accounts", &admin.access).await.status(), 401, "removing a role ends the sessions");
    }

    async fn accounts_are_listed_searched_and_paged(db) {
        let app = TestApp::spawn(&db).await;
        let admin = admin_session(&app, "root@example.com").await;
        for n in 0..5 {
            app.post("/v1/auth/register", json!({"email": format!("player{n}@example.com"), "password": PASSWORD, "display_name": format!("Player_{n}")})).await;
        }
        let page: Value = app.get("/v1/auth/admin/accounts?limit=4", &admin.access).await.json().await.unwrap();
        assert_eq!(page["items"].as_array().unwrap().len(), 4);
        let next = page["next"].as_str().unwrap();
        let rest: Value = app.get(&format!("/v1/auth/admin/accounts?limit=4&after={next}"), &admin.access).await.json().await.unwrap();
        assert_eq!(rest["items"].as_array().unwrap().len(), 2);
        assert!(rest["next"].is_null());

        let found: Value = app.get("/v1/auth/admin/accounts?q=PLAYER3", &admin.access).await.json().await.unwrap();
        assert_eq!(found["items"].as_array().unwrap().len(), 1);
        assert_eq!(found["items"][0]["email"], "player3@example.com");
        // LIKE wildcards are matched literally.
        let none: Value = app.get("/v1/auth/admin/accounts?q=%25", &admin.access).await.json().await.unwrap();
        assert_eq!(none["items"].as_array().unwrap().len(), 0);
        let by_name: Value = app.get("/v1/auth/admin/accounts?q=r_4", &admin.access).await.json().await.unwrap();
        assert_eq!(by_name["items"][0]["display_name"], "Player_4");
        let admins: Value = app.get("/v1/auth/admin/accounts?role=admin", &admin.access).await.json().await.unwrap();
        assert_eq!(admins["items"].as_array().unwrap().len(), 1);
        assert_eq!(admins["items"][0]["roles"], json!(["admin", "user"]));

        for bad in ["limit=0", "limit=101", "role=root", "sort=name"] {
            let r = app.get(&format!("/v1/auth/admin/accounts?{bad}"), &admin.access).await;
            assert_eq!(r.status(), if bad == "sort=name" { 400 } else { 422 }, "{bad}");
        }
    }

    async fn roles_change_reach_the_token_and_the_last_admin_stays(db) {
        let app = TestApp::spawn(&db).await;
        let admin = admin_session(&app, "root@example.com").await;
        let ada = app.signed_in("ada@example.com").await;
        let ada_id = app.user_id("ada@example.com").await;
        let put = |id: Uuid, roles: Value| {
            app.http.put(app.url(&format!("/v1/auth/admin/accounts/{id}/roles"))).bearer_auth(&admin.access).json(&json!({"roles": roles})).send()
        };
        let r = put(ada_id, json!(["user", "moderator"])).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.json::<Value>().await.unwrap()["roles"], json!(["moderator", "user"]));
        // Adding a role keeps the sessions; the next token carries it.
        let next = tokens_of(app.refresh(&ada.refresh).await).await;
        let (_, _) = ids(&next);
        let payload: Value = {
            use base64::Engine;
            serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(next.access.split('.').nth(1).unwrap()).unwrap()).unwrap()
        };
        assert_eq!(payload["roles"], json!(["moderator", "user"]));

        for (roles, status) in [(json!(["moderator"]), 422), (json!(["user", "root"]), 422), (json!("user"), 422)] {
            assert_eq!(put(ada_id, roles.clone()).await.unwrap().status(), status, "{roles}");
        }
        assert_eq!(put(Uuid::now_v7(), json!(["user"])).await.unwrap().status(), 404);
        let root_id = app.user_id("root@example.com").await;
        let r = put(root_id, json!(["user"])).await.unwrap();
        assert_eq!(r.status(), 409, "the last administrator keeps the role");
        let changed: Vec<String> = kit::with_db!(&app.db, pool => sqlx::query_scalar("SELECT payload FROM outbox WHERE event_type = 'panal.auth.role_changed.v1' ORDER BY seq").fetch_all(pool).await).unwrap();
        let last: Value = serde_json::from_str(changed.last().unwrap()).unwrap();
        assert_eq!(last["data"]["roles"], json!(["moderator", "user"]));
        assert_eq!(last["data"]["changed_by"], root_id.to_string());
    }

    async fn disabling_ends_every_session_and_enabling_lets_them_back(db) {
        let app = TestApp::spawn(&db).await;
        let admin = admin_session(&app, "root@example.com").await;
        let ada = app.signed_in("ada@example.com").await;
        let ada_id = app.user_id("ada@example.com").await;
        let r = app.post_as(&format!("/v1/auth/admin/accounts/{ada_id}/disable"), &admin.access, json!({})).await;
        assert_eq!(r.status(), 200);
        assert!(r.json::<Value>().await.unwrap()["disabled_at"].is_string());
        assert_eq!(app.refresh(&ada.refresh).await.status(), 401);
        assert_eq!(app.me(&ada.access).await.status(), 401);
        assert_eq!(app.login("ada@example.com", PASSWORD).await.status(), 403);
        let kinds: Vec<String> = kit::with_db!(&app.db, pool => sqlx::query_scalar("SELECT event_type FROM outbox WHERE aggregate_id = $1 ORDER BY seq").bind(ada_id.to_string()).fetch_all(pool).await).unwrap();
        assert!(kinds.ends_with(&["panal.auth.user_disabled.v1".to_owned(), "panal.auth.session_revoked.v1".to_owned()]), "{kinds:?}");

        let r = app.post_as(&format!("/v1/auth/admin/accounts/{ada_id}/enable"), &admin.access, json!({})).await;
        assert_eq!(r.status(), 200);
        assert_eq!(app.login("ada@example.com", PASSWORD).await.status(), 200);

        let root_id = app.user_id("root@example.com").await;
        assert_eq!(app.post_as(&format!("/v1/auth/admin/accounts/{root_id}/disable"), &admin.access, json!({})).await.status(), 409);
        let view: Value = app.get(&format!("/v1/auth/admin/accounts/{ada_id}"), &admin.access).await.json().await.unwrap();
        assert!(view["disabled_at"].is_null());
        assert_eq!(view["two_factor_enabled"], false);
    }

    async fn the_first_administrator_comes_from_the_command_line(db) {
        let app = TestApp::spawn(&db).await;
        let config = kit::config::Config::from_toml("").unwrap();
        let e = auth::ops::create_admin(&app.db, &config, "root@example.com", "Root", "password123").await.unwrap_err();
        assert!(e.to_string().contains("most common"), "{e}");
        let id = auth::ops::create_admin(&app.db, &config, "root@example.com", "Root", PASSWORD).await.unwrap();
        let t = tokens_of(app.login("root@example.com", PASSWORD).await).await;
        let me: Value = app.me(&t.access).await.json().await.unwrap();
        assert_eq!(me["id"], id.to_string());
        assert_eq!(me["roles"], json!(["admin", "user"]));
        assert_eq!(me["email_verified"], true);
        assert!(auth::ops::create_admin(&app.db, &config, "root@example.com", "Root", PASSWORD).await.is_err());
        // No account is an administrator by default.
        let fresh = TestDb::sqlite().await;
        let other = TestApp::spawn(&fresh).await;
        let n: i64 = kit::with_db!(&other.db, pool => sqlx::query_scalar("SELECT count(*) FROM user_roles WHERE role = 'admin'").fetch_one(pool).await).unwrap();
        assert_eq!(n, 0);
    }
}
