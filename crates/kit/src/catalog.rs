//! The map of Panal's services and their well-known ports (see `docs/architecture.md`).
//!
//! Ports are fixed so that `panal up` and a developer's muscle memory agree;
//! `panal serve` and containers may override them.

/// One entry of the service map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceInfo {
    /// The name used on the command line, in `/v1/<name>/...` and in `PANAL_<NAME>_URL`.
    pub name: &'static str,
    /// The port the service listens on by default.
    pub port: u16,
    /// What the service is the source of truth for.
    pub owns: &'static str,
}

/// Every service of the platform, in port order.
pub const SERVICES: &[ServiceInfo] = &[
    ServiceInfo { name: "gateway", port: 8000, owns: "nothing durable (rate-limit counters)" },
    ServiceInfo { name: "auth", port: 8001, owns: "credentials, sessions, refresh tokens, roles, signing keys" },
    ServiceInfo { name: "users", port: 8002, owns: "profiles, avatars, friendships, blocks, privacy" },
    ServiceInfo { name: "realtime", port: 8003, owns: "live connections, subscriptions, presence" },
    ServiceInfo { name: "chat", port: 8004, owns: "rooms, membership, messages, moderation" },
    ServiceInfo { name: "game", port: 8005, owns: "matches, live game state, matchmaking" },
    ServiceInfo { name: "tournament", port: 8006, owns: "tournaments, brackets, schedules" },
    ServiceInfo { name: "stats", port: 8007, owns: "ratings, leaderboards, match history" },
    ServiceInfo { name: "ai", port: 8008, owns: "bot opponents" },
    ServiceInfo { name: "ledger", port: 8009, owns: "tamper-evident tournament results" },
    ServiceInfo { name: "notify", port: 8010, owns: "templates, preferences, deliveries" },
    ServiceInfo { name: "catalog", port: 8011, owns: "products, categories, prices, inventory" },
    ServiceInfo { name: "orders", port: 8012, owns: "carts, orders, saga state" },
    ServiceInfo { name: "payments", port: 8013, owns: "payments, refunds, escrow, payouts" },
    ServiceInfo { name: "support", port: 8014, owns: "tickets, returns" },
    ServiceInfo { name: "pros", port: 8015, owns: "professional profiles, trades, KYC" },
    ServiceInfo { name: "jobs", port: 8016, owns: "offers, jobs, reviews" },
];

/// Looks a service up by name.
pub fn find(name: &str) -> Option<&'static ServiceInfo> {
    SERVICES.iter().find(|s| s.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ports_are_unique() {
        for (i, a) in SERVICES.iter().enumerate() {
            for b in &SERVICES[i + 1..] {
                assert_ne!(a.name, b.name);
                assert_ne!(a.port, b.port);
            }
        }
        assert_eq!(find("auth").map(|s| s.port), Some(8001));
    }
}
