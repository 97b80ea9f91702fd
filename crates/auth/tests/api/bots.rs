//! Bots: created by a service client with `bots:act`, acted for by it alone,
//! their tokens signed with the `bot` role no account can hold.

use serde_json::{Value, json};

use super::*;

/// A client token with `scopes`.
async fn client_token(app: &TestApp, name: &str, scopes: &[&str]) -> String {
    let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
    let (id, secret) = auth::ops::create_client(&app.db, name, &scopes).await.unwrap();
    let r = app
        .http
        .post(app.url("/v1/auth/token"))
        .basic_auth(&id, Some(&secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned()
}

fn claims_of(token: &str) -> Value {
    use base64::Engine;
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token.split('.').nth(1).unwrap()).unwrap(),
    )
    .unwrap()
}

kit::backend_tests! {
    async fn a_bot_is_created_and_played_by_its_client_alone(db) {
        let app = TestApp::spawn(&db).await;
        let ai = client_token(&app, "ai", &["bots:act"]).await;
        let r = app.post_as("/v1/auth/bots", &ai, json!({"name": "Marvin (hard)"})).await;
        assert_eq!(r.status(), 201);
        let bot: Value = r.json().await.unwrap();
        let id = bot["id"].as_str().unwrap().to_owned();
        assert_eq!(bot["name"], "Marvin (hard)");

        let r = app.post_as(&format!("/v1/auth/bots/{id}/token"), &ai, json!({})).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["cache-control"], "no-store");
        let token: Value = r.json().await.unwrap();
        let access = token["access_token"].as_str().unwrap();
        let claims = claims_of(access);
        assert_eq!(claims["sub"], id.as_str());
        assert_eq!(claims["roles"], json!(["bot"]));
        assert!(claims["sid"].is_string(), "a session, as realtime expects");
        assert!(claims.get("scope").is_none(), "a bot is a player, not a service client");
        // A bot's token cannot make bots.
        assert_eq!(app.post_as("/v1/auth/bots", access, json!({"name": "Other"})).await.status(), 403);

        // Another client with the scope cannot act for this client's bot,
        // nor anyone for a person.
        let other = client_token(&app, "other", &["bots:act"]).await;
        assert_eq!(app.post_as(&format!("/v1/auth/bots/{id}/token"), &other, json!({})).await.status(), 404);
        app.signed_in("ada@example.com").await;
        let ada = app.user_id("ada@example.com").await;
        assert_eq!(app.post_as(&format!("/v1/auth/bots/{ada}/token"), &ai, json!({})).await.status(), 404);
        // Without the scope, nothing.
        let plain = client_token(&app, "plain", &["users:read"]).await;
        assert_eq!(app.post_as("/v1/auth/bots", &plain, json!({"name": "Marvin"})).await.status(), 403);
        assert_eq!(app.post_as(&format!("/v1/auth/bots/{id}/token"), &plain, json!({})).await.status(), 403);
        // A person's token is not a service client's.
        let person = app.login("ada@example.com", PASSWORD).await.json::<Value>().await.unwrap();
        let person = person["access_token"].as_str().unwrap();
        assert_eq!(app.post_as("/v1/auth/bots", person, json!({"name": "Marvin"})).await.status(), 403);
        // Names follow the display-name rules.
        for bad in ["", "Аda the bot", &"x".repeat(33)] {
            let r = app.post_as("/v1/auth/bots", &ai, json!({"name": bad})).await;
            assert_eq!(r.status(), 422, "{bad:?}");
        }
    }

    async fn no_account_can_be_given_the_bot_role(db) {
        let app = TestApp::spawn(&db).await;
        app.register("root@example.com").await;
        app.make_admin("root@example.com").await;
        let admin = tokens_of(app.login("root@example.com", PASSWORD).await).await;
        app.register("ada@example.com").await;
        let ada = app.user_id("ada@example.com").await;
        let r = app.http.put(app.url(&format!("/v1/auth/admin/accounts/{ada}/roles"))).bearer_auth(&admin.access)
            .json(&json!({"roles": ["user", "bot"]})).send().await.unwrap();
        assert_eq!(r.status(), 422);
    }
}
