//! Ledger (port 8009): a tamper-evident log of tournament results. See
//! `docs/ledger.md`.
//!
//! Where it stands: the proofs ([`domain`]: the RFC 6962 Merkle tree,
//! inclusion and consistency proofs and their verification, Ed25519-signed
//! checkpoints, the entry's canonical bytes) are built and tested; the
//! service (entries from `tournament_finished`, storage, the API, the EVM
//! anchor, `panal ledger verify`) is not, and the crate is not mounted in
//! `panal` yet.

pub mod domain;
