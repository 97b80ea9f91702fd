//! Sign-in with external identity providers: 42 intra and any OpenID Connect
//! provider, configured by issuer (discovery) or by explicit URLs.
//!
//! Auth is the OAuth client here: authorization code flow with PKCE (S256),
//! a single-use `state` stored hashed, the redirect URI matched exactly
//! against the provider's allow-list and sent again at the token exchange.
//! Identity comes from the userinfo endpoint, fetched over TLS with the
//! access token the code was exchanged for.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kit::Secret;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

/// One provider, `[auth.providers.<name>]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSettings {
    /// `42` fills in 42 intra's URLs, scope and claim names.
    pub preset: Option<String>,
    /// Shown on the sign-in button.
    pub display_name: Option<String>,
    /// An OpenID issuer: endpoints are discovered from
    /// `<issuer>/.well-known/openid-configuration`.
    pub issuer: Option<String>,
    pub authorize_url: Option<String>,
    pub token_url: Option<String>,
    pub userinfo_url: Option<String>,
    pub client_id: String,
    pub client_secret: Secret<String>,
    /// Default: `openid email profile` (42: `public`).
    pub scopes: Option<Vec<String>>,
    /// The web app's pages the provider may send the browser back to; a
    /// sign-in names one, matched exactly.
    pub redirect_uris: Vec<String>,
    /// Userinfo claims: subject (default `sub`; 42 `id`), email, name.
    pub subject_claim: Option<String>,
    pub email_claim: Option<String>,
    pub name_claim: Option<String>,
    /// The provider checks every address it reports (42 does): treat emails
    /// as verified without an `email_verified` claim.
    #[serde(default)]
    pub trust_email: bool,
}

/// The endpoints of a provider, once known.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub authorize: String,
    pub token: String,
    pub userinfo: String,
}

#[derive(Debug)]
pub struct Provider {
    pub name: String,
    pub display_name: String,
    pub settings: ProviderSettings,
    /// `settings.client_secret`, following its file when it has one
    /// (`PANAL_AUTH__PROVIDERS__<NAME>__CLIENT_SECRET_FILE`).
    client_secret: kit::secret::LiveSecret,
    pub scopes: Vec<String>,
    subject_claim: String,
    email_claim: String,
    name_claim: String,
    trust_email: bool,
    endpoints: OnceCell<Endpoints>,
}

/// Who the provider says signed in.
#[derive(Debug, Clone)]
pub struct ExternalUser {
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// The provider answered the token request with an error (a used or
    /// foreign code, a wrong verifier…).
    #[error("the provider refused the authorization code ({0})")]
    CodeRefused(String),
    #[error("the identity provider is unreachable or answered nonsense: {0}")]
    Upstream(String),
}

#[derive(Debug)]
pub struct Providers {
    providers: BTreeMap<String, Provider>,
    http: reqwest::Client,
}

fn bad(name: &str, what: &str) -> anyhow::Error {
    anyhow::anyhow!("invalid configuration: auth.providers.{name}: {what}")
}

impl Providers {
    pub fn new(settings: &BTreeMap<String, ProviderSettings>, config: &kit::config::Config) -> anyhow::Result<Self> {
        let mut providers = BTreeMap::new();
        for (name, s) in settings {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                return Err(bad(name, "names are letters, digits, `-` and `_`"));
            }
            let is_42 = s.preset.as_deref() == Some("42");
            if let Some(p) = &s.preset
                && p != "42"
            {
                return Err(bad(name, "the only preset is `42`"));
            }
            let explicit = [&s.authorize_url, &s.token_url, &s.userinfo_url];
            let all = explicit.iter().all(|u| u.is_some());
            if s.issuer.is_none() && !all && !is_42 {
                return Err(bad(
                    name,
                    "set `issuer` (OpenID discovery) or all of authorize_url, token_url, userinfo_url",
                ));
            }
            if s.redirect_uris.is_empty() {
                return Err(bad(name, "redirect_uris must name at least one page of the web app"));
            }
            for u in s.redirect_uris.iter().chain(s.issuer.iter()).chain(explicit.into_iter().flatten()) {
                let parsed = url::Url::parse(u).map_err(|e| bad(name, &format!("{u:?} is not a URL: {e}")))?;
                if parsed.fragment().is_some() {
                    return Err(bad(name, &format!("{u:?} must not have a fragment")));
                }
            }
            let default_scopes =
                if is_42 { vec!["public".to_owned()] } else { vec!["openid".into(), "email".into(), "profile".into()] };
            let endpoints = OnceCell::new();
            if all || (is_42 && s.issuer.is_none()) {
                let or = |u: &Option<String>, d: &str| u.clone().unwrap_or_else(|| d.to_owned());
                let _ = endpoints.set(Endpoints {
                    authorize: or(&s.authorize_url, "https://api.intra.42.fr/oauth/authorize"),
                    token: or(&s.token_url, "https://api.intra.42.fr/oauth/token"),
                    userinfo: or(&s.userinfo_url, "https://api.intra.42.fr/v2/me"),
                });
            }
            providers.insert(
                name.clone(),
                Provider {
                    name: name.clone(),
                    display_name: s
                        .display_name
                        .clone()
                        .unwrap_or_else(|| if is_42 { "42".into() } else { name.clone() }),
                    scopes: s.scopes.clone().unwrap_or(default_scopes),
                    subject_claim: s
                        .subject_claim
                        .clone()
                        .unwrap_or_else(|| if is_42 { "id".into() } else { "sub".into() }),
                    email_claim: s.email_claim.clone().unwrap_or_else(|| "email".into()),
                    name_claim: s
                        .name_claim
                        .clone()
                        .unwrap_or_else(|| if is_42 { "displayname".into() } else { "name".into() }),
                    trust_email: s.trust_email || is_42,
                    client_secret: config
                        .live_secret(&format!("auth.providers.{name}.client_secret"), s.client_secret.clone()),
                    settings: s.clone(),
                    endpoints,
                },
            );
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| anyhow::anyhow!("building the identity providers' HTTP client: {e}"))?;
        Ok(Self { providers, http })
    }

    pub fn get(&self, name: &str) -> Option<&Provider> {
        self.providers.get(name)
    }

    pub fn all(&self) -> impl Iterator<Item = &Provider> {
        self.providers.values()
    }

    /// The provider's endpoints, discovered on first use when configured by issuer.
    pub async fn endpoints(&self, p: &Provider) -> Result<Endpoints, OAuthError> {
        p.endpoints
            .get_or_try_init(|| async {
                let issuer = p.settings.issuer.clone().unwrap_or_default();
                let url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
                let doc: Value = self.get_json(self.http.get(&url)).await?;
                // OpenID Connect Discovery §4.3: the document must name the issuer we asked.
                if doc["issuer"].as_str().map(|s| s.trim_end_matches('/')) != Some(issuer.trim_end_matches('/')) {
                    return Err(OAuthError::Upstream(format!("{url} names another issuer")));
                }
                let field = |k: &str| {
                    p.settings_url(k)
                        .or_else(|| doc[k].as_str().map(str::to_owned))
                        .ok_or_else(|| OAuthError::Upstream(format!("{url} has no {k}")))
                };
                Ok(Endpoints {
                    authorize: field("authorization_endpoint")?,
                    token: field("token_endpoint")?,
                    userinfo: field("userinfo_endpoint")?,
                })
            })
            .await
            .cloned()
    }

    async fn get_json(&self, req: reqwest::RequestBuilder) -> Result<Value, OAuthError> {
        let res = req.send().await.map_err(|e| OAuthError::Upstream(e.to_string()))?;
        if !res.status().is_success() {
            return Err(OAuthError::Upstream(format!("answered {}", res.status())));
        }
        let bytes = res.bytes().await.map_err(|e| OAuthError::Upstream(e.to_string()))?;
        if bytes.len() > 256 * 1024 {
            return Err(OAuthError::Upstream("answer too large".into()));
        }
        serde_json::from_slice(&bytes).map_err(|e| OAuthError::Upstream(format!("not JSON: {e}")))
    }

    /// Exchanges `code` (with its PKCE verifier) and asks who signed in.
    pub async fn identify(
        &self,
        p: &Provider,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> Result<ExternalUser, OAuthError> {
        let endpoints = self.endpoints(p).await?;
        let secret = p.client_secret.current();
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
            ("client_id", p.settings.client_id.as_str()),
            ("client_secret", secret.expose().as_str()),
        ];
        let res = self
            .http
            .post(&endpoints.token)
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| OAuthError::Upstream(e.to_string()))?;
        let status = res.status();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        if status.is_client_error() {
            let code = body["error"].as_str().unwrap_or("invalid_grant");
            return Err(OAuthError::CodeRefused(code.chars().take(64).collect()));
        }
        if !status.is_success() {
            return Err(OAuthError::Upstream(format!("token endpoint answered {status}")));
        }
        let access = body["access_token"]
            .as_str()
            .ok_or_else(|| OAuthError::Upstream("token response has no access_token".into()))?;
        let info = self.get_json(self.http.get(&endpoints.userinfo).bearer_auth(access)).await?;
        let text = |v: &Value| match v {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        let subject = text(&info[&p.subject_claim])
            .filter(|s| s.len() <= 255)
            .ok_or_else(|| OAuthError::Upstream(format!("userinfo has no {:?}", p.subject_claim)))?;
        let email = text(&info[&p.email_claim]).map(|e| e.trim().to_lowercase());
        let email_verified =
            p.trust_email || matches!(&info["email_verified"], Value::Bool(true)) || info["email_verified"] == "true";
        Ok(ExternalUser { subject, email, email_verified, name: text(&info[&p.name_claim]) })
    }
}

impl Provider {
    fn settings_url(&self, key: &str) -> Option<String> {
        match key {
            "authorization_endpoint" => self.settings.authorize_url.clone(),
            "token_endpoint" => self.settings.token_url.clone(),
            "userinfo_endpoint" => self.settings.userinfo_url.clone(),
            _ => None,
        }
    }

    /// The authorization URL the browser goes to.
    pub fn authorization_url(
        &self,
        endpoints: &Endpoints,
        redirect_uri: &str,
        state: &str,
        challenge: &str,
        nonce: &str,
    ) -> Result<String, OAuthError> {
        let mut url = url::Url::parse(&endpoints.authorize)
            .map_err(|e| OAuthError::Upstream(format!("authorization endpoint is not a URL: {e}")))?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.settings.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", &self.scopes.join(" "))
            .append_pair("state", state)
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("nonce", nonce);
        Ok(url.to_string())
    }
}

/// A PKCE verifier (RFC 7636: 43 characters from 256 random bits) and its S256 challenge.
pub fn pkce() -> (String, String) {
    let verifier = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_rfc7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert_eq!(
            URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let (v, c) = pkce();
        assert_eq!(v.len(), 43);
        assert_eq!(c, URL_SAFE_NO_PAD.encode(Sha256::digest(v.as_bytes())));
    }
}
