//! Access tokens: what they contain, how every service verifies them, and the
//! extractors handlers use to learn who is calling.
//!
//! Auth signs short-lived JWTs with an Ed25519 key and publishes the public keys
//! as a JWKS. Verifiers keep the keys in memory and fetch the set again only when
//! a token names a key they do not know, and then at most once per interval, so a
//! flood of tokens with made-up key ids cannot turn into a flood of fetches.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::marker::PhantomData;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use futures_util::future::BoxFuture;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, header};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::problem::Problem;

/// The `typ` header of access tokens (RFC 9068).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// The algorithms access tokens may be signed with: EdDSA (auth's default)
/// and RS256 (`auth.signing_algorithm = "RS256"`).
pub const SIGNING_ALGORITHMS: [Algorithm; 2] = [Algorithm::EdDSA, Algorithm::RS256];

/// The role auth signs into a bot's token (never an account's): game seats
/// its holder as a bot, never rated as a person.
pub const ROLE_BOT: &str = "bot";

/// Tokens longer than this are refused before any parsing.
pub const MAX_TOKEN_LEN: usize = 4096;

/// The claims of a Panal access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer: the public URL of the platform.
    pub iss: String,
    /// Audience: `panal` unless configured otherwise.
    pub aud: String,
    /// The user, or the service client for a client-credentials token.
    pub sub: Uuid,
    /// The session (refresh-token family) the token belongs to; absent from
    /// service clients' tokens, which have no session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<Uuid>,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Unique token id.
    pub jti: Uuid,
    /// The user's roles when the token was issued.
    #[serde(default)]
    pub roles: Vec<String>,
    /// The service client a client-credentials token was issued to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Space-separated scopes granted to a service client (RFC 8693 `scope`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// A JSON Web Key Set holding auth's public keys (Ed25519 and RSA).
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

/// One public key: `OKP` with `crv`/`x` (RFC 8037, for EdDSA) or `RSA`
/// with `n`/`e` (RFC 7518, for RS256).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Jwk {
    #[schema(example = "OKP")]
    pub kty: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "Ed25519")]
    pub crv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")]
    pub x: Option<String>,
    /// RSA modulus, base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    /// RSA public exponent, base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    #[schema(example = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k")]
    pub kid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "EdDSA")]
    pub alg: Option<String>,
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "sig")]
    pub use_: Option<String>,
}

/// Why a token was refused. Every variant is a 401 for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token is too long")]
    TooLong,
    #[error("the token is not an access token")]
    WrongType,
    #[error("the token is signed with an unsupported algorithm")]
    UnsupportedAlgorithm,
    #[error("the token is signed with an unknown key")]
    UnknownKey,
    #[error("the token signature is invalid")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued for another issuer")]
    WrongIssuer,
    #[error("the token was issued for another audience")]
    WrongAudience,
    #[error("the token is invalid")]
    Invalid,
    #[error("the session of this token has ended")]
    Revoked,
}

impl From<TokenError> for Problem {
    fn from(e: TokenError) -> Self {
        Problem::invalid_token(e.to_string())
    }
}

/// Failure to obtain keys.
#[derive(Debug, thiserror::Error)]
#[error("could not obtain signing keys: {0}")]
pub struct KeySourceError(pub String);

/// Where a verifier gets the public keys from.
pub trait KeySource: Send + Sync + 'static {
    fn fetch(&self) -> BoxFuture<'_, Result<Jwks, KeySourceError>>;
}

impl KeySource for Box<dyn KeySource> {
    fn fetch(&self) -> BoxFuture<'_, Result<Jwks, KeySourceError>> {
        (**self).fetch()
    }
}

/// Keys fetched from a JWKS URL (auth's `/.well-known/jwks.json`).
pub struct HttpKeySource {
    url: String,
    client: reqwest::Client,
}

impl HttpKeySource {
    pub fn new(url: impl Into<String>) -> Self {
        crate::install_crypto();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self { url: url.into(), client }
    }
}

impl KeySource for HttpKeySource {
    fn fetch(&self) -> BoxFuture<'_, Result<Jwks, KeySourceError>> {
        Box::pin(async move {
            let response = self
                .client
                .get(&self.url)
                .send()
                .await
                .map_err(|e| KeySourceError(format!("GET {}: {e}", self.url)))?;
            if !response.status().is_success() {
                return Err(KeySourceError(format!("GET {}: status {}", self.url, response.status())));
            }
            response.json::<Jwks>().await.map_err(|e| KeySourceError(format!("GET {}: {e}", self.url)))
        })
    }
}

/// Verifies access tokens against a cached key set.
pub struct TokenVerifier {
    source: Box<dyn KeySource>,
    /// By key id: the key, and the one algorithm its tokens may name.
    keys: RwLock<Arc<HashMap<String, (Algorithm, DecodingKey)>>>,
    /// When keys were last fetched; the lock also makes concurrent fetches wait
    /// for one another instead of each calling the source.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
    refetch_interval: Duration,
    /// One per algorithm of [`SIGNING_ALGORITHMS`], in its order
    /// (jsonwebtoken checks that every algorithm a validation allows is of
    /// the key's family).
    validations: Vec<Validation>,
    leeway: i64,
    /// Tokens already verified, so a token's signature is checked once, not on
    /// every request that carries it. Cleared whenever the key set changes.
    verified: RwLock<Verified>,
    /// Each thread's own copy of what it used of `verified`: a look-up there
    /// takes no lock and touches no reference count another thread touches
    /// (see [`crate::local`]). Forgotten when `generation` moves on.
    local: thread_local::ThreadLocal<std::cell::RefCell<(u64, Verified)>>,
    /// Moves on whenever the key set changes.
    generation: std::sync::atomic::AtomicU64,
}

type Verified = HashMap<Box<str>, Arc<AccessClaims>, BuildHasherDefault<SignatureHasher>>;

/// Most tokens a thread's copy of the cache keeps.
const LOCAL_CACHE_CAPACITY: usize = 4096;

/// Hashes a token by its last 16 bytes: the signature's, which are as good
/// as random, so the cache's look-up costs no pass over the whole token.
/// Equal hashes are still compared whole, and only tokens whose signature
/// verified are stored, so nobody can fill a bucket with colliding tokens
/// without the signing key.
#[derive(Default)]
struct SignatureHasher(u64);

impl std::hash::Hasher for SignatureHasher {
    fn write(&mut self, bytes: &[u8]) {
        let tail = &bytes[bytes.len().saturating_sub(16)..];
        for (i, chunk) in tail.chunks(8).enumerate() {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(word).rotate_left(i as u32 * 29);
        }
        self.0 = self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Most tokens remembered by a verifier's cache (about 1 KiB each).
const VERIFIED_CACHE_CAPACITY: usize = 10_000;

impl TokenVerifier {
    pub fn new(
        source: impl KeySource,
        issuer: &str,
        audience: &str,
        refetch_interval: Duration,
        leeway: Duration,
    ) -> Self {
        let validations = SIGNING_ALGORITHMS
            .iter()
            .map(|algorithm| {
                let mut validation = Validation::new(*algorithm);
                validation.set_issuer(&[issuer]);
                validation.set_audience(&[audience]);
                validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
                validation.validate_nbf = true;
                validation.leeway = leeway.as_secs();
                validation
            })
            .collect();
        Self {
            source: Box::new(source),
            keys: RwLock::new(Arc::new(HashMap::new())),
            last_fetch: tokio::sync::Mutex::new(None),
            refetch_interval,
            validations,
            leeway: i64::try_from(leeway.as_secs()).unwrap_or(i64::MAX),
            verified: RwLock::new(HashMap::default()),
            local: thread_local::ThreadLocal::new(),
            generation: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Replaces the cached keys with `jwks` (what a fetch does).
    pub fn set_keys(&self, jwks: &Jwks) {
        let mut map = HashMap::new();
        for key in &jwks.keys {
            if key.use_.as_deref().is_some_and(|u| u != "sig") {
                continue;
            }
            let decoded = match (key.kty.as_str(), key.alg.as_deref()) {
                ("OKP", None | Some("EdDSA")) if key.crv.as_deref() == Some("Ed25519") => {
                    let Some(x) = key.x.as_deref() else { continue };
                    DecodingKey::from_ed_components(x).map(|k| (Algorithm::EdDSA, k))
                }
                ("RSA", None | Some("RS256")) => {
                    let (Some(n), Some(e)) = (key.n.as_deref(), key.e.as_deref()) else { continue };
                    // RFC 7518 §3.3: 2048 bits at least (342 base64url characters).
                    if n.len() < 342 {
                        tracing::warn!(kid = %key.kid, "ignoring an RSA key shorter than 2048 bits");
                        continue;
                    }
                    DecodingKey::from_rsa_components(n, e).map(|k| (Algorithm::RS256, k))
                }
                _ => continue,
            };
            match decoded {
                Ok(k) => {
                    map.insert(key.kid.clone(), k);
                }
                Err(e) => {
                    tracing::warn!(kid = %key.kid, error = %e, "ignoring an unusable key in the key set")
                }
            }
        }
        if let Ok(mut guard) = self.keys.write() {
            *guard = Arc::new(map);
        }
        // A key that left the set must not keep its tokens valid through the cache.
        if let Ok(mut cache) = self.verified.write() {
            cache.clear();
        }
        self.generation.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    fn key(&self, kid: &str) -> Option<(Algorithm, DecodingKey)> {
        self.keys.read().ok().and_then(|keys| keys.get(kid).cloned())
    }

    /// Fetches the key set unless one was fetched less than the refetch interval
    /// ago. Returns whether a fetch happened.
    pub async fn refresh(&self, force: bool) -> Result<bool, KeySourceError> {
        let mut last = self.last_fetch.lock().await;
        if !force && last.is_some_and(|t| t.elapsed() < self.refetch_interval) {
            return Ok(false);
        }
        // Record the attempt before it runs: a failing source is retried after
        // the interval, not on every request.
        *last = Some(Instant::now());
        let jwks = self.source.fetch().await?;
        self.set_keys(&jwks);
        Ok(true)
    }

    /// Verifies `token` and returns its claims.
    pub async fn verify(&self, token: &str) -> Result<Arc<AccessClaims>, TokenError> {
        self.verify_at(token, Instant::now()).await
    }

    /// [`TokenVerifier::verify`] for a request that arrived `at` (a cached
    /// token's expiry is checked against that time).
    pub async fn verify_at(&self, token: &str, at: Instant) -> Result<Arc<AccessClaims>, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLong);
        }
        let cached = self.local_get(token).or_else(|| {
            let shared = self.verified.read().ok().and_then(|cache| cache.get(token).cloned())?;
            Some(self.local_put(token, &shared))
        });
        if let Some(claims) = cached {
            // The signature was checked; time moves on, so expiry is checked again.
            let now = i64::try_from(crate::local::unix_ms_at(at) / 1000).unwrap_or(i64::MAX);
            if claims.exp + self.leeway < now {
                return Err(TokenError::Expired);
            }
            return Ok(claims);
        }
        // Boxed: a signature check is the rare path, and its future is large.
        let claims = Arc::new(Box::pin(self.verify_uncached(token)).await?);
        if let Ok(mut cache) = self.verified.write() {
            if cache.len() >= VERIFIED_CACHE_CAPACITY {
                let now = chrono::Utc::now().timestamp();
                cache.retain(|_, c| c.exp + self.leeway >= now);
                if cache.len() >= VERIFIED_CACHE_CAPACITY {
                    cache.clear();
                }
            }
            cache.insert(token.into(), claims.clone());
        }
        Ok(self.local_put(token, &claims))
    }

    /// This thread's copy of a verified token's claims.
    fn local_get(&self, token: &str) -> Option<Arc<AccessClaims>> {
        let generation = self.generation.load(std::sync::atomic::Ordering::Acquire);
        let mut local = self.local.get_or_default().borrow_mut();
        if local.0 != generation {
            *local = (generation, HashMap::default());
        }
        local.1.get(token).cloned()
    }

    /// Keeps a copy of `claims` of this thread's own (its reference count
    /// is touched by this thread alone), and returns it.
    fn local_put(&self, token: &str, claims: &AccessClaims) -> Arc<AccessClaims> {
        let own = Arc::new(claims.clone());
        let mut local = self.local.get_or_default().borrow_mut();
        if local.1.len() >= LOCAL_CACHE_CAPACITY {
            local.1.clear();
        }
        local.1.insert(token.into(), own.clone());
        own
    }

    async fn verify_uncached(&self, token: &str) -> Result<AccessClaims, TokenError> {
        if token.split('.').count() != 3 {
            return Err(TokenError::Malformed);
        }
        // `decode_header` refuses algorithms it does not know, `none` included.
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        let typ_ok = header
            .typ
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case(ACCESS_TOKEN_TYP) || t.eq_ignore_ascii_case("application/at+jwt"));
        if !typ_ok {
            return Err(TokenError::WrongType);
        }
        if !SIGNING_ALGORITHMS.contains(&header.alg) {
            return Err(TokenError::UnsupportedAlgorithm);
        }
        let kid = header.kid.as_deref().ok_or(TokenError::UnknownKey)?;
        // Key ids are base64url thumbprints; anything else cannot be one of ours
        // and must not cause a fetch.
        if kid.is_empty()
            || kid.len() > 128
            || !kid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(TokenError::UnknownKey);
        }
        let (algorithm, key) = match self.key(kid) {
            Some(k) => k,
            None => {
                if let Err(e) = self.refresh(false).await {
                    tracing::warn!(error = %e, "key refresh failed");
                }
                self.key(kid).ok_or(TokenError::UnknownKey)?
            }
        };
        // A token names the algorithm its key is for, or it is refused (no
        // algorithm confusion between a key's family and the header's claim).
        if header.alg != algorithm {
            return Err(TokenError::UnsupportedAlgorithm);
        }
        let validation = SIGNING_ALGORITHMS
            .iter()
            .position(|a| *a == algorithm)
            .and_then(|i| self.validations.get(i))
            .ok_or(TokenError::UnsupportedAlgorithm)?;
        let data = jsonwebtoken::decode::<AccessClaims>(token, &key, validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::InvalidSignature => TokenError::BadSignature,
                K::ExpiredSignature => TokenError::Expired,
                K::ImmatureSignature => TokenError::NotYetValid,
                K::InvalidIssuer => TokenError::WrongIssuer,
                K::InvalidAudience => TokenError::WrongAudience,
                K::InvalidAlgorithm | K::InvalidAlgorithmName => TokenError::UnsupportedAlgorithm,
                K::Base64(_) | K::Json(_) | K::Utf8(_) | K::InvalidToken => TokenError::Malformed,
                _ => TokenError::Invalid,
            }
        })?;
        if data.claims.iat > chrono::Utc::now().timestamp() + self.leeway {
            return Err(TokenError::NotYetValid);
        }
        Ok(data.claims)
    }
}

/// The bearer token of a request, if it has one.
pub fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, Problem> {
    bearer_token_in(headers.get(header::AUTHORIZATION).map(HeaderValue::as_bytes))
}

/// [`bearer_token`] from the `Authorization` value itself.
pub fn bearer_token_in(value: Option<&[u8]>) -> Result<Option<&str>, Problem> {
    let Some(value) = value else {
        return Ok(None);
    };
    // UTF-8 is checked in bulk, faster than `to_str`'s byte-by-byte check
    // on a 400-byte token (every request through the gateway has one);
    // anything but ASCII then fails verification as malformed.
    let value =
        std::str::from_utf8(value).map_err(|_| Problem::invalid_token("the Authorization header is not valid text"))?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => {
            Ok(Some(token.trim()))
        }
        _ => Err(Problem::unauthorized("the Authorization header must be `Bearer <access token>`")),
    }
}

/// The authenticated caller of a request, from a verified access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub roles: Vec<String>,
    pub token_id: Uuid,
    /// When the token was issued, seconds since the epoch (how recently the
    /// caller proved who they are).
    pub issued_at: i64,
    /// When the token expires, seconds since the epoch.
    pub expires_at: i64,
}

impl Caller {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// 403 unless the caller has `role`.
    pub fn require_role(&self, role: &str) -> Result<(), Problem> {
        if self.has_role(role) {
            Ok(())
        } else {
            Err(Problem::forbidden(format!("this action needs the `{role}` role")))
        }
    }
}

impl TryFrom<AccessClaims> for Caller {
    type Error = Problem;

    /// Only users' tokens make a `Caller`: a service client's token has no
    /// session and is refused where a user is expected.
    fn try_from(c: AccessClaims) -> Result<Self, Problem> {
        let Some(session_id) = c.sid else {
            return Err(Problem::invalid_token("this endpoint is for users; a service client's token is not accepted"));
        };
        Ok(Self { user_id: c.sub, session_id, roles: c.roles, token_id: c.jti, issued_at: c.iat, expires_at: c.exp })
    }
}

/// The verified access token of a request, whoever it was issued to.
async fn verified_claims(parts: &mut Parts) -> Result<AccessClaims, Problem> {
    if let Some(claims) = parts.extensions.get::<AccessClaims>() {
        return Ok(claims.clone());
    }
    let verifier =
        parts.extensions.get::<Arc<TokenVerifier>>().cloned().ok_or_else(|| {
            Problem::internal(&KeySourceError("no token verifier is installed on this service".into()))
        })?;
    let token = bearer_token(&parts.headers)?
        .ok_or_else(|| Problem::unauthorized("this endpoint needs an access token (`Authorization: Bearer …`)"))?;
    let claims = Arc::unwrap_or_clone(verifier.verify(token).await?);
    tracing::Span::current().record("user_id", tracing::field::display(claims.sub));
    parts.extensions.insert(claims.clone());
    Ok(claims)
}

/// A service client calling with a client-credentials token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceClient {
    pub client_id: String,
    pub scopes: Vec<String>,
    pub token_id: Uuid,
}

impl ServiceClient {
    /// 403 unless the client was granted `scope`.
    pub fn require_scope(&self, scope: &str) -> Result<(), Problem> {
        if self.scopes.iter().any(|s| s == scope) {
            Ok(())
        } else {
            Err(Problem::forbidden(format!("this action needs the `{scope}` scope")))
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ServiceClient {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let claims = verified_claims(parts).await?;
        match (claims.sid, claims.client_id) {
            (None, Some(client_id)) => Ok(Self {
                client_id,
                scopes: claims.scope.unwrap_or_default().split_whitespace().map(str::to_owned).collect(),
                token_id: claims.jti,
            }),
            _ => Err(Problem::forbidden("this endpoint is for service clients (client-credentials tokens)")),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        let caller = Caller::try_from(verified_claims(parts).await?)?;
        parts.extensions.insert(caller.clone());
        Ok(caller)
    }
}

/// A role a handler can demand with [`Authorized`].
pub trait Role: Send + Sync + 'static {
    const NAME: &'static str;
}

macro_rules! roles {
    ($($ty:ident => $name:literal),* $(,)?) => {$(
        #[doc = concat!("The `", $name, "` role.")]
        #[derive(Debug)]
        pub struct $ty;
        impl Role for $ty {
            const NAME: &'static str = $name;
        }
    )*};
}

roles!(Admin => "admin", Moderator => "moderator", Professional => "professional", Support => "support");

/// A caller that has role `R`: `async fn handler(Authorized(caller, _): Authorized<Admin>)`.
#[derive(Debug)]
pub struct Authorized<R: Role>(pub Caller, pub PhantomData<R>);

impl<S: Send + Sync, R: Role> FromRequestParts<S> for Authorized<R> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        caller.require_role(R::NAME)?;
        Ok(Authorized(caller, PhantomData))
    }
}
