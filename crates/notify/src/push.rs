//! Web Push: a message encrypted for one browser (RFC 8291, `aes128gcm`
//! of RFC 8188), signed for by notify's VAPID key (RFC 8292), and handed
//! to the browser's push service (RFC 8030). ring does the cryptography.
//!
//! The push service answers 201 when it took the message; 404 or 410 when
//! the subscription is gone (the caller deletes it); 429 and 5xx are worth
//! another try; anything else is a refusal.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use ring::agreement::{self, ECDH_P256, EphemeralPrivateKey, UnparsedPublicKey};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use ring::{aead, hkdf};
use serde_json::json;

use crate::domain;

/// The record size written in every message: one record, as RFC 8291
/// wants, of at most 4096 bytes.
const RECORD_SIZE: u32 = 4096;

/// The most plaintext one message carries: a record less the padding
/// delimiter and the tag, and the header push services count against
/// their 4096-byte limit (RFC 8291 §4).
pub const MAX_PLAINTEXT: usize = 4096 - 86 - 16 - 1;

/// A browser's keys from its `PushSubscription`: its P-256 public key
/// (`p256dh`, 65 bytes uncompressed) and the shared authentication secret
/// (`auth`, 16 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserKeys {
    pub p256dh: Vec<u8>,
    pub auth: Vec<u8>,
}

impl BrowserKeys {
    /// The keys as a browser gives them (base64url), checked: `p256dh` a
    /// point on P-256 (an agreement with it succeeds), `auth` 16 bytes.
    pub fn parse(p256dh: &str, auth: &str) -> Result<Self, (&'static str, &'static str)> {
        let decode = |s: &str| URL_SAFE_NO_PAD.decode(s.trim_end_matches('='));
        let p256dh = decode(p256dh).map_err(|_| ("keys.p256dh", "must be base64url"))?;
        let auth = decode(auth).map_err(|_| ("keys.auth", "must be base64url"))?;
        if auth.len() != 16 {
            return Err(("keys.auth", "must be 16 bytes"));
        }
        if p256dh.len() != 65 || p256dh[0] != 4 || agree(&p256dh, |_| ()).is_err() {
            return Err(("keys.p256dh", "must be an uncompressed P-256 public key"));
        }
        Ok(Self { p256dh, auth })
    }
}

/// An ECDH agreement with the browser's key under a fresh key of ours:
/// `f` gets the shared secret, and our public key comes back with its answer.
fn agree<R>(peer: &[u8], f: impl FnOnce(&[u8]) -> R) -> Result<(Vec<u8>, R), ring::error::Unspecified> {
    let rng = SystemRandom::new();
    let private = EphemeralPrivateKey::generate(&ECDH_P256, &rng)?;
    let public = private.compute_public_key()?.as_ref().to_vec();
    let r = agreement::agree_ephemeral(private, &UnparsedPublicKey::new(&ECDH_P256, peer), f)?;
    Ok((public, r))
}

/// HKDF output lengths for ring.
struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn hkdf(salt: &[u8], ikm: &[u8], info: &[&[u8]], out: &mut [u8]) -> Result<(), ring::error::Unspecified> {
    hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(ikm).expand(info, Len(out.len()))?.fill(out)
}

/// The message's body for a browser (RFC 8291 §3.4): the `aes128gcm`
/// header (salt, record size, our public key) and the one sealed record.
/// Everything given, so the RFC's example is reproduced byte for byte.
fn seal(
    ecdh_secret: &[u8],
    keys: &BrowserKeys,
    our_public: &[u8],
    salt: &[u8; 16],
    plaintext: &[u8],
) -> Result<Vec<u8>, ring::error::Unspecified> {
    // The browser's secret and the agreement make the input key.
    let mut ikm = [0u8; 32];
    hkdf(&keys.auth, ecdh_secret, &[b"WebPush: info\0", &keys.p256dh, our_public], &mut ikm)?;
    let (mut cek, mut nonce) = ([0u8; 16], [0u8; 12]);
    hkdf(salt, &ikm, &[b"Content-Encoding: aes128gcm\0"], &mut cek)?;
    hkdf(salt, &ikm, &[b"Content-Encoding: nonce\0"], &mut nonce)?;
    let key = aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_128_GCM, &cek)?);
    // The last (only) record ends with the delimiter 2 and no padding.
    let mut record = Vec::with_capacity(plaintext.len() + 17);
    record.extend_from_slice(plaintext);
    record.push(2);
    key.seal_in_place_append_tag(aead::Nonce::assume_unique_for_key(nonce), aead::Aad::empty(), &mut record)?;
    let mut body = Vec::with_capacity(21 + our_public.len() + record.len());
    body.extend_from_slice(salt);
    body.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    body.push(u8::try_from(our_public.len()).map_err(|_| ring::error::Unspecified)?);
    body.extend_from_slice(our_public);
    body.extend_from_slice(&record);
    Ok(body)
}

/// Encrypts `plaintext` (at most [`MAX_PLAINTEXT`] bytes) for the browser
/// holding `keys`, under a fresh key and salt.
pub fn encrypt(keys: &BrowserKeys, plaintext: &[u8]) -> Result<Vec<u8>, ring::error::Unspecified> {
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(ring::error::Unspecified);
    }
    let mut salt = [0u8; 16];
    SystemRandom::new().fill(&mut salt)?;
    let (public, secret) = agree(&keys.p256dh, <[u8]>::to_vec)?;
    seal(&secret, keys, &public, &salt, plaintext)
}

/// Notify's VAPID identity (RFC 8292): the P-256 key push services know
/// notify by (browsers subscribe with its public half), and a contact.
pub struct Vapid {
    pair: EcdsaKeyPair,
    subject: String,
}

impl Vapid {
    /// A new key, as PKCS#8 (kept in the database at the first start).
    pub fn generate() -> Result<Vec<u8>, ring::error::Unspecified> {
        let rng = SystemRandom::new();
        Ok(EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)?.as_ref().to_vec())
    }

    pub fn new(pkcs8: &[u8], subject: String) -> anyhow::Result<Self> {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &SystemRandom::new())
            .map_err(|e| anyhow::anyhow!("the VAPID key is not a P-256 PKCS#8 key: {e}"))?;
        Ok(Self { pair, subject })
    }

    /// The public key, base64url: a browser's `applicationServerKey`.
    pub fn public_key(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.pair.public_key().as_ref())
    }

    /// The `Authorization` header for a message to `endpoint`: a JWT for
    /// the endpoint's origin, valid 12 hours, signed ES256.
    pub fn authorization(&self, endpoint: &url::Url, now: DateTime<Utc>) -> Result<String, ring::error::Unspecified> {
        let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ES256"}"#);
        let claims = json!({
            "aud": endpoint.origin().ascii_serialization(),
            "exp": (now + chrono::Duration::hours(12)).timestamp(),
            "sub": self.subject,
        });
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        let input = format!("{header}.{claims}");
        let signature = self.pair.sign(&SystemRandom::new(), input.as_bytes())?;
        Ok(format!("vapid t={input}.{}, k={}", URL_SAFE_NO_PAD.encode(signature.as_ref()), self.public_key()))
    }
}

/// How a push service answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It took the message (201).
    Accepted,
    /// The subscription is gone (404, 410): delete it.
    Gone,
    /// Worth another try later (429, 5xx, no answer).
    Retry(String),
    /// Refused for good (a 4xx: a bad key, too large).
    Refused(String),
}

/// Resolves push services' host names to public addresses only, unless
/// `allow_local`: an endpoint whose name points into notify's own network
/// is not called (the addresses are checked when the connection is made,
/// so a name that changes after the subscription is caught too).
struct PublicOnly {
    allow_local: bool,
}

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_local = self.allow_local;
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> =
                addrs.into_iter().filter(|a| allow_local || domain::public_ip(a.ip())).collect();
            if allowed.is_empty() {
                return Err(format!("{} has no public address", name.as_str()).into());
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// Sends Web Push messages.
pub struct Pusher {
    http: reqwest::Client,
    pub vapid: Vapid,
    /// How long a push service keeps a message for an offline browser.
    ttl: Duration,
    allow_local: bool,
}

impl Pusher {
    pub fn new(vapid: Vapid, ttl: Duration, allow_local: bool) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(PublicOnly { allow_local }))
            .build()?;
        Ok(Self { http, vapid, ttl, allow_local })
    }

    /// Whether notify takes `endpoint` as a subscription's.
    pub fn endpoint_problem(&self, endpoint: &url::Url) -> Option<&'static str> {
        domain::endpoint_problem(endpoint, self.allow_local)
    }

    /// Sends `payload` to one browser; `urgent` for what should wake a
    /// phone. `topic` (the delivery's id, 32 characters): a push service
    /// keeps only the last message of a topic for an offline browser
    /// (RFC 8030 §5.4), so a message sent again after a crash replaces its
    /// first copy instead of showing twice.
    pub async fn push(&self, endpoint: &str, keys: &BrowserKeys, payload: &[u8], urgent: bool, topic: &str) -> Outcome {
        let Ok(url) = url::Url::parse(endpoint) else { return Outcome::Gone };
        if let Some(problem) = self.endpoint_problem(&url) {
            return Outcome::Refused(format!("the endpoint {problem}"));
        }
        let (Ok(body), Ok(authorization)) = (encrypt(keys, payload), self.vapid.authorization(&url, Utc::now())) else {
            return Outcome::Refused("the message could not be encrypted".into());
        };
        let sent = self
            .http
            .post(url)
            .header("Authorization", authorization)
            .header("Content-Encoding", "aes128gcm")
            .header("Content-Type", "application/octet-stream")
            .header("TTL", self.ttl.as_secs().to_string())
            .header("Urgency", if urgent { "high" } else { "normal" })
            .header("Topic", topic)
            .body(body)
            .send()
            .await;
        match sent {
            Err(e) => Outcome::Retry(format!("the push service did not answer: {e}")),
            Ok(r) => match r.status().as_u16() {
                200..=299 => Outcome::Accepted,
                404 | 410 => Outcome::Gone,
                s @ (429 | 500..=599) => Outcome::Retry(format!("the push service answered {s}")),
                s => Outcome::Refused(format!("the push service answered {s}")),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};

    use super::*;

    fn b64(s: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(s).unwrap()
    }

    /// RFC 8291 appendix A: from its ECDH secret, salt and keys to the
    /// body sent, byte for byte.
    #[test]
    fn a_message_seals_to_the_rfc_8291_example() {
        let keys = BrowserKeys {
            p256dh: b64("BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"),
            auth: b64("BTBZMqHH6r4Tts7J_aSIgg"),
        };
        let ours = b64("BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8");
        let salt: [u8; 16] = b64("DGv6ra1nlYgDCS1FRnbzlw").try_into().unwrap();
        let secret = b64("kyrL1jIIOHEzg3sM2ZWRHDRB62YACZhhSlknJ672kSs");
        let body = seal(&secret, &keys, &ours, &salt, b"When I grow up, I want to be a watermelon").unwrap();
        assert_eq!(
            URL_SAFE_NO_PAD.encode(body),
            "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN"
        );
    }

    #[test]
    fn browser_keys_are_checked() {
        let good = "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
        assert!(BrowserKeys::parse(good, "BTBZMqHH6r4Tts7J_aSIgg").is_ok());
        assert_eq!(BrowserKeys::parse(good, "BTBZ").unwrap_err().0, "keys.auth");
        assert_eq!(BrowserKeys::parse("!!", "BTBZMqHH6r4Tts7J_aSIgg").unwrap_err().0, "keys.p256dh");
        // 65 bytes, but not a point on the curve.
        let off_curve = URL_SAFE_NO_PAD.encode([[4u8].as_slice(), &[1u8; 64]].concat());
        assert_eq!(BrowserKeys::parse(&off_curve, "BTBZMqHH6r4Tts7J_aSIgg").unwrap_err().0, "keys.p256dh");
    }

    #[test]
    fn the_vapid_token_is_signed_for_the_endpoints_origin() {
        let vapid = Vapid::new(&Vapid::generate().unwrap(), "mailto:ops@panal.example".into()).unwrap();
        let url = url::Url::parse("https://push.example:8443/send/abc?x=1").unwrap();
        let header = vapid.authorization(&url, Utc::now()).unwrap();
        let (t, k) = header.strip_prefix("vapid t=").unwrap().split_once(", k=").unwrap();
        assert_eq!(k, vapid.public_key());
        let (input, signature) = t.rsplit_once('.').unwrap();
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, b64(k)).verify(input.as_bytes(), &b64(signature)).unwrap();
        let claims: serde_json::Value = serde_json::from_slice(&b64(input.split('.').nth(1).unwrap())).unwrap();
        assert_eq!(claims["aud"], "https://push.example:8443");
        assert_eq!(claims["sub"], "mailto:ops@panal.example");
    }
}
