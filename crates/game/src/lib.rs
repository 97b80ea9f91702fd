//! Game: server-authoritative Pong. See `docs/game.md`.
//!
//! - the rules, as a pure deterministic simulation: [`domain`]

pub mod domain;
