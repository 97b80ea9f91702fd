//! Tournament (port 8006): single-elimination and Swiss tournaments of
//! Pong, online and local. See `docs/tournament.md`.
//!
//! Where it stands: the rules ([`domain`]: seeding, brackets with byes,
//! Swiss pairings, standings) are built and tested; the service around them
//! (registration with aliases, matches created in game as rounds open,
//! results from `match_finished`, walkovers, next-match calls, events) is
//! not, and the crate is not mounted in `panal` yet.

pub mod domain;
