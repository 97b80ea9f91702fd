//! The ledger's SQL. Appending an entry, signing a checkpoint and anchoring
//! it each happen in one transaction that first locks the log's row, so
//! entries take consecutive positions and one process at a time signs and
//! anchors (the embedded chain's next block is then always the next one).

use chrono::{DateTime, Utc};
use kit::db::{Db, Tx};
use kit::{with_db, with_tx};
use revm::primitives::{Address, B256, Bytes};
use uuid::Uuid;

use crate::domain::{Entry, Hash};
use crate::evm::{Block, Transaction};

/// An entry as stored.
#[derive(Debug, Clone)]
pub struct StoredEntry {
    pub position: u64,
    pub tournament_id: Uuid,
    /// The exact bytes the leaf hashes.
    pub data: String,
    pub leaf: Hash,
    pub recorded_at: DateTime<Utc>,
}

/// A signed checkpoint as stored, with where it was anchored.
#[derive(Debug, Clone)]
pub struct StoredCheckpoint {
    pub size: u64,
    pub root: Hash,
    pub note: String,
    pub signed_at: DateTime<Utc>,
    pub anchor: Option<Anchor>,
}

/// Where a checkpoint was anchored on the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub block: u64,
    pub transaction: B256,
    pub anchored_at: DateTime<Utc>,
}

pub struct Store {
    db: Db,
}

type EntryRow = (i64, Uuid, String, Vec<u8>, DateTime<Utc>);
type CheckpointRow = (i64, Vec<u8>, String, DateTime<Utc>, Option<i64>, Option<Vec<u8>>, Option<DateTime<Utc>>);
type BlockRow = (i64, Vec<u8>, Vec<u8>, i64, Vec<u8>, i64, Option<Vec<u8>>, Vec<u8>, bool, i64, Vec<u8>);

const BLOCKS_AFTER: &str = "SELECT number, hash, parent_hash, timestamp, caller, nonce, recipient, input, success, \
     gas_used, output FROM chain_blocks WHERE number > $1 ORDER BY number";
const LEAVES: &str = "SELECT leaf FROM entries WHERE position < $1 ORDER BY position";

macro_rules! checkpoint_columns {
    () => {
        "size, root, note, signed_at, anchor_block, anchor_tx, anchored_at"
    };
}

fn hash(bytes: &[u8]) -> Hash {
    bytes.try_into().unwrap_or([0; 32])
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn entry(r: EntryRow) -> StoredEntry {
    StoredEntry { position: count(r.0), tournament_id: r.1, data: r.2, leaf: hash(&r.3), recorded_at: r.4 }
}

fn checkpoint(r: CheckpointRow) -> StoredCheckpoint {
    let anchor = match (r.4, r.5, r.6) {
        (Some(block), Some(tx), Some(at)) => {
            Some(Anchor { block: count(block), transaction: B256::from(hash(&tx)), anchored_at: at })
        }
        _ => None,
    };
    StoredCheckpoint { size: count(r.0), root: hash(&r.1), note: r.2, signed_at: r.3, anchor }
}

fn block(r: BlockRow) -> Block {
    Block {
        number: count(r.0),
        hash: B256::from(hash(&r.1)),
        parent_hash: B256::from(hash(&r.2)),
        timestamp: count(r.3),
        transaction: Transaction {
            caller: Address::from_slice(&r.4),
            nonce: count(r.5),
            to: r.6.as_deref().map(Address::from_slice),
            input: Bytes::from(r.7),
        },
        success: r.8,
        gas_used: count(r.9),
        output: Bytes::from(r.10),
    }
}

impl Store {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Appends a finished tournament's entry at the log's next position,
    /// in the consumer's transaction; a tournament already in the log is
    /// left as it is (a redelivered event).
    pub async fn append(tx: &mut Tx, entry: &Entry, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
        let size = lock(tx).await?;
        let known: Option<i64> = with_tx!(tx, conn => sqlx::query_scalar(
            "SELECT position FROM entries WHERE tournament_id = $1")
            .bind(entry.tournament_id).fetch_optional(conn).await)?;
        if known.is_some() {
            return Ok(());
        }
        let data = String::from_utf8(entry.canonical()).unwrap_or_default();
        with_tx!(tx, conn => sqlx::query(
            "INSERT INTO entries (position, tournament_id, data, leaf, recorded_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(int(size)).bind(entry.tournament_id).bind(&data).bind(entry.leaf().to_vec()).bind(now)
            .execute(conn).await.map(|_| ()))?;
        with_tx!(tx, conn => sqlx::query("UPDATE log SET size = size + 1 WHERE id = 1")
            .execute(conn).await.map(|_| ()))
    }

    /// The seed of the key that signs checkpoints, if one was made.
    pub async fn signing_seed(&self) -> Result<Option<[u8; 32]>, sqlx::Error> {
        let seed: Option<Vec<u8>> = with_db!(&self.db, pool => sqlx::query_scalar(
            "SELECT seed FROM signing_key WHERE id = 1").fetch_optional(pool).await)?;
        Ok(seed.and_then(|s| s.try_into().ok()))
    }

    /// Keeps `seed` as the signing key unless another process made one
    /// first; returns the one kept.
    pub async fn keep_signing_seed(&self, seed: [u8; 32], now: DateTime<Utc>) -> Result<[u8; 32], sqlx::Error> {
        with_db!(write &self.db, pool => sqlx::query(
            "INSERT INTO signing_key (id, seed, created_at) VALUES (1, $1, $2) ON CONFLICT (id) DO NOTHING")
            .bind(seed.to_vec()).bind(now).execute(pool).await.map(|_| ()))?;
        Ok(self.signing_seed().await?.unwrap_or(seed))
    }

    pub async fn entry(&self, tournament_id: Uuid) -> Result<Option<StoredEntry>, sqlx::Error> {
        let row: Option<EntryRow> = with_db!(&self.db, pool => sqlx::query_as(
            "SELECT position, tournament_id, data, leaf, recorded_at FROM entries WHERE tournament_id = $1")
            .bind(tournament_id).fetch_optional(pool).await)?;
        Ok(row.map(entry))
    }

    /// The leaf hashes of the first `n` entries, in order.
    pub async fn leaves(&self, n: u64) -> Result<Vec<Hash>, sqlx::Error> {
        let rows: Vec<Vec<u8>> =
            with_db!(&self.db, pool => sqlx::query_scalar(LEAVES).bind(int(n)).fetch_all(pool).await)?;
        Ok(rows.iter().map(|l| hash(l)).collect())
    }

    /// The latest checkpoint, or the one of `size`.
    pub async fn checkpoint(&self, size: Option<u64>) -> Result<Option<StoredCheckpoint>, sqlx::Error> {
        let row: Option<CheckpointRow> = match size {
            Some(size) => with_db!(&self.db, pool => sqlx::query_as(
                concat!("SELECT ", checkpoint_columns!(), " FROM checkpoints WHERE size = $1"))
                .bind(int(size)).fetch_optional(pool).await)?,
            None => with_db!(&self.db, pool => sqlx::query_as(
                concat!("SELECT ", checkpoint_columns!(), " FROM checkpoints ORDER BY size DESC LIMIT 1"))
                .fetch_optional(pool).await)?,
        };
        Ok(row.map(checkpoint))
    }

    /// The latest anchored checkpoint that holds position `position`.
    pub async fn anchored_holding(&self, position: u64) -> Result<Option<StoredCheckpoint>, sqlx::Error> {
        let row: Option<CheckpointRow> = with_db!(&self.db, pool => sqlx::query_as(
            concat!("SELECT ", checkpoint_columns!(),
                " FROM checkpoints WHERE size > $1 AND anchor_block IS NOT NULL ORDER BY size DESC LIMIT 1"))
            .bind(int(position)).fetch_optional(pool).await)?;
        Ok(row.map(checkpoint))
    }

    /// The contract deployed on chain `chain_id`, if any.
    pub async fn chain_contract(&self, chain_id: u64) -> Result<Option<Vec<u8>>, sqlx::Error> {
        with_db!(&self.db, pool => sqlx::query_scalar("SELECT address FROM chain_contracts WHERE chain_id = $1")
            .bind(int(chain_id)).fetch_optional(pool).await)
    }

    /// The embedded chain's blocks after `number`, in order.
    pub async fn blocks_after(&self, number: u64) -> Result<Vec<Block>, sqlx::Error> {
        let rows: Vec<BlockRow> =
            with_db!(&self.db, pool => sqlx::query_as(BLOCKS_AFTER).bind(int(number)).fetch_all(pool).await)?;
        Ok(rows.into_iter().map(block).collect())
    }
}

/// Locks the log's row; the number of entries.
pub async fn lock(tx: &mut Tx) -> Result<u64, sqlx::Error> {
    let size: i64 = with_tx!(tx, conn => sqlx::query_scalar(
        "UPDATE log SET size = size WHERE id = 1 RETURNING size").fetch_one(conn).await)?;
    Ok(count(size))
}

/// The size of the latest checkpoint (0: none).
pub async fn signed_size(tx: &mut Tx) -> Result<u64, sqlx::Error> {
    let size: Option<i64> =
        with_tx!(tx, conn => sqlx::query_scalar("SELECT max(size) FROM checkpoints").fetch_one(conn).await)?;
    Ok(size.map_or(0, count))
}

/// The leaf hashes of the first `n` entries, in order.
pub async fn leaves_in(tx: &mut Tx, n: u64) -> Result<Vec<Hash>, sqlx::Error> {
    let rows: Vec<Vec<u8>> = with_tx!(tx, conn => sqlx::query_scalar(LEAVES).bind(int(n)).fetch_all(conn).await)?;
    Ok(rows.iter().map(|l| hash(l)).collect())
}

pub async fn add_checkpoint(
    tx: &mut Tx,
    size: u64,
    root: &Hash,
    note: &str,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    with_tx!(tx, conn => sqlx::query(
        "INSERT INTO checkpoints (size, root, note, signed_at) VALUES ($1, $2, $3, $4)")
        .bind(int(size)).bind(root.to_vec()).bind(note).bind(now).execute(conn).await.map(|_| ()))
}

/// The smallest checkpoint not anchored yet, and the size anchored before
/// it.
pub async fn unanchored(tx: &mut Tx) -> Result<Option<(u64, Hash, u64)>, sqlx::Error> {
    let next: Option<(i64, Vec<u8>)> = with_tx!(tx, conn => sqlx::query_as(
        "SELECT size, root FROM checkpoints WHERE anchor_block IS NULL ORDER BY size LIMIT 1")
        .fetch_optional(conn).await)?;
    let Some((size, root)) = next else { return Ok(None) };
    let before: Option<i64> = with_tx!(tx, conn => sqlx::query_scalar(
        "SELECT max(size) FROM checkpoints WHERE anchor_block IS NOT NULL AND size < $1")
        .bind(size).fetch_one(conn).await)?;
    Ok(Some((count(size), hash(&root), before.map_or(0, count))))
}

/// The tournaments and leaf hashes at positions `from..to`.
pub async fn results_between(tx: &mut Tx, from: u64, to: u64) -> Result<Vec<(Uuid, Hash)>, sqlx::Error> {
    let rows: Vec<(Uuid, Vec<u8>)> = with_tx!(tx, conn => sqlx::query_as(
        "SELECT tournament_id, leaf FROM entries WHERE position >= $1 AND position < $2 ORDER BY position")
        .bind(int(from)).bind(int(to)).fetch_all(conn).await)?;
    Ok(rows.into_iter().map(|(t, l)| (t, hash(&l))).collect())
}

pub async fn set_anchor(tx: &mut Tx, size: u64, anchor: &Anchor) -> Result<(), sqlx::Error> {
    with_tx!(tx, conn => sqlx::query(
        "UPDATE checkpoints SET anchor_block = $2, anchor_tx = $3, anchored_at = $4 WHERE size = $1")
        .bind(int(size)).bind(int(anchor.block)).bind(anchor.transaction.to_vec()).bind(anchor.anchored_at)
        .execute(conn).await.map(|_| ()))
}

/// The embedded chain's blocks after `number`, in the transaction.
pub async fn blocks_after_in(tx: &mut Tx, number: u64) -> Result<Vec<Block>, sqlx::Error> {
    let rows: Vec<BlockRow> =
        with_tx!(tx, conn => sqlx::query_as(BLOCKS_AFTER).bind(int(number)).fetch_all(conn).await)?;
    Ok(rows.into_iter().map(block).collect())
}

pub async fn add_block(tx: &mut Tx, b: &Block) -> Result<(), sqlx::Error> {
    let t = &b.transaction;
    with_tx!(tx, conn => sqlx::query(
        "INSERT INTO chain_blocks (number, hash, parent_hash, timestamp, caller, nonce, recipient, input, success,
             gas_used, output) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)")
        .bind(int(b.number)).bind(b.hash.to_vec()).bind(b.parent_hash.to_vec()).bind(int(b.timestamp))
        .bind(t.caller.to_vec()).bind(int(t.nonce)).bind(t.to.map(|a| a.to_vec())).bind(t.input.to_vec())
        .bind(b.success).bind(int(b.gas_used)).bind(b.output.to_vec())
        .execute(conn).await.map(|_| ()))
}

pub async fn set_chain_contract(
    tx: &mut Tx,
    chain_id: u64,
    address: &[u8],
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    with_tx!(tx, conn => sqlx::query(
        "INSERT INTO chain_contracts (chain_id, address, deployed_at) VALUES ($1, $2, $3)
         ON CONFLICT (chain_id) DO UPDATE SET address = excluded.address, deployed_at = excluded.deployed_at")
        .bind(int(chain_id)).bind(address).bind(now).execute(conn).await.map(|_| ()))
}
