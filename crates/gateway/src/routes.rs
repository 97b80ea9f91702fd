//! The route table: which upstream serves a path, and which paths may be used
//! without an access token. Built from the service map and `[gateway]`
//! (extra instances, versioned routes, a fallback for a legacy application),
//! and rebuilt on reload.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use serde::Deserialize;

use crate::balance::Pool;
use crate::{Settings, Upstream};

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
    // One-click unsubscribe (RFC 8058): a mail client POSTs, signed link in hand.
    "/v1/notify/unsubscribe",
    // The e-mail provider's delivery events (bounces, complaints): signed, no token.
    "/v1/notify/webhooks/email",
    "/v1/notify/webhooks/sms",
    "/.well-known/jwks.json",
    "/.well-known/oauth-authorization-server",
];

/// Paths reachable without an access token, each `prefix*suffix` with `*`
/// standing for one segment: avatars are shown in `<img>` tags, which send
/// no token. (Kept split: they are tried on every request to a protected
/// route.)
pub const PUBLIC_PATTERNS: &[(&str, &str)] =
    &[("/v1/users/", "/avatar"), ("/v1/auth/oauth/", "/start"), ("/v1/auth/oauth/", "/callback")];

/// Services whose whole API is public: the ledger's proofs are for anyone
/// to check, and hold no personal data.
pub const PUBLIC_SERVICES: &[&str] = &["ledger"];

/// Whether `path` is `prefix`, one non-empty segment, then `suffix`.
fn matches((prefix, suffix): (&str, &str), path: &str) -> bool {
    path.len() > prefix.len() + suffix.len()
        && path.starts_with(prefix)
        && path.ends_with(suffix)
        && !path.as_bytes()[prefix.len()..path.len() - suffix.len()].contains(&b'/')
}

/// A route added in configuration: `[[gateway.routes]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSettings {
    /// A path prefix, matched at segment boundaries (`/v2/users` matches
    /// `/v2/users` and `/v2/users/…`, not `/v2/usersx`).
    pub prefix: String,
    /// The upstream: a service of the map or a name in `[gateway.upstreams]`.
    pub upstream: String,
    /// Per-route upstream timeout, in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Reachable without an access token (the upstream checks its callers).
    #[serde(default)]
    pub public: bool,
}

/// A route: a path prefix and the pool it goes to.
#[derive(Debug, Clone)]
pub struct Route {
    pub prefix: String,
    pub pool: Arc<Pool>,
    /// The route label for metrics and logs (`/v1/auth`).
    pub label: Arc<str>,
    pub timeout: Duration,
    pub public: bool,
}

/// Where a request goes.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub route: &'a Route,
    /// Whether the path may be used without a token.
    pub public: bool,
}

/// The route table: longest prefix first, then the fallback.
#[derive(Debug)]
pub struct RouteTable {
    routes: Vec<Arc<Route>>,
    fallback: Option<Arc<Route>>,
    pub pools: BTreeMap<String, Arc<Pool>>,
}

fn check_url(name: &str, url: &str) -> anyhow::Result<()> {
    let uri: Uri = url.parse().map_err(|e| anyhow::anyhow!("upstream {name} has a bad URL {url:?}: {e}"))?;
    if uri.scheme_str() != Some("http") || uri.authority().is_none() || uri.path().len() > 1 {
        anyhow::bail!("upstream {name} must be an http://host:port URL, got {url:?}");
    }
    Ok(())
}

impl RouteTable {
    /// The table for the services at `defaults` (`/v1/<service>` each, and
    /// `/.well-known/` to auth), with `settings`' extra upstreams, routes and
    /// fallback. Pools of `previous` whose instances are unchanged are kept,
    /// with their health, breaker and budget (a reload drops nothing).
    pub fn build(defaults: &[Upstream], settings: &Settings, previous: Option<&RouteTable>) -> anyhow::Result<Self> {
        let mut instances: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for u in defaults {
            instances.insert(u.service.to_owned(), vec![u.url.trim_end_matches('/').to_owned()]);
        }
        for (name, urls) in &settings.upstreams {
            if urls.is_empty() {
                anyhow::bail!("invalid configuration: gateway.upstreams.{name} has no instance");
            }
            instances.insert(name.clone(), urls.iter().map(|u| u.trim_end_matches('/').to_owned()).collect());
        }
        let mut pools = BTreeMap::new();
        for (name, urls) in &instances {
            for url in urls {
                check_url(name, url)?;
            }
            let kept = previous
                .and_then(|p| p.pools.get(name))
                .filter(|p| p.urls() == urls.iter().map(String::as_str).collect::<Vec<_>>());
            let pool = match kept {
                Some(p) => p.clone(),
                None => {
                    let mut pool = Pool::new(
                        name,
                        urls,
                        settings.balance,
                        settings.breaker.clone(),
                        settings.retry.clone(),
                        settings.outlier.clone(),
                    );
                    pool.lenient_health = settings.fallback.as_deref() == Some(name.as_str());
                    pool.health_path = settings.health.paths.get(name).cloned();
                    Arc::new(pool)
                }
            };
            pools.insert(name.clone(), pool);
        }
        let default_timeout = Duration::from_millis(settings.upstream_timeout_ms);
        let pool_of = |name: &str| {
            pools
                .get(name)
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("invalid configuration: no upstream is named {name:?}"))
        };
        let mut routes = Vec::new();
        for u in defaults {
            routes.push(Arc::new(Route {
                prefix: format!("/v1/{}", u.service),
                pool: pool_of(u.service)?,
                label: format!("/v1/{}", u.service).into(),
                timeout: default_timeout,
                public: PUBLIC_SERVICES.contains(&u.service),
            }));
        }
        if pools.contains_key("auth") {
            routes.push(Arc::new(Route {
                prefix: "/.well-known".into(),
                pool: pool_of("auth")?,
                label: "/.well-known".into(),
                timeout: default_timeout,
                public: false,
            }));
        }
        // Clients' one socket (realtime authenticates it by the token in its
        // connect command: browsers cannot put a token on a WebSocket).
        if pools.contains_key("realtime") {
            routes.push(Arc::new(Route {
                prefix: "/v1/ws".into(),
                pool: pool_of("realtime")?,
                label: "/v1/ws".into(),
                timeout: default_timeout,
                public: true,
            }));
        }
        for r in &settings.routes {
            if !r.prefix.starts_with('/') || r.prefix.len() < 2 || r.prefix.ends_with('/') {
                anyhow::bail!(
                    "invalid configuration: gateway route prefix {:?} must start with / and not end with one",
                    r.prefix
                );
            }
            routes.retain(|existing| existing.prefix != r.prefix);
            routes.push(Arc::new(Route {
                prefix: r.prefix.clone(),
                pool: pool_of(&r.upstream)?,
                label: r.prefix.as_str().into(),
                timeout: r.timeout_ms.map_or(default_timeout, Duration::from_millis),
                public: r.public,
            }));
        }
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        let fallback = match &settings.fallback {
            Some(name) => Some(Arc::new(Route {
                prefix: "/".into(),
                pool: pool_of(name)?,
                label: "fallback".into(),
                timeout: default_timeout,
                // The application behind the fallback checks its own callers.
                public: true,
            })),
            None => None,
        };
        Ok(Self { routes, fallback, pools })
    }

    /// The route for `path`, if any.
    pub fn resolve(&self, path: &str) -> Option<Target<'_>> {
        let route = self
            .routes
            .iter()
            .find(|r| {
                path == r.prefix || path.strip_prefix(r.prefix.as_str()).is_some_and(|rest| rest.starts_with('/'))
            })
            .or(self.fallback.as_ref())?;
        let public = route.public
            || PUBLIC_PATHS.contains(&path)
            || PUBLIC_PATTERNS.iter().any(|p| matches(*p, path))
            || path.starts_with("/.well-known/");
        Some(Target { route, public })
    }

    pub fn pools(&self) -> impl Iterator<Item = &Arc<Pool>> {
        self.pools.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        RouteTable::build(
            &[Upstream { service: "auth", url: "http://127.0.0.1:8001".into() }],
            &Settings::default(),
            None,
        )
        .unwrap()
    }

    #[test]
    fn paths_resolve_to_their_service() {
        let t = table();
        let login = t.resolve("/v1/auth/login").unwrap();
        assert_eq!((login.route.pool.name.as_str(), login.public, &*login.route.label), ("auth", true, "/v1/auth"));
        let me = t.resolve("/v1/auth/me").unwrap();
        assert!(!me.public);
        assert!(t.resolve("/.well-known/jwks.json").unwrap().public);
        assert!(t.resolve("/v1/users/me").is_none());
        assert!(t.resolve("/v1/").is_none());
        assert!(t.resolve("/v2/auth/login").is_none(), "no fallback configured");
    }

    #[test]
    fn the_ledger_is_public_and_only_it() {
        let t = RouteTable::build(
            &[
                Upstream { service: "ledger", url: "http://127.0.0.1:8009".into() },
                Upstream { service: "tournament", url: "http://127.0.0.1:8006".into() },
            ],
            &Settings::default(),
            None,
        )
        .unwrap();
        assert!(t.resolve("/v1/ledger/entries/x").unwrap().public);
        assert!(!t.resolve("/v1/tournament/tournaments").unwrap().public);
        assert!(t.resolve("/v1/ledgerx").is_none());
    }

    #[test]
    fn patterns_have_one_star_for_one_segment() {
        for (prefix, suffix) in PUBLIC_PATTERNS {
            assert!(prefix.ends_with('/') && (suffix.starts_with('/') || suffix.is_empty()), "{prefix}*{suffix}");
        }
        let avatar = ("/v1/users/", "/avatar");
        assert!(matches(avatar, "/v1/users/abc/avatar"));
        assert!(!matches(avatar, "/v1/users/a/b/avatar"));
        assert!(!matches(avatar, "/v1/users/avatar"));
        assert!(!matches(avatar, "/v1/users//avatar"));
        assert!(!matches(avatar, "/v1/users/abc/avatarx"));
    }

    #[test]
    fn public_paths_match_exactly() {
        let t = table();
        assert!(!t.resolve("/v1/auth/login/../me").unwrap().public);
        assert!(!t.resolve("/v1/auth/loginx").unwrap().public);
    }

    #[test]
    fn avatars_are_public_and_only_avatars() {
        let t = RouteTable::build(
            &[Upstream { service: "users", url: "http://127.0.0.1:8002".into() }],
            &Settings::default(),
            None,
        )
        .unwrap();
        assert!(t.resolve("/v1/users/0190f0f0-0000-7000-8000-000000000000/avatar").unwrap().public);
        assert!(!t.resolve("/v1/users/me").unwrap().public);
        assert!(!t.resolve("/v1/users/x/avatar/extra").unwrap().public);
        assert!(!t.resolve("/v1/users//avatar").unwrap().public);
    }

    #[test]
    fn upstreams_must_be_plain_http_urls() {
        let bad = [Upstream { service: "auth", url: "auth:8001".into() }];
        assert!(RouteTable::build(&bad, &Settings::default(), None).is_err());
    }

    #[test]
    fn versions_sit_side_by_side_and_the_fallback_takes_the_rest() {
        let settings: Settings = serde_json::from_value(serde_json::json!({
            "upstreams": {"users-next": ["http://127.0.0.1:9102", "http://127.0.0.1:9103"], "legacy": ["http://127.0.0.1:9000"]},
            "routes": [{"prefix": "/v2/users", "upstream": "users-next", "timeout_ms": 1500}],
            "fallback": "legacy",
        }))
        .unwrap();
        let defaults = [Upstream { service: "users", url: "http://127.0.0.1:8002".into() }];
        let t = RouteTable::build(&defaults, &settings, None).unwrap();
        assert_eq!(t.resolve("/v1/users/me").unwrap().route.pool.name, "users");
        let v2 = t.resolve("/v2/users/me").unwrap();
        assert_eq!((v2.route.pool.name.as_str(), v2.route.timeout), ("users-next", Duration::from_millis(1500)));
        assert_eq!(v2.route.pool.instances.len(), 2);
        let legacy = t.resolve("/shop/cart").unwrap();
        assert_eq!((legacy.route.pool.name.as_str(), legacy.public), ("legacy", true));
        assert_eq!(t.resolve("/v2/usersx").unwrap().route.pool.name, "legacy", "prefixes match whole segments");
        // A reload with the same instances keeps the pool (and its state).
        let again = RouteTable::build(&defaults, &settings, Some(&t)).unwrap();
        assert!(Arc::ptr_eq(&again.pools["users-next"], &t.pools["users-next"]));
        let unknown: Settings =
            serde_json::from_value(serde_json::json!({"routes": [{"prefix": "/v3", "upstream": "nope"}]})).unwrap();
        assert!(RouteTable::build(&defaults, &unknown, None).is_err());
    }
}
