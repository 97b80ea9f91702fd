//! The route table: which upstream serves a path, and which paths may be used
//! without an access token.

use std::collections::HashMap;

use http::Uri;

use crate::Upstream;

/// Paths reachable without an access token. Everything else under `/v1/`
/// needs a valid one before the gateway forwards it.
pub const PUBLIC_PATHS: &[&str] = &[
    "/v1/auth/register",
    "/v1/auth/login",
    "/v1/auth/refresh",
    "/v1/auth/logout",
    "/v1/auth/login/mfa",
    "/v1/auth/email/verify",
    "/v1/auth/password/forgot",
    "/v1/auth/password/reset",
    "/v1/auth/oauth/providers",
    // OAuth 2.0 endpoints authenticate their clients themselves (Basic).
    "/v1/auth/token",
    "/v1/auth/introspect",
    "/v1/auth/revoke",
    "/.well-known/jwks.json",
    "/.well-known/openid-configuration",
];

/// Paths reachable without an access token, with `*` standing for one
/// segment: avatars are shown in `<img>` tags, which send no token.
pub const PUBLIC_PATTERNS: &[&str] = &["/v1/users/*/avatar", "/v1/auth/oauth/*/start", "/v1/auth/oauth/*/callback"];

fn matches(pattern: &str, path: &str) -> bool {
    let (mut p, mut q) = (pattern.split('/'), path.split('/'));
    loop {
        match (p.next(), q.next()) {
            (None, None) => return true,
            (Some("*"), Some(seg)) if !seg.is_empty() => {}
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

/// Where a request goes.
#[derive(Debug, Clone)]
pub struct Target {
    pub service: &'static str,
    /// `scheme://authority` of the upstream.
    pub base: String,
    /// The route label for metrics and logs (`/v1/auth`).
    pub label: String,
    /// Whether the path may be used without a token.
    pub public: bool,
}

#[derive(Debug, Clone)]
pub struct RouteTable {
    by_service: HashMap<&'static str, (String, String)>,
}

impl RouteTable {
    pub fn new(upstreams: &[Upstream]) -> anyhow::Result<Self> {
        let mut by_service = HashMap::new();
        for u in upstreams {
            let uri: Uri =
                u.url.parse().map_err(|e| anyhow::anyhow!("upstream {} has a bad URL {:?}: {e}", u.service, u.url))?;
            if uri.scheme_str() != Some("http") || uri.authority().is_none() {
                anyhow::bail!("upstream {} must be an http://host:port URL, got {:?}", u.service, u.url);
            }
            by_service.insert(u.service, (u.url.trim_end_matches('/').to_owned(), format!("/v1/{}", u.service)));
        }
        Ok(Self { by_service })
    }

    /// The upstream for `path`, if any: `/v1/<service>/…`, and the discovery
    /// documents under `/.well-known/`, which auth serves.
    pub fn resolve(&self, path: &str) -> Option<Target> {
        let service = if let Some(rest) = path.strip_prefix("/v1/") {
            rest.split('/').next().filter(|s| !s.is_empty())?
        } else if path.starts_with("/.well-known/") {
            "auth"
        } else {
            return None;
        };
        let (service, (base, label)) = self.by_service.get_key_value(service)?;
        let label = if path.starts_with("/.well-known/") { path.to_owned() } else { label.clone() };
        let public = PUBLIC_PATHS.contains(&path) || PUBLIC_PATTERNS.iter().any(|p| matches(p, path));
        Some(Target { service, base: base.clone(), label, public })
    }

    pub fn upstreams(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.by_service.iter().map(|(s, (base, _))| (*s, base.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        RouteTable::new(&[Upstream { service: "auth", url: "http://127.0.0.1:8001".into() }]).unwrap()
    }

    #[test]
    fn paths_resolve_to_their_service() {
        let t = table();
        let login = t.resolve("/v1/auth/login").unwrap();
        assert_eq!((login.service, login.public, login.label.as_str()), ("auth", true, "/v1/auth"));
        let me = t.resolve("/v1/auth/me").unwrap();
        assert!(!me.public);
        assert!(t.resolve("/.well-known/jwks.json").unwrap().public);
        assert!(t.resolve("/v1/users/me").is_none());
        assert!(t.resolve("/v1/").is_none());
        assert!(t.resolve("/v2/auth/login").is_none());
    }

    #[test]
    fn public_paths_match_exactly() {
        let t = table();
        assert!(!t.resolve("/v1/auth/login/../me").unwrap().public);
        assert!(!t.resolve("/v1/auth/loginx").unwrap().public);
    }

    #[test]
    fn avatars_are_public_and_only_avatars() {
        let t = RouteTable::new(&[Upstream { service: "users", url: "http://127.0.0.1:8002".into() }]).unwrap();
        assert!(t.resolve("/v1/users/0190f0f0-0000-7000-8000-000000000000/avatar").unwrap().public);
        assert!(!t.resolve("/v1/users/me").unwrap().public);
        assert!(!t.resolve("/v1/users/x/avatar/extra").unwrap().public);
        assert!(!t.resolve("/v1/users//avatar").unwrap().public);
    }

    #[test]
    fn upstreams_must_be_plain_http_urls() {
        assert!(RouteTable::new(&[Upstream { service: "auth", url: "auth:8001".into() }]).is_err());
    }
}
