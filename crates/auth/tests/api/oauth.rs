//! Sign-in with external providers, against a fake provider server started by
//! the test: OpenID discovery, or explicit URLs with 42-style claims.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use sha2::Digest;

use super::*;

const REDIRECT: &str = "https://app.example.com/oauth/callback";

#[derive(Default)]
struct Fake {
    base: String,
    /// Who signs in at the provider next.
    next_user: Value,
    /// code → (redirect_uri, code_challenge, user)
    codes: HashMap<String, (String, String, Value)>,
    used: HashSet<String>,
    tokens: HashMap<String, Value>,
}

type Shared = Arc<Mutex<Fake>>;

async fn discovery(State(f): State<Shared>) -> Json<Value> {
    let base = f.lock().unwrap().base.clone();
    Json(json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
        "userinfo_endpoint": format!("{base}/userinfo"),
    }))
}

async fn authorize(State(f): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    // A real provider checks the client and the exact redirect URI before sending the browser anywhere.
    if q.get("client_id").map(String::as_str) != Some("panal-client")
        || q.get("redirect_uri").map(String::as_str) != Some(REDIRECT)
        || q.get("code_challenge_method").map(String::as_str) != Some("S256")
        || q.get("response_type").map(String::as_str) != Some("code")
    {
        return (StatusCode::BAD_REQUEST, "bad authorization request").into_response();
    }
    let code = Uuid::new_v4().simple().to_string();
    let mut f = f.lock().unwrap();
    let user = f.next_user.clone();
    f.codes.insert(code.clone(), (q["redirect_uri"].clone(), q["code_challenge"].clone(), user));
    Redirect::to(&format!("{}?code={code}&state={}", q["redirect_uri"], q["state"])).into_response()
}

async fn token(State(f): State<Shared>, Form(form): Form<HashMap<String, String>>) -> Response {
    let mut f = f.lock().unwrap();
    let refuse = |e: &str| (StatusCode::BAD_REQUEST, Json(json!({"error": e}))).into_response();
    if form.get("client_secret").map(String::as_str) != Some("provider-secret") {
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_client"}))).into_response();
    }
    let code = form.get("code").cloned().unwrap_or_default();
    let Some((redirect, challenge, user)) = f.codes.get(&code).cloned() else { return refuse("invalid_grant") };
    if !f.used.insert(code.clone()) {
        return refuse("invalid_grant");
    }
    if form.get("redirect_uri") != Some(&redirect) {
        return refuse("invalid_grant");
    }
    let verifier = form.get("code_verifier").cloned().unwrap_or_default();
    use base64::Engine;
    let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    if computed != challenge {
        return refuse("invalid_grant");
    }
    let access = format!("at-{code}");
    f.tokens.insert(access.clone(), user);
    Json(json!({"access_token": access, "token_type": "Bearer"})).into_response()
}

async fn userinfo(State(f): State<Shared>, headers: HeaderMap) -> Response {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    match f.lock().unwrap().tokens.get(token) {
        Some(user) => Json(user.clone()).into_response(),
        None => StatusCode::UNAUTHORIZED.into_response(),
    }
}

async fn fake_provider() -> (Shared, String) {
    let shared: Shared = Arc::default();
    let app = axum::Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/authorize", get(authorize))
        .route("/token", post(token))
        .route("/userinfo", get(userinfo))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    shared.lock().unwrap().base = base.clone();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (shared, base)
}

async fn app_with_providers(db: &TestDb) -> (TestApp, Shared) {
    let (fake, base) = fake_provider().await;
    let toml = format!(
        r#"
[auth.providers.oidc]
issuer = "{base}"
client_id = "panal-client"
client_secret = "provider-secret"
redirect_uris = ["{REDIRECT}"]

[auth.providers.school]
display_name = "School"
authorize_url = "{base}/authorize"
token_url = "{base}/token"
userinfo_url = "{base}/userinfo"
client_id = "panal-client"
client_secret = "provider-secret"
redirect_uris = ["{REDIRECT}"]
subject_claim = "id"
name_claim = "displayname"
trust_email = true
"#
    );
    (TestApp::spawn_with(db, &toml).await, fake)
}

/// Starts a sign-in and follows the browser to the provider and back: `(code, state)`.
async fn authorize_at(app: &TestApp, provider: &str, user: Value, fake: &Shared) -> (String, String) {
    fake.lock().unwrap().next_user = user;
    let r = app.post(&format!("/v1/auth/oauth/{provider}/start"), json!({"redirect_uri": REDIRECT})).await;
    assert_eq!(r.status(), 200);
    let start: Value = r.json().await.unwrap();
    let url = start["authorization_url"].as_str().unwrap();
    assert!(url.contains("code_challenge_method=S256") && url.contains("code_challenge="), "{url}");
    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = browser.get(url).send().await.unwrap();
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    let back = reqwest::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    let q: HashMap<String, String> = back.query_pairs().into_owned().collect();
    assert_eq!(q["state"], start["state"].as_str().unwrap());
    (q["code"].clone(), q["state"].clone())
}

async fn callback(app: &TestApp, provider: &str, code: &str, state: &str) -> reqwest::Response {
    app.post(&format!("/v1/auth/oauth/{provider}/callback"), json!({"code": code, "state": state})).await
}

fn person(sub: &str, email: &str, verified: bool) -> Value {
    json!({"sub": sub, "email": email, "email_verified": verified, "name": "Grace Hopper"})
}

kit::backend_tests! {
    async fn a_new_identity_creates_an_account_and_signs_in_again_to_it(db) {
        let (app, fake) = app_with_providers(&db).await;
        let list: Value = app.http.get(app.url("/v1/auth/oauth/providers")).send().await.unwrap().json().await.unwrap();
        assert_eq!(list, json!([{"name": "oidc", "display_name": "oidc"}, {"name": "school", "display_name": "School"}]));

        let (code, state) = authorize_at(&app, "oidc", person("g-1", "grace@example.com", true), &fake).await;
        let r = callback(&app, "oidc", &code, &state).await;
        assert_eq!(r.status(), 200);
        let first = tokens_of(r).await;
        let me: Value = app.me(&first.access).await.json().await.unwrap();
        assert_eq!((me["email"].clone(), me["display_name"].clone(), me["email_verified"].clone()), (json!("grace@example.com"), json!("Grace Hopper"), json!(true)));
        assert_eq!(app.login("grace@example.com", "").await.status(), 422, "no password was made up");

        let (code, state) = authorize_at(&app, "oidc", person("g-1", "grace@example.com", true), &fake).await;
        let again = tokens_of(callback(&app, "oidc", &code, &state).await).await;
        assert_eq!(ids(&again).0, ids(&first).0, "the same identity signs in to the same account");

        // Explicit URLs and 42-style claims (numeric `id`, `displayname`).
        let (code, state) = authorize_at(&app, "school", json!({"id": 4242, "email": "marvin@example.com", "displayname": "Marvin"}), &fake).await;
        let t = tokens_of(callback(&app, "school", &code, &state).await).await;
        let me: Value = app.me(&t.access).await.json().await.unwrap();
        assert_eq!((me["email"].clone(), me["email_verified"].clone()), (json!("marvin@example.com"), json!(true)));
        let subject: String = kit::with_db!(&app.db, pool => sqlx::query_scalar("SELECT subject FROM external_identities WHERE provider = 'school'").fetch_one(pool).await).unwrap();
        assert_eq!(subject, "4242");
    }

    async fn an_existing_account_is_linked_only_with_verified_emails_and_its_owners_confirmation(db) {
        let (app, fake) = app_with_providers(&db).await;
        let ada = app.signed_in("ada@example.com").await;

        // Panal has not verified ada's address: no link.
        let (code, state) = authorize_at(&app, "oidc", person("a-1", "ada@example.com", true), &fake).await;
        assert_eq!(callback(&app, "oidc", &code, &state).await.status(), 409);

        let token = app.mailed_token("ada@example.com", "verify_email");
        assert_eq!(app.post("/v1/auth/email/verify", json!({"token": token})).await.status(), 204);
        // The provider has not verified it: no link either.
        let (code, state) = authorize_at(&app, "oidc", person("a-1", "ada@example.com", false), &fake).await;
        assert_eq!(callback(&app, "oidc", &code, &state).await.status(), 409);

        // Both verified: the owner is asked to confirm.
        let (code, state) = authorize_at(&app, "oidc", person("a-1", "ada@example.com", true), &fake).await;
        let r = callback(&app, "oidc", &code, &state).await;
        assert_eq!(r.status(), 202);
        let pending: Value = r.json().await.unwrap();
        assert_eq!(pending["link_required"], true);
        assert!(pending.get("access_token").is_none(), "no session before the owner confirms");
        let link = pending["link_token"].as_str().unwrap();

        let bob = app.signed_in("bob@example.com").await;
        assert_eq!(app.post_as("/v1/auth/oauth/link", &bob.access, json!({"link_token": link})).await.status(), 403, "only the account's owner confirms");
        assert_eq!(app.post_as("/v1/auth/oauth/link", &ada.access, json!({"link_token": link})).await.status(), 204);
        assert_eq!(app.post_as("/v1/auth/oauth/link", &ada.access, json!({"link_token": link})).await.status(), 400, "once");

        let (code, state) = authorize_at(&app, "oidc", person("a-1", "ada@example.com", true), &fake).await;
        let t = tokens_of(callback(&app, "oidc", &code, &state).await).await;
        assert_eq!(ids(&t).0, ids(&ada).0);
    }

    async fn oauth_callbacks_with_a_wrong_state_a_replayed_code_or_a_foreign_redirect_are_refused(db) {
        let (app, fake) = app_with_providers(&db).await;
        // A redirect URI that is not registered, even a near miss.
        for foreign in ["https://evil.example/cb", "https://app.example.com/oauth/callback/", "https://app.example.com/oauth/callback?x=1"] {
            let r = app.post("/v1/auth/oauth/oidc/start", json!({"redirect_uri": foreign})).await;
            assert_eq!(r.status(), 422, "{foreign}");
        }
        let (code, state) = authorize_at(&app, "oidc", person("g-1", "grace@example.com", true), &fake).await;
        // A state we never issued (or another provider's).
        let r = callback(&app, "oidc", &code, "forged-state").await;
        assert_eq!(r.status(), 400);
        assert_eq!(problem(r).await["type"], "urn:panal:problem:invalid-state");
        assert_eq!(callback(&app, "school", &code, &state).await.status(), 400, "a state is bound to its provider");
        assert_eq!(callback(&app, "oidc", &code, &state).await.status(), 200);
        // The same code and state again.
        let r = callback(&app, "oidc", &code, &state).await;
        assert_eq!(r.status(), 400, "a state is single-use");
        // The used code with a fresh state: the provider refuses it.
        let (_, fresh_state) = authorize_at(&app, "oidc", person("g-1", "grace@example.com", true), &fake).await;
        let r = callback(&app, "oidc", &code, &fresh_state).await;
        assert_eq!(r.status(), 400);
        assert_eq!(problem(r).await["type"], "urn:panal:problem:oauth-code-refused");
        assert_eq!(app.post("/v1/auth/oauth/nope/start", json!({"redirect_uri": REDIRECT})).await.status(), 404);
    }
}
