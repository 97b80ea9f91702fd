//! The ledger's proofs, as pure functions: an append-only Merkle tree of
//! tournament results in the shape of Certificate Transparency's (RFC 6962
//! §2.1, verification as RFC 9162 §2.1.3–2.1.4 write it), and checkpoints
//! (the tree's size and root) signed with Ed25519 in the signed-note text
//! form transparency logs use.
//!
//! With a checkpoint and a proof, anyone can check offline that a result is
//! in the log (inclusion) and that a later checkpoint extends an earlier
//! one without rewriting it (consistency).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// Why a proof or a checkpoint does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error("the checkpoint is not in the signed-note form")]
    Malformed,
    #[error("the checkpoint's signature does not verify with the ledger's key")]
    BadSignature,
    #[error("the checkpoint names another log")]
    WrongOrigin,
}

/// The hash of a leaf: SHA-256(0x00 ‖ data).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// The hash of an inner node: SHA-256(0x01 ‖ left ‖ right).
fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The largest power of two strictly smaller than `n` (n ≥ 2).
fn below(n: usize) -> usize {
    let p = n.next_power_of_two();
    if p == n { n / 2 } else { p / 2 }
}

/// The Merkle tree hash of `leaves` (leaf hashes); the empty tree's is
/// SHA-256 of nothing.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Sha256::digest([]).into(),
        1 => leaves[0],
        n => {
            let k = below(n);
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// The inclusion proof (audit path) of leaf `index` in the tree of
/// `leaves` (RFC 6962 §2.1.1).
pub fn inclusion_proof(index: usize, leaves: &[Hash]) -> Vec<Hash> {
    let n = leaves.len();
    if n <= 1 || index >= n {
        return Vec::new();
    }
    let k = below(n);
    if index < k {
        let mut path = inclusion_proof(index, &leaves[..k]);
        path.push(root(&leaves[k..]));
        path
    } else {
        let mut path = inclusion_proof(index - k, &leaves[k..]);
        path.push(root(&leaves[..k]));
        path
    }
}

/// Checks that `leaf` is leaf `index` of the tree of `size` leaves whose
/// root is `root` (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && r == *root
}

/// The proof that the tree of the first `m` of `leaves` is a prefix of the
/// tree of all of them (RFC 6962 §2.1.2).
pub fn consistency_proof(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    fn sub(m: usize, leaves: &[Hash], whole: bool) -> Vec<Hash> {
        let n = leaves.len();
        if m == n {
            return if whole { Vec::new() } else { vec![root(leaves)] };
        }
        let k = below(n);
        if m <= k {
            let mut proof = sub(m, &leaves[..k], whole);
            proof.push(root(&leaves[k..]));
            proof
        } else {
            let mut proof = sub(m - k, &leaves[k..], false);
            proof.push(root(&leaves[..k]));
            proof
        }
    }
    if m == 0 || m > leaves.len() {
        return Vec::new();
    }
    sub(m, leaves, true)
}

/// Checks that the tree of `first` leaves with root `first_root` is a prefix
/// of the tree of `second` leaves with root `second_root` (RFC 9162
/// §2.1.4.2).
pub fn verify_consistency(first: u64, second: u64, first_root: &Hash, second_root: &Hash, proof: &[Hash]) -> bool {
    if first == 0 || first > second {
        return false;
    }
    if first == second {
        return proof.is_empty() && first_root == second_root;
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let Some((start, rest)) = path.split_first() else { return false };
    let (mut f, mut s) = (first - 1, second - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*start, *start);
    for c in rest {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && fr == *first_root && sr == *second_root
}

/// One tournament's final standings, as the ledger records them: aliases
/// and opaque player ids only (no personal data, so an erasure never
/// conflicts with the log's immutability).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub tournament_id: Uuid,
    pub finished_at: String,
    pub standings: Vec<Standing>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Standing {
    pub place: u32,
    pub alias: String,
    /// The player's id, or the alias's in a local tournament.
    pub entrant_id: Uuid,
}

impl Entry {
    /// The bytes the leaf hashes: the entry's JSON, fields in declaration
    /// order, no spaces.
    pub fn canonical(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn leaf(&self) -> Hash {
        leaf_hash(&self.canonical())
    }
}

/// A tree's size and root, as the ledger commits to them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's name (`panal.ledger/<instance>`).
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    /// The signed note's body: origin, size and base64 root, one per line.
    pub fn body(&self) -> String {
        format!("{}\n{}\n{}\n", self.origin, self.size, STANDARD.encode(self.root))
    }

    /// The note: the body, a blank line, and `— <origin> <base64 signature>`.
    pub fn sign(&self, key: &SigningKey) -> String {
        let signature = key.sign(self.body().as_bytes());
        format!("{}\n\u{2014} {} {}\n", self.body(), self.origin, STANDARD.encode(signature.to_bytes()))
    }

    /// Reads a signed note and checks its signature with `key` and its
    /// origin.
    pub fn verify(note: &str, origin: &str, key: &VerifyingKey) -> Result<Checkpoint, LedgerError> {
        let (body, signature_line) = note.split_once("\n\n").ok_or(LedgerError::Malformed)?;
        let body = format!("{body}\n");
        let mut lines = body.lines();
        let (Some(named), Some(size), Some(root), None) = (lines.next(), lines.next(), lines.next(), lines.next())
        else {
            return Err(LedgerError::Malformed);
        };
        let size: u64 = size.parse().map_err(|_| LedgerError::Malformed)?;
        let root: Hash = STANDARD.decode(root).ok().and_then(|r| r.try_into().ok()).ok_or(LedgerError::Malformed)?;
        let signature = signature_line
            .trim_end()
            .strip_prefix('\u{2014}')
            .and_then(|rest| rest.trim().rsplit_once(' '))
            .and_then(|(_, sig)| STANDARD.decode(sig).ok())
            .and_then(|sig| <[u8; 64]>::try_from(sig).ok())
            .map(|sig| Signature::from_bytes(&sig))
            .ok_or(LedgerError::Malformed)?;
        key.verify(body.as_bytes(), &signature).map_err(|_| LedgerError::BadSignature)?;
        if named != origin {
            return Err(LedgerError::WrongOrigin);
        }
        Ok(Checkpoint { origin: named.to_owned(), size, root })
    }
}

/// An Ed25519 public key as the ledger publishes it (32 bytes, base64).
pub fn public_key(base64: &str) -> Option<VerifyingKey> {
    let bytes: [u8; 32] = STANDARD.decode(base64.trim()).ok()?.try_into().ok()?;
    VerifyingKey::from_bytes(&bytes).ok()
}

/// What a verifier holds about one result: the entry's bytes and position,
/// the signed checkpoint and the inclusion proof against it, and what the
/// chain holds for that checkpoint's size and for the tournament.
#[derive(Debug, Clone)]
pub struct Evidence<'a> {
    pub tournament_id: Uuid,
    /// The exact bytes the leaf hashes.
    pub data: &'a [u8],
    pub position: u64,
    pub proof: &'a [Hash],
    /// The signed checkpoint the proof leads to.
    pub note: &'a str,
    pub origin: &'a str,
    pub key: &'a VerifyingKey,
    /// The root the chain holds for the checkpoint's size (`None`: none).
    pub chain_root: Option<Hash>,
    /// The leaf hash and position the chain holds for the tournament.
    pub chain_result: Option<(u64, Hash)>,
}

/// One of the checks [`verify`] makes, in the order it makes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// The entry's bytes are a result of this tournament.
    Entry,
    /// The checkpoint is signed by the ledger's key, for this log.
    Checkpoint,
    /// The entry's hash and the proof lead to the checkpoint's root.
    Inclusion,
    /// The chain holds the checkpoint's root for its size.
    ChainRoot,
    /// The chain holds this result, at this position.
    ChainResult,
}

impl Check {
    pub const ALL: [Check; 5] =
        [Check::Entry, Check::Checkpoint, Check::Inclusion, Check::ChainRoot, Check::ChainResult];
}

/// The first check that failed, and why, in words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{check:?}: {reason}")]
pub struct Failure {
    pub check: Check,
    pub reason: String,
}

/// Checks a result against the log and the chain; on success, the entry
/// and the checkpoint it is proved in. Every check is offline arithmetic on
/// the evidence: whoever gathered it need not be trusted.
pub fn verify(e: &Evidence<'_>) -> Result<(Entry, Checkpoint), Failure> {
    let fail = |check, reason: String| Failure { check, reason };
    let entry: Entry = serde_json::from_slice(e.data)
        .map_err(|_| fail(Check::Entry, "the stored entry is not an entry of the ledger".into()))?;
    if entry.tournament_id != e.tournament_id {
        return Err(fail(Check::Entry, format!("the stored entry is tournament {}'s", entry.tournament_id)));
    }
    let checkpoint =
        Checkpoint::verify(e.note, e.origin, e.key).map_err(|err| fail(Check::Checkpoint, err.to_string()))?;
    if e.position >= checkpoint.size
        || !verify_inclusion(e.position, checkpoint.size, &leaf_hash(e.data), e.proof, &checkpoint.root)
    {
        return Err(fail(
            Check::Inclusion,
            format!(
                "the result is not in the log: its hash at position {} does not lead to the root of the signed \
                 checkpoint of {} entries (the result or the proof was changed)",
                e.position, checkpoint.size
            ),
        ));
    }
    match e.chain_root {
        None => {
            return Err(fail(
                Check::ChainRoot,
                format!("the chain holds no root for a log of {} entries (not anchored)", checkpoint.size),
            ));
        }
        Some(root) if root != checkpoint.root => {
            return Err(fail(
                Check::ChainRoot,
                format!(
                    "the chain holds a different root for a log of {} entries: the log was rewritten after it \
                     was anchored",
                    checkpoint.size
                ),
            ));
        }
        Some(_) => {}
    }
    match e.chain_result {
        Some((position, leaf)) if position == e.position && leaf == leaf_hash(e.data) => Ok((entry, checkpoint)),
        Some(_) => Err(fail(Check::ChainResult, "the chain records a different result for this tournament".into())),
        None => Err(fail(Check::ChainResult, "the chain records no result for this tournament".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(format!("result {i}").as_bytes())).collect()
    }

    fn hex(h: &Hash) -> String {
        h.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn hashes_are_rfc_6962s() {
        // The empty tree: SHA-256 of nothing; an empty leaf: SHA-256(0x00).
        assert_eq!(hex(&root(&[])), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(hex(&leaf_hash(b"")), "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d");
        // Three leaves: ((0, 1), 2).
        let l = leaves(3);
        assert_eq!(root(&l), node_hash(&node_hash(&l[0], &l[1]), &l[2]));
    }

    #[test]
    fn every_leaf_of_every_tree_up_to_64_has_a_proof_that_verifies_and_no_other_does() {
        for n in 1..=64usize {
            let l = leaves(n);
            let r = root(&l);
            for i in 0..n {
                let proof = inclusion_proof(i, &l);
                let (i64_, n64) = (i as u64, n as u64);
                assert!(verify_inclusion(i64_, n64, &l[i], &proof, &r), "leaf {i} of {n}");
                // Another leaf, another place, another size, another root, a changed proof: no.
                assert!(!verify_inclusion(i64_, n64, &leaf_hash(b"forged"), &proof, &r));
                if n > 1 {
                    assert!(!verify_inclusion((i64_ + 1) % n64, n64, &l[i], &proof, &r), "leaf {i} of {n} elsewhere");
                }
                // The proof of another tree: the tree grown by one leaf.
                let grown = root(&leaves(n + 1));
                assert!(!verify_inclusion(i64_, n64 + 1, &l[i], &proof, &grown));
                assert!(!verify_inclusion(i64_, n64, &l[i], &proof, &leaf_hash(b"root")));
                if let Some(first) = proof.first() {
                    let mut bad = proof.clone();
                    bad[0] = node_hash(first, first);
                    assert!(!verify_inclusion(i64_, n64, &l[i], &bad, &r));
                }
            }
        }
    }

    #[test]
    fn every_tree_up_to_40_is_proved_consistent_with_each_of_its_prefixes() {
        for n in 1..=40usize {
            let l = leaves(n);
            let r = root(&l);
            for m in 1..=n {
                let proof = consistency_proof(m, &l);
                let rm = root(&l[..m]);
                assert!(verify_consistency(m as u64, n as u64, &rm, &r, &proof), "{m} of {n}");
                if m < n {
                    // A rewritten past: the first tree's root differs.
                    let mut rewritten = l.clone();
                    rewritten[0] = leaf_hash(b"rewritten");
                    assert!(!verify_consistency(m as u64, n as u64, &root(&rewritten[..m]), &r, &proof), "{m} of {n}");
                    assert!(!verify_consistency(m as u64, n as u64, &rm, &leaf_hash(b"x"), &proof));
                    assert!(!verify_consistency(m as u64, n as u64 + 1, &rm, &root(&leaves(n + 1)), &proof));
                }
            }
        }
    }

    #[test]
    fn a_signed_checkpoint_verifies_and_any_change_is_caught() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let cp = Checkpoint { origin: "panal.ledger/test".into(), size: 12, root: root(&leaves(12)) };
        let note = cp.sign(&key);
        assert_eq!(Checkpoint::verify(&note, "panal.ledger/test", &key.verifying_key()), Ok(cp.clone()));
        // A changed size or root, another key, another log, garbage.
        let forged = note.replacen("\n12\n", "\n13\n", 1);
        assert_eq!(
            Checkpoint::verify(&forged, "panal.ledger/test", &key.verifying_key()),
            Err(LedgerError::BadSignature)
        );
        let other = SigningKey::from_bytes(&[8u8; 32]);
        assert_eq!(
            Checkpoint::verify(&note, "panal.ledger/test", &other.verifying_key()),
            Err(LedgerError::BadSignature)
        );
        assert_eq!(
            Checkpoint::verify(&note, "panal.ledger/other", &key.verifying_key()),
            Err(LedgerError::WrongOrigin)
        );
        assert_eq!(
            Checkpoint::verify("nonsense", "panal.ledger/test", &key.verifying_key()),
            Err(LedgerError::Malformed)
        );
    }

    #[test]
    fn an_entry_hashes_the_same_every_time_and_a_changed_result_does_not() {
        let entry = Entry {
            tournament_id: Uuid::from_u128(1),
            finished_at: "2026-12-04T10:00:00Z".into(),
            standings: vec![
                Standing { place: 1, alias: "Ada".into(), entrant_id: Uuid::from_u128(2) },
                Standing { place: 2, alias: "Bob".into(), entrant_id: Uuid::from_u128(3) },
            ],
        };
        assert_eq!(entry.leaf(), entry.clone().leaf());
        let mut changed = entry.clone();
        changed.standings.swap(0, 1);
        assert_ne!(changed.leaf(), entry.leaf());
    }

    /// A log of three results, the second ours, signed and anchored.
    struct World {
        key: SigningKey,
        data: Vec<u8>,
        leaves: Vec<Hash>,
        note: String,
    }

    fn world() -> World {
        let key = SigningKey::from_bytes(&[9; 32]);
        let entry = Entry {
            tournament_id: Uuid::from_u128(7),
            finished_at: "2026-12-04T10:00:00Z".into(),
            standings: vec![Standing { place: 1, alias: "Ada".into(), entrant_id: Uuid::from_u128(2) }],
        };
        let data = entry.canonical();
        let leaves = vec![leaf_hash(b"first"), leaf_hash(&data), leaf_hash(b"third")];
        let note = Checkpoint { origin: "panal.ledger/test".into(), size: 3, root: root(&leaves) }.sign(&key);
        World { key, data, leaves, note }
    }

    fn evidence<'a>(w: &'a World, proof: &'a [Hash], vk: &'a VerifyingKey) -> Evidence<'a> {
        Evidence {
            tournament_id: Uuid::from_u128(7),
            data: &w.data,
            position: 1,
            proof,
            note: &w.note,
            origin: "panal.ledger/test",
            key: vk,
            chain_root: Some(root(&w.leaves)),
            chain_result: Some((1, w.leaves[1])),
        }
    }

    #[test]
    fn a_result_in_the_log_and_on_the_chain_verifies_and_each_alteration_names_its_check() {
        let w = world();
        let vk = w.key.verifying_key();
        let proof = inclusion_proof(1, &w.leaves);
        let (entry, checkpoint) = verify(&evidence(&w, &proof, &vk)).unwrap();
        assert_eq!((entry.standings[0].alias.as_str(), checkpoint.size), ("Ada", 3));

        let failed = |e: Evidence<'_>| verify(&e).unwrap_err().check;
        // A changed result (Ada became Eve).
        let changed = String::from_utf8(w.data.clone()).unwrap().replace("Ada", "Eve").into_bytes();
        assert_eq!(failed(Evidence { data: &changed, ..evidence(&w, &proof, &vk) }), Check::Inclusion);
        // Another tournament's entry; not an entry at all.
        assert_eq!(failed(Evidence { tournament_id: Uuid::from_u128(8), ..evidence(&w, &proof, &vk) }), Check::Entry);
        assert_eq!(failed(Evidence { data: b"{}", ..evidence(&w, &proof, &vk) }), Check::Entry);
        // A changed checkpoint (another size), another key.
        let forged = w.note.replacen("\n3\n", "\n2\n", 1);
        assert_eq!(failed(Evidence { note: &forged, ..evidence(&w, &proof, &vk) }), Check::Checkpoint);
        let other = SigningKey::from_bytes(&[8; 32]).verifying_key();
        assert_eq!(failed(evidence(&w, &proof, &other)), Check::Checkpoint);
        // A changed proof, another position.
        let bad = [leaf_hash(b"x"), proof[1]];
        assert_eq!(failed(evidence(&w, &bad, &vk)), Check::Inclusion);
        assert_eq!(failed(Evidence { position: 2, ..evidence(&w, &proof, &vk) }), Check::Inclusion);
        // The whole log rewritten and signed again, with the key: the chain
        // still holds the old root.
        let mut rewritten = w.leaves.clone();
        rewritten[1] = leaf_hash(&changed);
        let resigned = Checkpoint { origin: "panal.ledger/test".into(), size: 3, root: root(&rewritten) }.sign(&w.key);
        let proof2 = inclusion_proof(1, &rewritten);
        let e = Evidence { data: &changed, note: &resigned, ..evidence(&w, &proof2, &vk) };
        assert_eq!(failed(e.clone()), Check::ChainRoot);
        assert_eq!(failed(Evidence { chain_root: None, ..evidence(&w, &proof, &vk) }), Check::ChainRoot);
        // The chain's root rewritten too: the chain's record of the result
        // still differs.
        let e = Evidence { chain_root: Some(root(&rewritten)), ..e };
        assert_eq!(failed(e), Check::ChainResult);
        assert_eq!(failed(Evidence { chain_result: None, ..evidence(&w, &proof, &vk) }), Check::ChainResult);
        assert_eq!(
            failed(Evidence { chain_result: Some((0, w.leaves[1])), ..evidence(&w, &proof, &vk) }),
            Check::ChainResult
        );
    }
}
