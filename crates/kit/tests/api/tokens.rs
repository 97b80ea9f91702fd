//! Token verification, the `Caller` extractor and the role guard.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use futures_util::future::BoxFuture;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use kit::auth::{
    AccessClaims, Admin, Authorized, Caller, Jwk, Jwks, KeySource, KeySourceError, TokenError, TokenVerifier,
};
use kit::config::HttpSettings;
use kit::http::Server;
use kit::testing::TestServer;
use uuid::Uuid;

const ISSUER: &str = "https://panal.test";

struct TestKey {
    kid: String,
    der: Vec<u8>,
    x: String,
}

impl TestKey {
    fn new(seed: u8, kid: &str) -> Self {
        let signing = SigningKey::from_bytes(&[seed; 32]);
        Self {
            kid: kid.to_owned(),
            der: signing.to_pkcs8_der().unwrap().as_bytes().to_vec(),
            x: URL_SAFE_NO_PAD.encode(signing.verifying_key().to_bytes()),
        }
    }

    fn jwk(&self) -> Jwk {
        Jwk {
            kty: "OKP".into(),
            crv: Some("Ed25519".into()),
            x: Some(self.x.clone()),
            n: None,
            e: None,
            kid: self.kid.clone(),
            alg: Some("EdDSA".into()),
            use_: Some("sig".into()),
        }
    }

    fn sign(&self, claims: &AccessClaims) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some("at+jwt".into());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(&self.der)).unwrap()
    }
}

fn claims(roles: &[&str]) -> AccessClaims {
    let now = chrono::Utc::now().timestamp();
    AccessClaims {
        iss: ISSUER.into(),
        aud: "panal".into(),
        sub: Uuid::now_v7(),
        sid: Some(Uuid::now_v7()),
        exp: now + 600,
        iat: now,
        jti: Uuid::now_v7(),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        client_id: None,
        scope: None,
    }
}

/// A key source that serves whatever keys the test puts in it and counts fetches.
#[derive(Clone, Default)]
struct CountingSource {
    keys: Arc<std::sync::Mutex<Vec<Jwk>>>,
    fetches: Arc<AtomicUsize>,
}

impl KeySource for CountingSource {
    fn fetch(&self) -> BoxFuture<'_, Result<Jwks, KeySourceError>> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        let keys = self.keys.lock().unwrap().clone();
        Box::pin(async move { Ok(Jwks { keys }) })
    }
}

fn verifier(source: CountingSource, interval: Duration) -> TokenVerifier {
    TokenVerifier::new(source, ISSUER, "panal", interval, Duration::from_secs(30))
}

#[tokio::test]
async fn unknown_key_ids_cause_at_most_one_fetch_per_interval() {
    let key = TestKey::new(1, "k1");
    let source = CountingSource::default();
    source.keys.lock().unwrap().push(key.jwk());
    let v = verifier(source.clone(), Duration::from_millis(300));

    assert!(v.verify(&key.sign(&claims(&["user"]))).await.is_ok());
    assert_eq!(source.fetches.load(Ordering::SeqCst), 1, "the first token fetches the keys");

    let stranger = TestKey::new(2, "k2");
    for _ in 0..20 {
        assert_eq!(v.verify(&stranger.sign(&claims(&[]))).await, Err(TokenError::UnknownKey));
    }
    assert_eq!(source.fetches.load(Ordering::SeqCst), 1, "no fetch storm");

    // Once the interval has passed, a key published since is found.
    source.keys.lock().unwrap().push(stranger.jwk());
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(v.verify(&stranger.sign(&claims(&[]))).await.is_ok());
    assert_eq!(source.fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn unsigned_and_hmac_tokens_are_refused_whatever_the_case_of_alg() {
    let key = TestKey::new(1, "k1");
    let source = CountingSource::default();
    source.keys.lock().unwrap().push(key.jwk());
    let v = verifier(source, Duration::from_secs(30));
    let good = key.sign(&claims(&["admin"]));
    let payload = good.split('.').nth(1).unwrap();

    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","typ":"at+jwt","kid":"k1"}}"#));
        for token in [format!("{header}.{payload}."), format!("{header}.{payload}")] {
            assert!(v.verify(&token).await.is_err(), "alg {alg} must be refused");
        }
    }

    // HS256 "signed" with the public key as the HMAC secret.
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some("at+jwt".into());
    header.kid = Some("k1".into());
    let forged =
        jsonwebtoken::encode(&header, &claims(&["admin"]), &EncodingKey::from_secret(key.x.as_bytes()).unwrap())
            .unwrap();
    assert_eq!(v.verify(&forged).await, Err(TokenError::UnsupportedAlgorithm));

    // A plain JWT `typ` is not an access token.
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some("k1".into());
    let id_token = jsonwebtoken::encode(&header, &claims(&[]), &EncodingKey::from_ed_der(&key.der)).unwrap();
    assert_eq!(v.verify(&id_token).await, Err(TokenError::WrongType));

    // A stripped signature.
    let stripped = good.rsplit_once('.').unwrap().0.to_owned() + ".";
    assert!(v.verify(&stripped).await.is_err());
    assert!(v.verify(&good).await.is_ok());
}

async fn admin_only(Authorized(caller, _): Authorized<Admin>) -> String {
    caller.user_id.to_string()
}

async fn anyone(caller: Caller) -> String {
    caller.roles.join(",")
}

#[tokio::test]
async fn the_role_guard_admits_only_callers_with_the_role() {
    let key = TestKey::new(1, "k1");
    let source = CountingSource::default();
    source.keys.lock().unwrap().push(key.jwk());
    let router = Router::new().route("/admin", get(admin_only)).route("/me", get(anyone));
    let service = Server::new("test", router, Default::default())
        .with_verifier(Arc::new(verifier(source, Duration::from_secs(30))));
    let app = TestServer::spawn(service, HttpSettings::default()).await;
    let c = reqwest::Client::new();

    let user = key.sign(&claims(&["user"]));
    let admin = key.sign(&claims(&["user", "admin"]));
    assert_eq!(c.get(app.url("/me")).bearer_auth(&user).send().await.unwrap().text().await.unwrap(), "user");
    let r = c.get(app.url("/admin")).bearer_auth(&user).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["detail"], "this action needs the `admin` role");
    assert_eq!(c.get(app.url("/admin")).bearer_auth(&admin).send().await.unwrap().status(), 200);
    assert_eq!(c.get(app.url("/admin")).send().await.unwrap().status(), 401);
}

#[tokio::test]
async fn cached_verifications_still_expire_and_end_when_their_key_leaves_the_set() {
    let key = TestKey::new(1, "k1");
    let source = CountingSource::default();
    source.keys.lock().unwrap().push(key.jwk());
    let v = TokenVerifier::new(source.clone(), ISSUER, "panal", Duration::from_secs(30), Duration::ZERO);

    let short = key.sign(&AccessClaims { exp: chrono::Utc::now().timestamp() + 1, ..claims(&[]) });
    assert!(v.verify(&short).await.is_ok());
    assert!(v.verify(&short).await.is_ok(), "served from the cache");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(v.verify(&short).await, Err(TokenError::Expired));

    let token = key.sign(&claims(&[]));
    assert!(v.verify(&token).await.is_ok());
    v.set_keys(&Jwks::default());
    assert_eq!(v.verify(&token).await, Err(TokenError::UnknownKey), "the cache does not outlive the key");
}
