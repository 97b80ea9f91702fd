//! A push service in the test (RFC 8030's role, as a browser vendor's
//! would play it): it checks the VAPID token of every message against the
//! key it names (RFC 8292) and decrypts the body (RFC 8291) with the key
//! of the browser it was sent to — written here apart from notify's code,
//! from the RFC, so the two must agree on the wire.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::agreement::{self, ECDH_P256, EphemeralPrivateKey, UnparsedPublicKey};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::ECDSA_P256_SHA256_FIXED;
use ring::{aead, hkdf};
use serde_json::{Value, json};

/// A message as the browser it was for reads it.
#[derive(Debug, Clone)]
pub struct Received {
    pub browser: String,
    /// The decrypted JSON, or `None` when the browser's one key was spent
    /// (ring's agreement keys are single-use: a browser here decrypts its
    /// first message; later ones are counted, not read).
    pub payload: Option<Value>,
    pub urgency: Option<String>,
    /// RFC 8030's `Topic`: the delivery's id.
    pub topic: Option<String>,
}

/// A browser's keys: its agreement key (until spent), public key, secret.
type BrowserKeys = (Option<EphemeralPrivateKey>, Vec<u8>, [u8; 16]);

#[derive(Default)]
struct Inner {
    keys: HashMap<String, BrowserKeys>,
    received: Vec<Received>,
    /// Browsers whose endpoint answers this status instead of 201.
    answers: HashMap<String, u16>,
    /// Messages refused for a bad token or headers (the test fails on any).
    errors: Vec<String>,
}

#[derive(Clone)]
pub struct PushService {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn derive(salt: &[u8], ikm: &[u8], info: &[&[u8]], len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(ikm).expand(info, Len(len)).unwrap().fill(&mut out).unwrap();
    out
}

impl PushService {
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let service = Self { url, inner };
        let app =
            axum::Router::new().route("/push/{browser}", axum::routing::post(receive)).with_state(service.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        service
    }

    /// A new browser: its subscription as `PushSubscription.toJSON()` gives it.
    pub fn browser(&self, name: &str) -> Value {
        let rng = SystemRandom::new();
        let private = EphemeralPrivateKey::generate(&ECDH_P256, &rng).unwrap();
        let public = private.compute_public_key().unwrap().as_ref().to_vec();
        let mut auth = [0u8; 16];
        rng.fill(&mut auth).unwrap();
        let subscription = json!({
            "endpoint": format!("{}/push/{name}", self.url),
            "keys": {"p256dh": URL_SAFE_NO_PAD.encode(&public), "auth": URL_SAFE_NO_PAD.encode(auth)},
            "expirationTime": null,
        });
        self.inner.lock().unwrap().keys.insert(name.to_owned(), (Some(private), public, auth));
        subscription
    }

    /// Makes `browser`'s endpoint answer `status` from now on.
    pub fn answer(&self, browser: &str, status: u16) {
        self.inner.lock().unwrap().answers.insert(browser.to_owned(), status);
    }

    /// The messages taken; panics if any came with a bad token or headers.
    pub fn received(&self) -> Vec<Received> {
        let inner = self.inner.lock().unwrap();
        assert!(inner.errors.is_empty(), "refused pushes: {:?}", inner.errors);
        inner.received.clone()
    }
}

/// Checks `vapid t=<jwt>, k=<key>`: an ES256 token for this origin,
/// signed by the key it names, not expired, at most 24 hours long.
fn check_vapid(headers: &HeaderMap, origin: &str) -> Result<(), String> {
    let value = headers.get("authorization").and_then(|v| v.to_str().ok()).ok_or("no Authorization")?;
    let (t, k) = value.strip_prefix("vapid t=").and_then(|r| r.split_once(", k=")).ok_or("not vapid t=…, k=…")?;
    let (input, signature) = t.rsplit_once('.').ok_or("not a JWT")?;
    let key = URL_SAFE_NO_PAD.decode(k).map_err(|e| e.to_string())?;
    let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|e| e.to_string())?;
    ring::signature::UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key)
        .verify(input.as_bytes(), &signature)
        .map_err(|_| "the signature does not verify")?;
    let claims = input.split('.').nth(1).ok_or("no claims")?;
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let exp = claims["exp"].as_i64().ok_or("no exp")?;
    let now = chrono::Utc::now().timestamp();
    if claims["aud"] != origin || exp < now || exp > now + 86_400 {
        return Err(format!("bad claims {claims}"));
    }
    Ok(())
}

/// RFC 8291 from the browser's side: the header's salt and sender key, the
/// agreement with the browser's key, the keys, one record, its padding.
fn decrypt(private: EphemeralPrivateKey, public: &[u8], auth: &[u8], body: &[u8]) -> Value {
    let (salt, rest) = body.split_at(16);
    let id_len = usize::from(rest[4]);
    let (sender, record) = rest[5..].split_at(id_len);
    assert_eq!(u32::from_be_bytes(rest[..4].try_into().unwrap()), 4096, "the record size");
    let secret =
        agreement::agree_ephemeral(private, &UnparsedPublicKey::new(&ECDH_P256, sender), <[u8]>::to_vec).unwrap();
    let ikm = derive(auth, &secret, &[b"WebPush: info\0", public, sender], 32);
    let cek = derive(salt, &ikm, &[b"Content-Encoding: aes128gcm\0"], 16);
    let nonce = derive(salt, &ikm, &[b"Content-Encoding: nonce\0"], 12);
    let key = aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_128_GCM, &cek).unwrap());
    let mut record = record.to_vec();
    let nonce = aead::Nonce::try_assume_unique_for_key(&nonce).unwrap();
    let plain = key.open_in_place(nonce, aead::Aad::empty(), &mut record).expect("the body decrypts");
    let end = plain.iter().rposition(|&b| b != 0).unwrap();
    assert_eq!(plain[end], 2, "the last record's delimiter");
    serde_json::from_slice(&plain[..end]).unwrap()
}

async fn receive(
    State(service): State<PushService>,
    Path(browser): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let mut inner = service.inner.lock().unwrap();
    let encoding = headers.get("content-encoding").and_then(|v| v.to_str().ok());
    let checked = check_vapid(&headers, &service.url)
        .and_then(|()| if encoding == Some("aes128gcm") { Ok(()) } else { Err(format!("encoding {encoding:?}")) })
        .and_then(|()| headers.get("ttl").map(|_| ()).ok_or_else(|| "no TTL (RFC 8030 §5.2)".to_owned()));
    if let Err(e) = checked {
        inner.errors.push(e);
        return StatusCode::BAD_REQUEST;
    }
    if let Some(&status) = inner.answers.get(&browser) {
        return StatusCode::from_u16(status).unwrap();
    }
    let Some((private, public, auth)) = inner.keys.get_mut(&browser) else { return StatusCode::NOT_FOUND };
    let payload = private.take().map(|p| decrypt(p, public, auth, &body));
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (urgency, topic) = (header("urgency"), header("topic"));
    inner.received.push(Received { browser, payload, urgency, topic });
    StatusCode::CREATED
}
