//! Token material: signing keys (Ed25519, or RSA for RS256), access tokens
//! (JWT) and refresh tokens.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use kit::auth::{ACCESS_TOKEN_TYP, AccessClaims, Jwk};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The algorithm auth's new keys sign with (`auth.signing_algorithm`).
/// EdDSA (Ed25519) is the default: small, fast, deterministic. RS256 is the
/// one every JWT library accepts out of the box (RFC 9068 requires it of
/// access-token verifiers), for resource servers built on one without EdDSA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum SigningAlgorithm {
    #[default]
    EdDSA,
    RS256,
}

impl SigningAlgorithm {
    /// The JOSE name, as stored beside the key and published in the JWKS.
    pub fn name(self) -> &'static str {
        match self {
            SigningAlgorithm::EdDSA => "EdDSA",
            SigningAlgorithm::RS256 => "RS256",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "EdDSA" => Some(SigningAlgorithm::EdDSA),
            "RS256" => Some(SigningAlgorithm::RS256),
            _ => None,
        }
    }
}

/// RSA keys auth generates: 2048 bits, the size RFC 7518 §3.3 requires at least.
const RSA_BITS: usize = 2048;

/// A signing key as stored: the private key (DER: PKCS#8 for Ed25519,
/// PKCS#1 for RSA) and the public key's JWK members, base64url (`x` for
/// Ed25519; `n.e` for RSA, joined by a dot, which base64url never holds).
#[derive(Clone)]
pub struct KeyMaterial {
    pub kid: String,
    pub algorithm: SigningAlgorithm,
    pub private_der: Vec<u8>,
    pub public: String,
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyMaterial")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl KeyMaterial {
    /// A fresh key for `algorithm`.
    pub fn generate(algorithm: SigningAlgorithm) -> anyhow::Result<Self> {
        let (private_der, public) = match algorithm {
            SigningAlgorithm::EdDSA => {
                // Any 32 bytes are an Ed25519 secret key; these come from rand's
                // thread generator, a ChaCha CSPRNG seeded and reseeded by the OS.
                let signing = SigningKey::from_bytes(&rand::random());
                let der = signing.to_pkcs8_der().map_err(|e| anyhow::anyhow!("encoding a new signing key: {e}"))?;
                (der.as_bytes().to_vec(), URL_SAFE_NO_PAD.encode(signing.verifying_key().to_bytes()))
            }
            SigningAlgorithm::RS256 => {
                let key = rsa::PrivateKey::new(&mut rand::rng(), RSA_BITS)
                    .map_err(|e| anyhow::anyhow!("generating an RSA key: {e}"))?;
                let der = key.to_pkcs1_der().map_err(|e| anyhow::anyhow!("encoding a new signing key: {e}"))?;
                let (n, e) = (key.n_bytes(), key.e_bytes());
                (der.as_bytes().to_vec(), format!("{}.{}", URL_SAFE_NO_PAD.encode(n), URL_SAFE_NO_PAD.encode(e)))
            }
        };
        let mut key = Self { kid: String::new(), algorithm, private_der, public };
        key.kid = thumbprint(&key.jwk());
        Ok(key)
    }

    /// The published form of the public key.
    pub fn jwk(&self) -> Jwk {
        let mut jwk = Jwk {
            kty: String::new(),
            crv: None,
            x: None,
            n: None,
            e: None,
            kid: self.kid.clone(),
            alg: Some(self.algorithm.name().to_owned()),
            use_: Some("sig".to_owned()),
        };
        match self.algorithm {
            SigningAlgorithm::EdDSA => {
                jwk.kty = "OKP".to_owned();
                jwk.crv = Some("Ed25519".to_owned());
                jwk.x = Some(self.public.clone());
            }
            SigningAlgorithm::RS256 => {
                let (n, e) = self.public.split_once('.').unwrap_or((&self.public, ""));
                jwk.kty = "RSA".to_owned();
                jwk.n = Some(n.to_owned());
                jwk.e = Some(e.to_owned());
            }
        }
        jwk
    }

    fn encoding_key(&self) -> EncodingKey {
        match self.algorithm {
            SigningAlgorithm::EdDSA => EncodingKey::from_ed_der(&self.private_der),
            SigningAlgorithm::RS256 => EncodingKey::from_rsa_der(&self.private_der),
        }
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
    /// Loads the keys. When none signs (or is due to sign) with `algorithm`
    /// — a new database, or `auth.signing_algorithm` changed — a new key of
    /// it signs from now on; the keys it replaces stay published `grace`
    /// longer.
    pub async fn load(
        store: crate::store::Store,
        reload: std::time::Duration,
        algorithm: SigningAlgorithm,
        grace: chrono::Duration,
    ) -> anyhow::Result<Self> {
        let now = chrono::Utc::now();
        let mut keys = store.keys().await?;
        let current = keys.iter().any(|k| k.material.algorithm == algorithm && k.retired_at.is_none_or(|r| r > now));
        if !current {
            let key = KeyMaterial::generate(algorithm)?;
            store.add_key(&key, now, now, grace).await?;
            tracing::info!(kid = %key.kid, algorithm = algorithm.name(), "generated a signing key");
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

/// The RFC 7638 thumbprint of a public key (its required members, in
/// lexicographic order), used as its key id.
pub fn thumbprint(jwk: &Jwk) -> String {
    let member = |v: &Option<String>| v.clone().unwrap_or_default();
    let canonical = match jwk.kty.as_str() {
        "RSA" => format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, member(&jwk.e), member(&jwk.n)),
        _ => format!(r#"{{"crv":"{}","kty":"{}","x":"{}"}}"#, member(&jwk.crv), jwk.kty, member(&jwk.x)),
    };
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// Signs `claims` as an access token with `key`.
pub fn sign_access_token(key: &KeyMaterial, claims: &AccessClaims) -> Result<String, jsonwebtoken::errors::Error> {
    let algorithm = match key.algorithm {
        SigningAlgorithm::EdDSA => Algorithm::EdDSA,
        SigningAlgorithm::RS256 => Algorithm::RS256,
    };
    let mut header = Header::new(algorithm);
    header.typ = Some(ACCESS_TOKEN_TYP.to_owned());
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, claims, &key.encoding_key())
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
        let jwk = |kty: &str, crv: Option<&str>, x: Option<&str>, n: Option<&str>, e: Option<&str>| Jwk {
            kty: kty.to_owned(),
            crv: crv.map(str::to_owned),
            x: x.map(str::to_owned),
            n: n.map(str::to_owned),
            e: e.map(str::to_owned),
            kid: String::new(),
            alg: None,
            use_: None,
        };
        // RFC 8037 appendix A.3: the thumbprint of its example Ed25519 key.
        let ed = jwk("OKP", Some("Ed25519"), Some("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"), None, None);
        assert_eq!(thumbprint(&ed), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
        // RFC 7638 section 3.1: its example RSA key.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let rsa = jwk("RSA", None, None, Some(n), Some("AQAB"));
        assert_eq!(thumbprint(&rsa), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
        for algorithm in [SigningAlgorithm::EdDSA, SigningAlgorithm::RS256] {
            let k = KeyMaterial::generate(algorithm).unwrap();
            assert_eq!(k.kid, thumbprint(&k.jwk()));
            assert_eq!(k.jwk().alg.as_deref(), Some(algorithm.name()));
        }
    }
}
