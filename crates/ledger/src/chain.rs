//! Anchoring checkpoints on an EVM chain: the `PanalLedger` contract
//! (`contract/PanalLedger.sol`; its ABI and bytecode are compiled from it
//! and committed, and the bindings below are generated from that ABI) on the
//! embedded chain ([`crate::evm`]), whose blocks live in the ledger's
//! database.

use std::sync::Arc;

use alloy_sol_types::{SolCall, SolInterface};
use chrono::{DateTime, Utc};
use kit::db::Tx;
use revm::primitives::{Address, B256, Bytes, FixedBytes, hex, keccak256};
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::domain::Hash;
use crate::evm::{self, Evm, EvmError, Transaction};
use crate::store::{self, Anchor, Store};

alloy_sol_types::sol!(PanalLedger, concat!(env!("CARGO_MANIFEST_DIR"), "/contract/PanalLedger.abi.json"));

/// The contract's deployment bytecode, as `solc` compiled it (hex).
pub const BYTECODE: &str = include_str!("../contract/PanalLedger.bin");

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// A stored block no longer replays: the chain's storage was altered.
    #[error("the embedded chain was altered: {0}")]
    Altered(EvmError),
    #[error("the contract refused: {0}")]
    Reverted(String),
    #[error("the chain answered what the contract cannot: {0}")]
    Decode(String),
    #[error("the chain's node: {0}")]
    Rpc(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// What the chain holds for one tournament.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnChainResult {
    pub position: u64,
    pub leaf: Hash,
}

/// Where the chain stands.
#[derive(Debug, Clone)]
pub struct ChainInfo {
    /// `embedded` or `json-rpc`.
    pub kind: &'static str,
    pub chain_id: u64,
    pub contract: Option<Address>,
    /// The account that anchors (the contract's owner).
    pub sender: Address,
    pub head: u64,
    /// The size of the log last anchored.
    pub anchored_size: u64,
}

struct Replica {
    evm: Evm,
    contract: Option<Address>,
}

/// The embedded chain: the blocks in the database, replayed into an EVM in
/// memory as they are needed.
pub struct Embedded {
    store: Arc<Store>,
    replica: Mutex<Replica>,
    sender: Address,
}

pub(crate) fn bytes16(id: Uuid) -> FixedBytes<16> {
    FixedBytes::from(*id.as_bytes())
}

pub(crate) fn reverted(data: &[u8]) -> String {
    use PanalLedger::PanalLedgerErrors as E;
    match E::abi_decode(data) {
        Ok(E::NotOwner(e)) => format!("{} is not the contract's owner", e.caller),
        Ok(E::SizeMustGrow(e)) => format!("a log of {} entries is anchored; {} does not grow it", e.anchored, e.given),
        Ok(E::LeavesMismatch(e)) => {
            format!("{} results expected, {} tournaments and {} leaves given", e.expected, e.tournaments, e.leaves)
        }
        Ok(E::AlreadyRecorded(e)) => format!("tournament 0x{} is recorded already", hex::encode(e.tournament)),
        Err(_) => format!("0x{}", hex::encode(data)),
    }
}

impl Embedded {
    pub fn new(store: Arc<Store>) -> Self {
        // No signatures on this chain: the sender is a fixed address.
        let sender = Address::from_word(keccak256(b"panal.ledger"));
        Self { store, replica: Mutex::new(Replica { evm: Evm::new(), contract: None }), sender }
    }

    /// Replays what other processes (or earlier runs) added.
    fn replay(replica: &mut Replica, blocks: &[evm::Block]) -> Result<(), ChainError> {
        for b in blocks {
            if let Err(e) = replica.evm.replay(b) {
                // Start again from nothing next time, rather than from a
                // state no stored block led to.
                *replica = Replica { evm: Evm::new(), contract: None };
                return Err(ChainError::Altered(e));
            }
            if b.number == 1 && b.transaction.to.is_none() && b.success {
                replica.contract = Some(Address::from_slice(&b.output));
            }
        }
        Ok(())
    }

    /// Runs `tx` as the next block and stores it in the caller's
    /// transaction; the block's output.
    async fn send(
        &self,
        replica: &mut Replica,
        db: &mut Tx,
        to: Option<Address>,
        input: Vec<u8>,
        now: DateTime<Utc>,
    ) -> Result<evm::Block, ChainError> {
        let nonce = replica.evm.nonce(self.sender);
        let tx = Transaction { caller: self.sender, nonce, to, input: Bytes::from(input) };
        let timestamp = u64::try_from(now.timestamp()).unwrap_or(0);
        let block = replica.evm.execute(tx, timestamp).map_err(|e| ChainError::Reverted(e.to_string()))?;
        if !block.success {
            return Err(ChainError::Reverted(reverted(&block.output)));
        }
        store::add_block(db, &block).await?;
        Ok(block)
    }

    /// Anchors the checkpoint of `size` with `root` and the results
    /// appended since the last anchor, in the caller's transaction (which
    /// holds the log's lock). The replica is reset when the transaction
    /// fails afterwards: see [`Embedded::forget`].
    pub async fn anchor(
        &self,
        db: &mut Tx,
        size: u64,
        root: &Hash,
        results: &[(Uuid, Hash)],
        now: DateTime<Utc>,
    ) -> Result<Anchor, ChainError> {
        let mut replica = self.replica.lock().await;
        let head = replica.evm.head();
        let blocks = store::blocks_after_in(db, head).await?;
        Self::replay(&mut replica, &blocks)?;
        let outcome = async {
            let contract = match replica.contract {
                Some(c) => c,
                None => {
                    let code = hex::decode(BYTECODE.trim()).map_err(|e| ChainError::Decode(e.to_string()))?;
                    let block = self.send(&mut replica, db, None, code, now).await?;
                    let contract = Address::from_slice(&block.output);
                    replica.contract = Some(contract);
                    contract
                }
            };
            let call = PanalLedger::anchorCall {
                newSize: size,
                root: B256::from(*root),
                tournaments: results.iter().map(|(t, _)| bytes16(*t)).collect(),
                leaves: results.iter().map(|(_, l)| B256::from(*l)).collect(),
            };
            let block = self.send(&mut replica, db, Some(contract), call.abi_encode(), now).await?;
            Ok(Anchor { block: block.number, transaction: block.transaction.hash(), anchored_at: now })
        }
        .await;
        if outcome.is_err() {
            *replica = Replica { evm: Evm::new(), contract: None };
        }
        outcome
    }

    /// Forgets the replica's state (after the transaction that stored its
    /// last blocks rolled back); the next use replays from the database.
    pub async fn forget(&self) {
        *self.replica.lock().await = Replica { evm: Evm::new(), contract: None };
    }

    /// Calls the contract (a view) on the chain as the database holds it;
    /// `None` before the contract is deployed.
    async fn view<C: SolCall>(&self, call: C) -> Result<Option<C::Return>, ChainError> {
        let mut replica = self.replica.lock().await;
        let blocks = self.store.blocks_after(replica.evm.head()).await?;
        Self::replay(&mut replica, &blocks)?;
        let Some(contract) = replica.contract else { return Ok(None) };
        let out = replica
            .evm
            .call(contract, Bytes::from(call.abi_encode()))
            .map_err(|e| ChainError::Reverted(e.to_string()))?;
        C::abi_decode_returns(&out).map(Some).map_err(|e| ChainError::Decode(e.to_string()))
    }

    /// The root the chain holds for a log of `size` entries.
    pub async fn root(&self, size: u64) -> Result<Option<Hash>, ChainError> {
        let root = self.view(PanalLedger::rootsCall(size)).await?;
        Ok(root.filter(|r| !r.is_zero()).map(|r| r.0))
    }

    /// What the chain holds for `tournament`.
    pub async fn result(&self, tournament: Uuid) -> Result<Option<OnChainResult>, ChainError> {
        let Some(position) = self.view(PanalLedger::positionsCall(bytes16(tournament))).await? else {
            return Ok(None);
        };
        if position == 0 {
            return Ok(None);
        }
        let leaf = self.view(PanalLedger::resultsCall(bytes16(tournament))).await?.unwrap_or_default();
        Ok(Some(OnChainResult { position: position - 1, leaf: leaf.0 }))
    }

    pub async fn info(&self) -> Result<ChainInfo, ChainError> {
        let anchored_size = self.view(PanalLedger::sizeCall).await?.unwrap_or(0);
        let replica = self.replica.lock().await;
        Ok(ChainInfo {
            kind: "embedded",
            chain_id: evm::CHAIN_ID,
            contract: replica.contract,
            sender: self.sender,
            head: replica.evm.head(),
            anchored_size,
        })
    }
}

/// The chain checkpoints are anchored on: the embedded one, or a real one
/// through its JSON-RPC endpoint (`[ledger.chain] rpc_url`).
pub enum Chain {
    Embedded(Embedded),
    Rpc(crate::rpc::Rpc),
}

impl Chain {
    /// Anchors the checkpoint of `size` in the caller's transaction (which
    /// holds the log's lock).
    pub async fn anchor(
        &self,
        db: &mut Tx,
        size: u64,
        root: &Hash,
        results: &[(Uuid, Hash)],
        now: DateTime<Utc>,
    ) -> Result<Anchor, ChainError> {
        match self {
            Chain::Embedded(c) => c.anchor(db, size, root, results, now).await,
            Chain::Rpc(c) => c.anchor(db, size, root, results, now).await,
        }
    }

    /// After the transaction of an anchor rolled back.
    pub async fn forget(&self) {
        match self {
            Chain::Embedded(c) => c.forget().await,
            // The transaction is on the chain (found again by its event);
            // a contract deployed is deployed again.
            Chain::Rpc(_) => {}
        }
    }

    pub async fn root(&self, size: u64) -> Result<Option<Hash>, ChainError> {
        match self {
            Chain::Embedded(c) => c.root(size).await,
            Chain::Rpc(c) => c.root(size).await,
        }
    }

    pub async fn result(&self, tournament: Uuid) -> Result<Option<OnChainResult>, ChainError> {
        match self {
            Chain::Embedded(c) => c.result(tournament).await,
            Chain::Rpc(c) => Ok(c.result(tournament).await?.map(|(position, leaf)| OnChainResult { position, leaf })),
        }
    }

    pub async fn info(&self) -> Result<ChainInfo, ChainError> {
        match self {
            Chain::Embedded(c) => c.info().await,
            Chain::Rpc(c) => Ok(ChainInfo {
                kind: "json-rpc",
                chain_id: c.chain_id(),
                contract: c.contract().await,
                sender: c.sender(),
                head: c.head().await?,
                anchored_size: c.anchored_size().await?,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anchor(size: u64, from: u64, ids: &[Uuid]) -> Vec<u8> {
        PanalLedger::anchorCall {
            newSize: size,
            root: B256::repeat_byte(u8::try_from(size % 256).unwrap_or(0)),
            tournaments: ids.iter().map(|t| bytes16(*t)).collect(),
            leaves: (from..).take(ids.len()).map(|i| B256::from(crate::domain::leaf_hash(&i.to_be_bytes()))).collect(),
        }
        .abi_encode()
    }

    fn send(evm: &mut Evm, from: Address, to: Option<Address>, input: Vec<u8>) -> evm::Block {
        let nonce = evm.nonce(from);
        evm.execute(Transaction { caller: from, nonce, to, input: Bytes::from(input) }, 1).unwrap()
    }

    #[test]
    fn the_contract_only_grows_only_for_its_owner_and_a_hundred_results_fit_one_transaction() {
        let owner = Address::repeat_byte(1);
        let mut evm = Evm::new();
        let code = hex::decode(BYTECODE.trim()).unwrap();
        let deployed = send(&mut evm, owner, None, code);
        assert!(deployed.success);
        let address = Address::from_slice(&deployed.output);
        let contract = Some(address);
        let ids: Vec<Uuid> = (0..102u128).map(Uuid::from_u128).collect();

        let first = send(&mut evm, owner, contract, anchor(2, 0, &ids[..2]));
        assert!(first.success, "{}", reverted(&first.output));
        let refusals = [
            (Address::repeat_byte(2), anchor(3, 2, &ids[2..3]), "is not the contract's owner"),
            (owner, anchor(2, 2, &ids[2..3]), "does not grow it"),
            (owner, anchor(4, 2, &ids[2..3]), "1 tournaments and 1 leaves given"),
            (owner, anchor(3, 2, &ids[..1]), "is recorded already"),
        ];
        for (from, input, why) in refusals {
            let b = send(&mut evm, from, contract, input);
            assert!(!b.success && reverted(&b.output).contains(why), "{} !~ {why}", reverted(&b.output));
        }
        let hundred = send(&mut evm, owner, contract, anchor(102, 2, &ids[2..]));
        assert!(hundred.success, "{}", reverted(&hundred.output));
        // 4.8 M gas when written (2 results: 0.16 M).
        assert!(hundred.gas_used < evm::GAS_LIMIT, "an anchor of 100 results uses {} gas", hundred.gas_used);
        let root = evm.call(address, Bytes::from(PanalLedger::rootsCall(102).abi_encode())).unwrap();
        assert_eq!(PanalLedger::rootsCall::abi_decode_returns(&root).unwrap(), B256::repeat_byte(102));
    }
}
