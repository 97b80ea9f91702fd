//! Rate limits at the edge: a token bucket (GCRA) per client IP, per user and
//! per configured route, and a stricter sliding window per IP on sensitive
//! routes (sign-in, reset). In memory by default; in Redis when `redis_url`
//! (`PANAL_REDIS_URL`) is set, so the limits hold across gateway replicas.
//!
//! When Redis cannot be reached (or answers slower than `redis_timeout_ms`),
//! each replica falls back to its own in-memory limits — the same quotas,
//! counted per replica — logs it (at most every 10 s) and counts it in
//! `gateway_rate_limit_redis_errors`. Refusing everything would turn a Redis
//! outage into a full outage; allowing everything would remove the brute-force
//! protection exactly when it is unobserved. Local limits keep both.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kit::limit::{Decision, Limiter, Quota, SlidingWindow};
use prometheus_client::metrics::counter::Counter;
use serde::Deserialize;
use tokio::sync::Mutex;
use uuid::Uuid;

/// `rate` requests per `per_secs`, `burst` at once. `rate = 0` turns it off.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaSettings {
    pub rate: u32,
    #[serde(default = "one")]
    pub per_secs: u64,
    pub burst: u32,
}

fn one() -> u64 {
    1
}

/// A bucket on a path prefix, per IP or per user.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteQuota {
    pub prefix: String,
    pub rate: u32,
    #[serde(default = "one")]
    pub per_secs: u64,
    pub burst: u32,
    /// `ip` (default) or `user`.
    #[serde(default)]
    pub by: By,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum By {
    #[default]
    Ip,
    User,
}

/// At most `limit` requests per IP in any `window_secs` on `path` (exact).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowRule {
    pub path: String,
    pub limit: u32,
    pub window_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RateLimitSettings {
    pub enabled: bool,
    pub per_ip: QuotaSettings,
    pub per_user: QuotaSettings,
    pub routes: Vec<RouteQuota>,
    pub sensitive: Vec<WindowRule>,
    /// Prefix of the Redis keys.
    pub key_prefix: String,
    /// Longest wait for Redis before falling back to local limits, in ms.
    pub redis_timeout_ms: u64,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        let window = |path: &str, limit| WindowRule { path: path.into(), limit, window_secs: 60 };
        Self {
            enabled: true,
            per_ip: QuotaSettings { rate: 100, per_secs: 1, burst: 200 },
            per_user: QuotaSettings { rate: 50, per_secs: 1, burst: 100 },
            routes: Vec::new(),
            sensitive: vec![
                window("/v1/auth/login", 30),
                window("/v1/auth/login/mfa", 30),
                window("/v1/auth/password/forgot", 10),
                window("/v1/auth/password/reset", 10),
                window("/v1/auth/register", 20),
            ],
            key_prefix: "panal:rl:".into(),
            redis_timeout_ms: 50,
        }
    }
}

/// The verdict on a request, with what the `RateLimit-*` headers say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// The limit of the tightest rule.
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the tightest rule is full again (or, refused, until a
    /// request passes).
    pub reset_secs: u64,
}

/// Whose requests a rule counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Ip(IpAddr),
    User(Uuid),
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Ip(ip) => ip.fmt(f),
            Key::User(user) => user.fmt(f),
        }
    }
}

enum Rule {
    // Boxed: a limiter's per-thread maps take some 600 bytes in place.
    Bucket { name: String, quota: Quota, local: Box<Limiter<Key>> },
    Window { name: String, limit: u32, window: Duration, local: SlidingWindow<Key> },
}

impl Rule {
    fn bucket(name: String, q: QuotaSettings) -> Option<Self> {
        (q.rate > 0).then(|| {
            let quota = Quota { burst: q.burst.max(1), rate: q.rate, period: Duration::from_secs(q.per_secs.max(1)) };
            Rule::Bucket { name, quota, local: Box::new(Limiter::new(quota)) }
        })
    }
}

// Every rule of a request in one round trip to Redis. KEYS are the rules'
// keys; ARGV has three values per key: `b` (a GCRA bucket: the key holds the
// theoretical arrival time in ms), the interval and the burst window in ms;
// or `w` (a sliding window: counts per fixed window, the previous one
// weighted by its overlap), the limit and the window in ms. Time is Redis's,
// so every replica agrees. Returns, per key, allowed (1 or 0) and the
// remaining requests or the wait in ms.
const LIMITS_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i, key in ipairs(KEYS) do
  local kind = ARGV[3 * i - 2]
  local a = tonumber(ARGV[3 * i - 1])
  local window = tonumber(ARGV[3 * i])
  local ok, n
  if kind == 'b' then
    local interval = a
    local tat = tonumber(redis.call('GET', key) or now)
    if tat < now then tat = now end
    local next = tat + interval
    local ahead = next - now
    if ahead > window then
      ok, n = 0, ahead - window
    else
      redis.call('SET', key, next, 'PX', math.ceil(ahead) + 1000)
      ok, n = 1, math.floor((window - ahead) / interval)
    end
  else
    local limit = a
    local index = math.floor(now / window)
    local elapsed = now - index * window
    local cur_key = key .. ':' .. index
    local prev = tonumber(redis.call('GET', key .. ':' .. (index - 1)) or '0')
    local cur = tonumber(redis.call('GET', cur_key) or '0')
    local estimate = prev * (1 - elapsed / window) + cur
    if estimate + 1 > limit then
      local room = limit - 1 - cur
      local wait
      if room >= 0 and prev > 0 then wait = (1 - room / prev) * window - elapsed
      else wait = (window - elapsed) + math.max(0, 1 - (limit - 1) / math.max(cur, 1)) * window end
      ok, n = 0, math.max(1, math.ceil(wait))
    else
      redis.call('INCR', cur_key)
      redis.call('PEXPIRE', cur_key, window * 2 + 1000)
      ok, n = 1, math.floor(limit - estimate - 1)
    end
  end
  out[2 * i - 1] = ok
  out[2 * i] = n
end
return out
";

struct Redis {
    client: redis::Client,
    conn: Mutex<Option<redis::aio::ConnectionManager>>,
    script: redis::Script,
    timeout: Duration,
    last_warning: std::sync::Mutex<Option<Instant>>,
    /// Unix ms of the last failed connection attempt, to retry at most every second.
    last_attempt: AtomicU64,
}

pub struct RateLimits {
    settings: RateLimitSettings,
    per_ip: Option<Rule>,
    per_user: Option<Rule>,
    routes: Vec<(String, By, Rule)>,
    sensitive: Vec<(String, Rule)>,
    redis: Option<Redis>,
    pub redis_errors: Counter,
    pub limited: Counter,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("enabled", &self.settings.enabled)
            .field("redis", &self.redis.is_some())
            .finish()
    }
}

fn merge(acc: Option<Verdict>, v: Verdict) -> Option<Verdict> {
    Some(match acc {
        None => v,
        // A refusal wins; among equals, the tighter rule speaks.
        Some(a) if !a.allowed && v.allowed => a,
        Some(a) if a.allowed && !v.allowed => v,
        Some(a) if !a.allowed => {
            if v.reset_secs > a.reset_secs {
                v
            } else {
                a
            }
        }
        Some(a) => {
            if v.remaining < a.remaining {
                v
            } else {
                a
            }
        }
    })
}

fn secs_up(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl RateLimits {
    pub fn new(settings: RateLimitSettings, redis_url: Option<&str>) -> anyhow::Result<Self> {
        let per_ip = Rule::bucket("ip".into(), settings.per_ip);
        let per_user = Rule::bucket("user".into(), settings.per_user);
        let mut routes = Vec::new();
        for r in &settings.routes {
            let q = QuotaSettings { rate: r.rate, per_secs: r.per_secs, burst: r.burst };
            if let Some(rule) = Rule::bucket(format!("route:{}", r.prefix), q) {
                routes.push((r.prefix.clone(), r.by, rule));
            }
        }
        let sensitive = settings
            .sensitive
            .iter()
            .filter(|w| w.limit > 0)
            .map(|w| {
                let window = Duration::from_secs(w.window_secs.max(1));
                let rule = Rule::Window {
                    name: format!("window:{}", w.path),
                    limit: w.limit,
                    window,
                    local: SlidingWindow::new(w.limit, window),
                };
                (w.path.clone(), rule)
            })
            .collect();
        let redis = match redis_url {
            Some(url) => Some(Redis {
                client: redis::Client::open(url)
                    .map_err(|e| anyhow::anyhow!("invalid configuration: redis_url (PANAL_REDIS_URL): {e}"))?,
                conn: Mutex::new(None),
                script: redis::Script::new(LIMITS_LUA),
                timeout: Duration::from_millis(settings.redis_timeout_ms.max(1)),
                last_warning: std::sync::Mutex::new(None),
                last_attempt: AtomicU64::new(0),
            }),
            None => None,
        };
        Ok(Self {
            settings,
            per_ip,
            per_user,
            routes,
            sensitive,
            redis,
            redis_errors: Counter::default(),
            limited: Counter::default(),
        })
    }

    pub fn enabled(&self) -> bool {
        self.settings.enabled
    }

    /// Counts a request to `path` from `ip` by `user` against every rule that
    /// applies; refused if any refuses.
    pub async fn check(&self, path: &str, ip: Option<IpAddr>, user: Option<Uuid>) -> Option<Verdict> {
        self.check_at(path, ip, user, Instant::now()).await
    }

    /// [`RateLimits::check`] of a request that arrived at `now`.
    pub async fn check_at(&self, path: &str, ip: Option<IpAddr>, user: Option<Uuid>, now: Instant) -> Option<Verdict> {
        if !self.settings.enabled {
            return None;
        }
        let rules = self.applicable(path, ip.map(Key::Ip), user.map(Key::User));
        let verdict = match &self.redis {
            None => in_memory(rules, now),
            // Boxed: the Redis call is a large future, and most gateways never make it.
            Some(redis) => Box::pin(self.shared(redis, rules.collect(), now)).await,
        };
        if verdict.is_some_and(|v| !v.allowed) {
            self.limited.inc();
        }
        verdict
    }

    /// The rules that count a request to `path`, each with its key.
    fn applicable<'a>(
        &'a self,
        path: &'a str,
        ip: Option<Key>,
        user: Option<Key>,
    ) -> impl Iterator<Item = (&'a Rule, Key)> + 'a {
        let per_ip = self.per_ip.as_ref().zip(ip);
        let per_user = self.per_user.as_ref().zip(user);
        let routes = self.routes.iter().filter_map(move |(prefix, by, rule)| {
            let applies = path == prefix || path.strip_prefix(prefix.as_str()).is_some_and(|r| r.starts_with('/'));
            let key = match by {
                By::Ip => ip,
                By::User => user,
            };
            key.filter(|_| applies).map(|key| (rule, key))
        });
        let sensitive =
            self.sensitive.iter().filter(move |(p, _)| p == path).filter_map(move |(_, rule)| Some((rule, ip?)));
        per_ip.into_iter().chain(per_user).chain(routes).chain(sensitive)
    }

    /// Every rule in one round trip to Redis; on failure, in this replica's memory.
    async fn shared(&self, redis: &Redis, rules: Vec<(&Rule, Key)>, now: Instant) -> Option<Verdict> {
        match self.remote(redis, &rules).await {
            Ok(verdicts) => verdicts.into_iter().fold(None, merge),
            Err(e) => {
                self.redis_failed(redis, &e);
                in_memory(rules, now)
            }
        }
    }

    async fn remote(&self, redis: &Redis, rules: &[(&Rule, Key)]) -> Result<Vec<Verdict>, String> {
        if rules.is_empty() {
            return Ok(Vec::new());
        }
        let conn = {
            let mut slot = redis.conn.lock().await;
            match slot.as_ref() {
                Some(c) => c.clone(),
                None => {
                    let now_ms = u64::try_from(unix_ms()).unwrap_or(0);
                    if now_ms.saturating_sub(redis.last_attempt.load(Ordering::Relaxed)) < 1000 {
                        return Err("not connected (retrying every second)".into());
                    }
                    redis.last_attempt.store(now_ms, Ordering::Relaxed);
                    let c = tokio::time::timeout(
                        redis.timeout * 10,
                        redis::aio::ConnectionManager::new(redis.client.clone()),
                    )
                    .await
                    .map_err(|_| "connecting timed out".to_owned())?
                    .map_err(|e| e.to_string())?;
                    *slot = Some(c.clone());
                    c
                }
            }
        };
        let mut conn = conn;
        let mut call = redis.script.prepare_invoke();
        for (rule, key) in rules {
            call.key(format!("{}{}:{key}", self.settings.key_prefix, rule_name(rule)));
            match rule {
                Rule::Bucket { quota, .. } => {
                    let interval = quota.interval().as_millis().max(1) as u64;
                    call.arg("b").arg(interval).arg(interval * u64::from(quota.burst));
                }
                Rule::Window { limit, window, .. } => {
                    call.arg("w").arg(*limit).arg(window.as_millis() as u64);
                }
            }
        }
        let answer: Result<Vec<i64>, redis::RedisError> =
            match tokio::time::timeout(redis.timeout, call.invoke_async(&mut conn)).await {
                Ok(answer) => answer,
                Err(_) => return Err(format!("no answer within {} ms", redis.timeout.as_millis())),
            };
        let values = match answer {
            Ok(values) if values.len() == rules.len() * 2 => values,
            Ok(values) => {
                return Err(format!("the limits script answered {} values for {} rules", values.len(), rules.len()));
            }
            Err(e) => {
                if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
                    *redis.conn.lock().await = None;
                }
                return Err(e.to_string());
            }
        };
        Ok(rules.iter().zip(values.chunks(2)).map(|((rule, _), v)| remote_verdict(rule, v[0] == 1, v[1])).collect())
    }

    fn redis_failed(&self, redis: &Redis, error: &str) {
        self.redis_errors.inc();
        let Ok(mut last) = redis.last_warning.lock() else { return };
        if last.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
            *last = Some(Instant::now());
            tracing::warn!(error, "rate limits: Redis unavailable, counting in this replica's memory meanwhile");
        }
    }
}

/// The verdict of `rules` counted in this replica's memory, at one instant.
fn in_memory<'a>(rules: impl IntoIterator<Item = (&'a Rule, Key)>, now: Instant) -> Option<Verdict> {
    rules.into_iter().map(|(rule, key)| local(rule, key, now)).fold(None, merge)
}

/// A rule's verdict from this replica's memory.
fn local(rule: &Rule, key: Key, now: Instant) -> Verdict {
    let decision = match rule {
        Rule::Bucket { local, .. } => local.check_at(&key, now),
        Rule::Window { local, .. } => local.check_at(&key, now),
    };
    match decision {
        Decision::Allow { remaining } => allowed(rule, remaining),
        Decision::Deny { retry_after } => refused(rule, retry_after),
    }
}

/// A rule's verdict from what the Redis script answered: allowed, and the
/// remaining requests or the wait in ms.
fn remote_verdict(rule: &Rule, ok: bool, n: i64) -> Verdict {
    if ok {
        allowed(rule, u32::try_from(n.max(0)).unwrap_or(0))
    } else {
        refused(rule, Duration::from_millis(u64::try_from(n.max(1)).unwrap_or(1)))
    }
}

fn limit_of(rule: &Rule) -> u32 {
    match rule {
        Rule::Bucket { quota, .. } => quota.burst,
        Rule::Window { limit, .. } => *limit,
    }
}

/// Allowed, `remaining` more passing now; the reset is when the rule is
/// full again.
fn allowed(rule: &Rule, remaining: u32) -> Verdict {
    let limit = limit_of(rule);
    let reset_secs = match rule {
        Rule::Bucket { quota, .. } => secs_up(quota.interval() * (limit - remaining.min(limit))),
        Rule::Window { window, .. } => window.as_secs(),
    };
    Verdict { allowed: true, limit, remaining, reset_secs }
}

fn refused(rule: &Rule, wait: Duration) -> Verdict {
    Verdict { allowed: false, limit: limit_of(rule), remaining: 0, reset_secs: secs_up(wait).max(1) }
}

fn rule_name(rule: &Rule) -> &str {
    match rule {
        Rule::Bucket { name, .. } | Rule::Window { name, .. } => name,
    }
}

fn unix_ms() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0)
}

impl Verdict {
    /// The `RateLimit-*` fields (draft-ietf-httpapi-ratelimit-headers), each
    /// its name and number.
    pub fn fields(&self) -> [(&'static str, u64); 3] {
        [
            ("ratelimit-limit", self.limit.into()),
            ("ratelimit-remaining", self.remaining.into()),
            ("ratelimit-reset", self.reset_secs),
        ]
    }

    /// [`Verdict::fields`] as headers.
    pub fn headers(&self) -> [(http::HeaderName, http::HeaderValue); 3] {
        let mut slot = 0;
        self.fields().map(|(name, n)| {
            slot += 1;
            (http::HeaderName::from_static(name), number_value(slot - 1, n))
        })
    }
}

/// `n` as a header value. The last value made for each of the three headers
/// is kept per thread and shared (a reference count) when it comes again: a
/// rule's limit is the same from one request to the next, and so, mostly, is
/// the reset time; only the remaining count usually changes.
fn number_value(slot: usize, n: u64) -> http::HeaderValue {
    thread_local! {
        static LAST: std::cell::RefCell<[Option<(u64, http::HeaderValue)>; 3]> =
            const { std::cell::RefCell::new([None, None, None]) };
    }
    LAST.with_borrow_mut(|last| match &last[slot] {
        Some((seen, value)) if *seen == n => value.clone(),
        _ => {
            let value = http::HeaderValue::from(n);
            last[slot] = Some((n, value.clone()));
            value
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn limits(per_ip: QuotaSettings) -> RateLimits {
        RateLimits::new(RateLimitSettings { per_ip, ..Default::default() }, None).unwrap()
    }

    #[tokio::test]
    async fn exactly_burst_pass_then_one_per_interval() {
        let l = limits(QuotaSettings { rate: 5, per_secs: 1, burst: 3 });
        let ip = Some(IpAddr::from([10, 0, 0, 1]));
        let mut passed = 0;
        for _ in 0..4 {
            if l.check("/v1/users/me", ip, None).await.unwrap().allowed {
                passed += 1;
            }
        }
        assert_eq!(passed, 3);
        let refused = l.check("/v1/users/me", ip, None).await.unwrap();
        assert_eq!((refused.allowed, refused.reset_secs), (false, 1));
        tokio::time::sleep(Duration::from_millis(210)).await;
        assert!(l.check("/v1/users/me", ip, None).await.unwrap().allowed, "one more after 1/rate seconds");
        assert!(!l.check("/v1/users/me", ip, None).await.unwrap().allowed);
    }

    #[tokio::test]
    async fn sensitive_routes_have_a_stricter_window() {
        let l = limits(QuotaSettings { rate: 1000, per_secs: 1, burst: 1000 });
        let ip = Some(IpAddr::from([10, 0, 0, 2]));
        let allowed = futures_util::future::join_all((0..40).map(|_| l.check("/v1/auth/login", ip, None))).await;
        assert_eq!(allowed.iter().filter(|v| v.unwrap().allowed).count(), 30);
        assert!(l.check("/v1/auth/me", ip, None).await.unwrap().allowed, "other routes are not held back");
    }
}
