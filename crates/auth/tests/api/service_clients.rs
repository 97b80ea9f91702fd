//! Service clients (client credentials), introspection, revocation and key
//! rotation.

use serde_json::{Value, json};

use super::*;

async fn form(app: &TestApp, path: &str, basic: Option<(&str, &str)>, fields: &[(&str, &str)]) -> reqwest::Response {
    let mut req = app.http.post(app.url(path)).form(fields);
    if let Some((id, secret)) = basic {
        req = req.basic_auth(id, Some(secret));
    }
    req.send().await.unwrap()
}

/// The `error` of an RFC 6749 §5.2 answer, after checking its shape.
async fn oauth_error(r: reqwest::Response) -> String {
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.headers()["cache-control"], "no-store");
    if r.status() == 401 {
        assert!(r.headers()["www-authenticate"].to_str().unwrap().starts_with("Basic"));
    }
    let body: Value = r.json().await.unwrap();
    assert!(body["error_description"].is_string(), "{body}");
    body["error"].as_str().unwrap().to_owned()
}

kit::backend_tests! {
    async fn a_service_client_gets_a_scoped_token(db) {
        let app = TestApp::spawn(&db).await;
        let (id, secret) = auth::ops::create_client(&app.db, "ledger", &["users:read".into(), "ledger:write".into()]).await.unwrap();
        let stored: Vec<u8> = kit::with_db!(&app.db, pool => sqlx::query_scalar("SELECT secret_hash FROM service_clients").fetch_one(pool).await).unwrap();
        assert_eq!(stored, auth::tokens::hash_refresh_token(&secret), "only the hash is stored");

        let r = form(&app, "/v1/auth/token", Some((&id, &secret)), &[("grant_type", "client_credentials"), ("scope", "users:read")]).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["cache-control"], "no-store");
        let t: Value = r.json().await.unwrap();
        assert_eq!(t["scope"], "users:read");
        assert_eq!(t["token_type"], "Bearer");
        let access = t["access_token"].as_str().unwrap();
        use base64::Engine;
        let claims: Value = serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(access.split('.').nth(1).unwrap()).unwrap()).unwrap();
        assert_eq!(claims["client_id"], id.as_str());
        assert_eq!(claims["sub"], id.as_str());
        assert!(claims.get("sid").is_none());
        // A service token is not a user: user endpoints refuse it.
        assert_eq!(app.me(access).await.status(), 401);

        // Secret in the form works too; all scopes by default.
        let r = form(&app, "/v1/auth/token", None, &[("grant_type", "client_credentials"), ("client_id", &id), ("client_secret", &secret)]).await;
        assert_eq!(r.json::<Value>().await.unwrap()["scope"], "users:read ledger:write");

        for (fields, basic, status, error) in [
            (vec![("grant_type", "client_credentials"), ("scope", "admin")], Some((id.as_str(), secret.as_str())), 400, "invalid_scope"),
            (vec![("grant_type", "password")], Some((id.as_str(), secret.as_str())), 400, "unsupported_grant_type"),
            (vec![("grant_type", "client_credentials")], Some((id.as_str(), "wrong")), 401, "invalid_client"),
            (vec![("grant_type", "client_credentials")], None, 401, "invalid_client"),
            (vec![], Some((id.as_str(), secret.as_str())), 400, "invalid_request"),
        ] {
            let r = form(&app, "/v1/auth/token", basic, &fields).await;
            assert_eq!(r.status(), status, "{fields:?}");
            assert_eq!(oauth_error(r).await, error, "{fields:?}");
        }
        // RFC 6749 §5.2 and §2.3: a JSON body, no body, or two ways of
        // authenticating are all `invalid_request`, answered in OAuth's shape.
        let r = app.post("/v1/auth/token", json!({"grant_type": "client_credentials"})).await;
        assert_eq!(r.status(), 400, "the token endpoint speaks forms");
        assert_eq!(oauth_error(r).await, "invalid_request");
        let r = app.http.post(app.url("/v1/auth/token")).basic_auth(&id, Some(&secret)).send().await.unwrap();
        assert_eq!(r.status(), 400, "no body at all");
        assert_eq!(oauth_error(r).await, "invalid_request");
        let two = [("grant_type", "client_credentials"), ("client_id", id.as_str()), ("client_secret", secret.as_str())];
        let r = form(&app, "/v1/auth/token", Some((&id, &secret)), &two).await;
        assert_eq!(r.status(), 400, "Basic and the form at once");
        assert_eq!(oauth_error(r).await, "invalid_request");

        assert!(auth::ops::disable_client(&app.db, &id).await.unwrap());
        let r = form(&app, "/v1/auth/token", Some((&id, &secret)), &[("grant_type", "client_credentials")]).await;
        assert_eq!(r.status(), 401, "a disabled client gets no token");
    }

    async fn introspection_tells_live_tokens_from_dead_ones(db) {
        let app = TestApp::spawn(&db).await;
        let (id, secret) = auth::ops::create_client(&app.db, "chat", &["users:read".into()]).await.unwrap();
        let user = app.signed_in("ada@example.com").await;
        let ask = |token: String| {
            let (id, secret) = (id.clone(), secret.clone());
            let app = &app;
            async move { form(app, "/v1/auth/introspect", Some((&id, &secret)), &[("token", &token)]).await.json::<Value>().await.unwrap() }
        };
        let v = ask(user.access.clone()).await;
        assert_eq!(v["active"], true);
        assert_eq!(v["token_type"], "access_token");
        assert_eq!(v["sid"], user.session.as_str());
        assert_eq!(v["roles"], json!(["user"]));
        let v = ask(user.refresh.clone()).await;
        assert_eq!((v["active"].clone(), v["token_type"].clone()), (json!(true), json!("refresh_token")));
        assert_eq!(ask("garbage".into()).await, json!({"active": false}));

        // Without client credentials, nothing is told.
        let r = form(&app, "/v1/auth/introspect", None, &[("token", &user.access)]).await;
        assert_eq!(r.status(), 401);

        // Revocation (RFC 7009) of the refresh token ends the session: both go inactive.
        let r = form(&app, "/v1/auth/revoke", None, &[("token", &user.refresh), ("token_type_hint", "refresh_token")]).await;
        assert_eq!(r.status(), 200);
        assert_eq!(ask(user.access.clone()).await, json!({"active": false}));
        assert_eq!(ask(user.refresh.clone()).await, json!({"active": false}));
        // A web app may revoke with its bearer token in the header: not client authentication.
        let other = app.signed_in("bob@example.com").await;
        let r = app.http.post(app.url("/v1/auth/revoke")).bearer_auth(&other.access).form(&[("token", other.refresh.as_str())]).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(app.refresh(&other.refresh).await.status(), 401);
        // …but it is no client authentication where one is needed.
        let r = app.http.post(app.url("/v1/auth/introspect")).bearer_auth(&other.access).form(&[("token", "x")]).send().await.unwrap();
        assert_eq!(r.status(), 401);
        // Revoking nonsense is not an error (RFC 7009 §2.2).
        assert_eq!(form(&app, "/v1/auth/revoke", None, &[("token", "nonsense")]).await.status(), 200);

        // A service client's token is revoked by its id.
        let t: Value = form(&app, "/v1/auth/token", Some((&id, &secret)), &[("grant_type", "client_credentials")]).await.json().await.unwrap();
        let token = t["access_token"].as_str().unwrap().to_owned();
        let v = ask(token.clone()).await;
        assert_eq!((v["active"].clone(), v["client_id"].clone(), v["scope"].clone()), (json!(true), json!(id), json!("users:read")));
        assert_eq!(form(&app, "/v1/auth/revoke", Some((&id, &secret)), &[("token", &token)]).await.status(), 200);
        assert_eq!(ask(token).await, json!({"active": false}));
    }

    async fn a_rotated_key_is_published_before_it_signs_and_the_old_one_until_its_tokens_expire(db) {
        let app = TestApp::spawn_with(&db, "[auth]\nkey_reload_secs = 0\n").await;
        let config = kit::config::Config::from_toml("").unwrap();
        let before = app.signed_in("ada@example.com").await;
        let old_kid = jsonwebtoken::decode_header(&before.access).unwrap().kid.unwrap();

        // Announced for later: published now, not signing yet.
        let (next, signs_from, _) = auth::ops::rotate_keys(&app.db, &config, Some(3600)).await.unwrap();
        assert!(signs_from > Utc::now() + chrono::Duration::minutes(59));
        let jwks: Value = reqwest::get(app.url("/.well-known/jwks.json")).await.unwrap().json().await.unwrap();
        let kids: Vec<_> = jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect();
        assert!(kids.contains(&next.kid) && kids.contains(&old_kid), "{kids:?}");
        let t = tokens_of(app.login("ada@example.com", PASSWORD).await).await;
        assert_eq!(jsonwebtoken::decode_header(&t.access).unwrap().kid.unwrap(), old_kid, "the new key does not sign yet");

        // Rotated now: the newest key signs, the old ones stay published past the last token they signed.
        let (now_key, _, keys) = auth::ops::rotate_keys(&app.db, &config, Some(0)).await.unwrap();
        let t = tokens_of(app.login("ada@example.com", PASSWORD).await).await;
        assert_eq!(jsonwebtoken::decode_header(&t.access).unwrap().kid.unwrap(), now_key.kid);
        assert_eq!(app.me(&before.access).await.status(), 200, "tokens of the old key still verify");
        let old = keys.iter().find(|k| k.material.kid == old_kid).unwrap();
        let exp = before.access.split('.').nth(1).map(|p| {
            use base64::Engine;
            serde_json::from_slice::<Value>(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap()["exp"].as_i64().unwrap()
        }).unwrap();
        let leeway = i64::try_from(config.settings.tokens.leeway_secs).unwrap();
        assert!(old.expires_at.unwrap().timestamp() >= exp + leeway, "published until every token it signed expired (plus leeway)");
        let jwks: Value = reqwest::get(app.url("/.well-known/jwks.json")).await.unwrap().json().await.unwrap();
        assert_eq!(jwks["keys"].as_array().unwrap().len(), 3);
    }

    async fn switching_to_rs256_signs_with_an_rsa_key_and_earlier_tokens_stay_valid(db) {
        let app = TestApp::spawn(&db).await;
        let before = app.signed_in("ada@example.com").await;
        assert_eq!(jsonwebtoken::decode_header(&before.access).unwrap().alg, jsonwebtoken::Algorithm::EdDSA);

        // Restarted with RS256 on the same database.
        let app = TestApp::spawn_with(&db, "[auth]\nsigning_algorithm = \"RS256\"\n").await;
        let after = tokens_of(app.login("ada@example.com", PASSWORD).await).await;
        let header = jsonwebtoken::decode_header(&after.access).unwrap();
        assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
        let jwks: Value = reqwest::get(app.url("/.well-known/jwks.json")).await.unwrap().json().await.unwrap();
        let keys = jwks["keys"].as_array().unwrap();
        let rsa = keys.iter().find(|k| k["kid"] == json!(header.kid.clone().unwrap())).expect("the new key is published");
        assert_eq!((rsa["kty"].as_str(), rsa["alg"].as_str(), rsa["e"].as_str()), (Some("RSA"), Some("RS256"), Some("AQAB")));
        assert!(rsa["n"].as_str().unwrap().len() >= 342, "2048 bits at least");
        assert!(keys.iter().any(|k| k["kty"] == "OKP"), "the Ed25519 key stays published for the tokens it signed");
        assert_eq!(app.me(&after.access).await.status(), 200);
        assert_eq!(app.me(&before.access).await.status(), 200, "tokens of the EdDSA key still verify");

        // A token must name its key's algorithm: an RS256 header on the
        // Ed25519 key's id, or EdDSA on the RSA key's, is refused.
        let ed_kid = jsonwebtoken::decode_header(&before.access).unwrap().kid.unwrap();
        let [h, p, sig]: [&str; 3] = before.access.split('.').collect::<Vec<_>>().try_into().unwrap();
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        for (alg, kid) in [("RS256", ed_kid.as_str()), ("EdDSA", header.kid.as_deref().unwrap())] {
            let mut head: Value = serde_json::from_slice(&b64.decode(h).unwrap()).unwrap();
            head["alg"] = json!(alg);
            head["kid"] = json!(kid);
            let forged = format!("{}.{p}.{sig}", b64.encode(serde_json::to_vec(&head).unwrap()));
            assert_eq!(app.me(&forged).await.status(), 401, "{alg} on {kid}");
        }
    }
}
