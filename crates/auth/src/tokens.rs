//! Token material: Ed25519 signing keys, access tokens (JWT) and refresh tokens.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use kit::auth::{ACCESS_TOKEN_TYP, AccessClaims, Jwk};
use sha2::{Digest, Sha256};

/// A signing key as stored: PKCS#8 private key and the raw public key.
#[derive(Clone)]
pub struct KeyMaterial {
    pub kid: String,
    pub private_pkcs8: Vec<u8>,
    /// The public key, base64url (the JWK `x`).
    pub public_x: String,
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyMaterial").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl KeyMaterial {
    /// A fresh Ed25519 key.
    pub fn generate() -> anyhow::Result<Self> {
        // Any 32 bytes are an Ed25519 secret key; these come from rand's
        // thread generator, a ChaCha CSPRNG seeded and reseeded by the OS.
        let signing = SigningKey::from_bytes(&rand::random());
        let der = signing.to_pkcs8_der().map_err(|e| anyhow::anyhow!("encoding a new signing key: {e}"))?;
        let public_x = URL_SAFE_NO_PAD.encode(signing.verifying_key().to_bytes());
        Ok(Self { kid: thumbprint(&public_x), private_pkcs8: der.as_bytes().to_vec(), public_x })
    }

    pub fn jwk(&self) -> Jwk {
        public_jwk(&self.kid, &self.public_x)
    }
}

/// Auth's signing keys, read from its database and re-read every
/// `auth.key_reload_secs`, so a rotation made by `panal auth rotate-keys` (another process)
/// takes effect without a restart.
pub struct KeyRing {
    store: crate::store::Store,
    cache: tokio::sync::RwLock<(std::time::Instant, Vec<crate::store::KeyRecord>)>,
    reload: std::time::Duration,
}

impl KeyRing {
    /// Loads the keys, creating the first one if there is none.
    pub async fn load(store: crate::store::Store, reload: std::time::Duration) -> anyhow::Result<Self> {
        let mut keys = store.keys().await?;
        if keys.is_empty() {
            let key = KeyMaterial::generate()?;
            let now = chrono::Utc::now();
            store.add_key(&key, now, now, chrono::Duration::zero()).await?;
            tracing::info!(kid = %key.kid, "generated the first signing key");
            keys = store.keys().await?;
        }
        Ok(Self { store, cache: tokio::sync::RwLock::new((std::time::Instant::now(), keys)), reload })
    }

    /// The key that signs now: the newest whose signing period has begun.
    pub async fn signing_key(&self) -> anyhow::Result<KeyMaterial> {
        let stale = self.cache.read().await.0.elapsed() >= self.reload;
        if stale {
            let keys = self.store.keys().await?;
            *self.cache.write().await = (std::time::Instant::now(), keys);
        }
        let now = chrono::Utc::now();
        let cache = self.cache.read().await;
        cache
            .1
            .iter()
            .filter(|k| k.signs_at(now))
            .max_by_key(|k| k.signs_from)
            // After a rotation announced for later, the old key signs on until then;
            // if every key has retired (a clock jump), the newest signs.
            .or_else(|| cache.1.iter().filter(|k| k.signs_from <= now).max_by_key(|k| k.signs_from))
            .map(|k| k.material.clone())
            .ok_or_else(|| anyhow::anyhow!("no signing key is usable now"))
    }
}

/// The published form of a public key.
pub fn public_jwk(kid: &str, x: &str) -> Jwk {
    Jwk {
        kty: "OKP".to_owned(),
        crv: Some("Ed25519".to_owned()),
        x: Some(x.to_owned()),
        kid: kid.to_owned(),
        alg: Some("EdDSA".to_owned()),
        use_: Some("sig".to_owned()),
    }
}

/// The RFC 7638 thumbprint of an Ed25519 public key, used as its key id.
pub fn thumbprint(x: &str) -> String {
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// Signs `claims` as an access token with `key`.
pub fn sign_access_token(key: &KeyMaterial, claims: &AccessClaims) -> Result<String, jsonwebtoken::errors::Error> {
    let mut header = Header::new(Algorithm::EdDSA);
    header.typ = Some(ACCESS_TOKEN_TYP.to_owned());
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(&key.private_pkcs8))
}

/// A new refresh token: 256 random bits, base64url. Only its hash is stored.
pub fn new_refresh_token() -> String {
    let bytes: [u8; 32] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The stored form of a refresh token.
pub fn hash_refresh_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_tokens_carry_256_bits_and_are_unique() {
        let a = new_refresh_token();
        assert_eq!(URL_SAFE_NO_PAD.decode(&a).unwrap().len(), 32);
        assert_ne!(a, new_refresh_token());
        assert_eq!(hash_refresh_token(&a).len(), 32);
    }

    #[test]
    fn key_ids_are_rfc7638_thumbprints() {
        // RFC 8037 appendix A.3: the thumbprint of its example Ed25519 key.
        assert_eq!(
            thumbprint("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
        let k = KeyMaterial::generate().unwrap();
        assert_eq!(k.kid, thumbprint(&k.public_x));
    }
}
