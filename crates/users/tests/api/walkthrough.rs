//! Walk-throughs across services: auth, users and the gateway together.
//! Auth follows a ban; the GDPR export gathers every service's part, and
//! erasure leaves nothing personal in any of them.

use super::*;

/// Every text value in every table of `db`.
async fn all_text(db: &Db) -> String {
    let tables: Vec<String> = match db {
        Db::Sqlite(_) => kit::with_db!(db, pool => sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'").fetch_all(pool).await).unwrap(),
        Db::Postgres(_) => kit::with_db!(db, pool => sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'").fetch_all(pool).await).unwrap(),
    };
    let mut out = String::new();
    for table in tables {
        let sql = match db {
            Db::Sqlite(_) => {
                format!("SELECT COALESCE(json_group_array(json_object('row', quote(t.rowid))), '') FROM \"{table}\" t")
            }
            Db::Postgres(_) => format!("SELECT COALESCE(json_agg(t)::text, '') FROM \"{table}\" t"),
        };
        if matches!(db, Db::Sqlite(_)) {
            // SQLite: dump every column of every row as text.
            let cols: Vec<String> = kit::with_db!(db, pool => sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT name FROM pragma_table_info('{table}')"))).fetch_all(pool).await).unwrap();
            for col in cols {
                let values: Vec<Option<Vec<u8>>> = kit::with_db!(db, pool => sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT CAST(\"{col}\" AS BLOB) FROM \"{table}\""))).fetch_all(pool).await).unwrap();
                for v in values.into_iter().flatten() {
                    out.push_str(&String::from_utf8_lossy(&v));
                    out.push('\n');
                }
            }
            let _ = sql;
        } else {
            let dump: Option<String> =
                kit::with_db!(db, pool => sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(pool).await).unwrap();
            out.push_str(&dump.unwrap_or_default());
        }
    }
    out
}

kit::backend_tests! {
    async fn the_export_holds_what_users_and_auth_know(db) {
        let p = Platform::walkthrough(db).await;
        let ada = p.signup("Ada").await;
        let bob = p.signup("Bob").await;
        p.put("/v1/users/me", &ada.token, json!({"bio": "Engines."})).await;
        p.post("/v1/users/me/friends/requests", &ada.token, Some(json!({"user_id": bob.id}))).await;
        let r = p.get("/v1/users/me/export", &ada.token).await;
        assert_eq!(r.status(), 200);
        assert!(r.headers()["content-disposition"].to_str().unwrap().contains("attachment"));
        let archive: Value = r.json().await.unwrap();
        assert_eq!(archive["format"], "panal-export/1");
        assert_eq!(archive["services"]["users"]["profile"]["bio"], "Engines.");
        assert_eq!(archive["services"]["users"]["friend_requests"][0]["direction"], "outgoing");
        assert_eq!(archive["services"]["auth"]["account"]["email"], ada.email);
        assert!(!archive["services"]["auth"]["sessions"].as_array().unwrap().is_empty());
    }

    async fn erasure_leaves_nothing_personal_in_users_or_auth(db) {
        let p = Platform::walkthrough(db).await;
        let ada = p.signup("Adelaide").await;
        let bob = p.signup("Bob").await;
        p.put("/v1/users/me", &ada.token, json!({"bio": "Loves-Analytical-Engines", "timezone": "Europe/London"})).await;
        p.upload(&ada.token, png(64, 64), "me.png").await;
        p.post("/v1/users/me/friends/requests", &ada.token, Some(json!({"user_id": bob.id}))).await;
        p.http.post(p.url("/v1/auth/login")).header("user-agent", "Adelaide-Phone/1.0")
            .json(&json!({"email": ada.email, "password": PASSWORD})).send().await.unwrap();
        let avatar_dir = p.avatars.0.join("avatars").join(ada.id.to_string());
        assert!(avatar_dir.exists());

        // An old sign-in is not enough.
        let stale = p.old_token(&ada, chrono::Duration::minutes(20)).await;
        let r = p.delete("/v1/users/me", &stale).await;
        kit::testing::assert_problem(r, 401, Some("login-required")).await;

        assert_eq!(p.delete("/v1/users/me", &ada.token).await.status(), 202);
        eventually("auth erased the account", || async {
            p.http.post(p.url("/v1/auth/login")).json(&json!({"email": ada.email, "password": PASSWORD})).send().await.unwrap().status() == 401
        }).await;
        assert_eq!(p.get("/v1/users/me", &ada.token).await.status(), 401);
        assert_eq!(p.get(&format!("/v1/users/{}", ada.id), &bob.token).await.status(), 404);
        let requests: Value = p.get("/v1/users/me/friends/requests", &bob.token).await.json().await.unwrap();
        assert!(requests["incoming"].as_array().unwrap().is_empty());
        let files = std::fs::read_dir(&avatar_dir).map(|d| d.count()).unwrap_or(0);
        assert_eq!(files, 0, "the avatar files are deleted");

        let users_text = all_text(&p.users_db).await;
        let auth_text = all_text(p.auth_db()).await;
        for personal in ["Adelaide", "Loves-Analytical-Engines", "Europe/London", ada.email.as_str(), "Adelaide-Phone"] {
            assert!(!users_text.contains(personal), "users still holds {personal:?}");
            assert!(!auth_text.contains(personal), "auth still holds {personal:?}");
        }
        // Bob is untouched.
        assert_eq!(p.get("/v1/users/me", &bob.token).await.status(), 200);
    }

    async fn auth_follows_a_ban(db) {
        let p = Platform::walkthrough(db).await;
        let root = p.signup("Root").await;
        let user = p.signup("Mallory").await;
        let admin = p.make_admin(&root).await;
        let r = p.post(&format!("/v1/users/admin/users/{}/ban", user.id), &admin.token, Some(json!({"reason": "spam"}))).await;
        assert_eq!(r.status(), 200);
        // Auth disables the account when user_banned reaches it.
        eventually("auth refuses the banned user's sign-in", || async {
            p.http.post(p.url("/v1/auth/login")).json(&json!({"email": user.email, "password": PASSWORD})).send().await.unwrap().status() == 403
        }).await;
        assert_eq!(p.get("/v1/auth/me", &user.token).await.status(), 401, "and ends the sessions");
    }
}
