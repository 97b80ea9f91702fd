//! The embedded chain: an Ethereum virtual machine (`revm`) in memory,
//! whose transactions are kept as blocks in the ledger's own database, so
//! `panal up` anchors checkpoints on a chain without installing anything.
//!
//! It is a development chain, like Hardhat's or Anvil's: one block per
//! transaction, no consensus, no signatures (the one sender is the
//! ledger). Its state is never stored: it is what replaying the blocks
//! gives, as on any chain. Each block's hash covers its parent's, its
//! transaction and its outcome, so a block changed in the database no
//! longer replays (see [`Evm::replay`]). Nothing here does I/O.

use revm::context::result::{ExecutionResult, Output};
use revm::context::{BlockEnv, CfgEnv, TxEnv};
use revm::database::{CacheDB, EmptyDB};
use revm::handler::{ExecuteEvm, MainBuilder, MainContext};
use revm::primitives::{Address, B256, Bytes, TxKind, U256, keccak256};
use revm::state::EvmState;
use revm::{Database, DatabaseCommit};

/// The embedded chain's id (the one development chains use).
pub const CHAIN_ID: u64 = 31337;
/// Gas per transaction: the cap Ethereum puts on one (EIP-7825), which an
/// anchor of a hundred results stays well under; the embedded chain charges
/// nothing for it.
pub const GAS_LIMIT: u64 = 16_777_216;

/// One transaction, as the embedded chain records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub caller: Address,
    pub nonce: u64,
    /// The contract called; `None` deploys `input` as a new contract.
    pub to: Option<Address>,
    pub input: Bytes,
}

impl Transaction {
    /// keccak256(caller ‖ nonce ‖ to or 20 zero bytes ‖ input).
    pub fn hash(&self) -> B256 {
        let mut data = Vec::with_capacity(48 + self.input.len());
        data.extend_from_slice(self.caller.as_slice());
        data.extend_from_slice(&self.nonce.to_be_bytes());
        data.extend_from_slice(self.to.unwrap_or_default().as_slice());
        data.extend_from_slice(&self.input);
        keccak256(data)
    }
}

/// A block: one transaction and what it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub number: u64,
    pub hash: B256,
    pub parent_hash: B256,
    /// Seconds since the epoch.
    pub timestamp: u64,
    pub transaction: Transaction,
    pub success: bool,
    pub gas_used: u64,
    /// The call's return data, or the deployed contract's address.
    pub output: Bytes,
}

impl Block {
    /// keccak256(parent ‖ number ‖ timestamp ‖ transaction hash ‖ success ‖
    /// keccak256(output)).
    fn seal(parent_hash: B256, number: u64, timestamp: u64, tx: &Transaction, success: bool, output: &[u8]) -> B256 {
        let mut data = Vec::with_capacity(32 + 8 + 8 + 32 + 1 + 32);
        data.extend_from_slice(parent_hash.as_slice());
        data.extend_from_slice(&number.to_be_bytes());
        data.extend_from_slice(&timestamp.to_be_bytes());
        data.extend_from_slice(tx.hash().as_slice());
        data.push(u8::from(success));
        data.extend_from_slice(keccak256(output).as_slice());
        keccak256(data)
    }
}

/// Why the embedded chain refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvmError {
    #[error("the transaction is invalid: {0}")]
    Invalid(String),
    #[error("block {0} is not the next block")]
    OutOfOrder(u64),
    #[error("block {0} does not replay to what was recorded: the chain was altered")]
    Altered(u64),
}

/// The chain's state: the blocks replayed so far. (revm's machine is built
/// for each transaction around the state, and the state taken back after:
/// the machine cannot move between threads, the state can.)
pub struct Evm {
    state: CacheDB<EmptyDB>,
    head: u64,
    head_hash: B256,
}

impl Default for Evm {
    fn default() -> Self {
        Self::new()
    }
}

impl Evm {
    /// The empty chain (block 0, no accounts).
    pub fn new() -> Self {
        Self { state: CacheDB::new(EmptyDB::new()), head: 0, head_hash: B256::ZERO }
    }

    /// The number of the last block (0: none yet).
    pub fn head(&self) -> u64 {
        self.head
    }

    /// The next nonce of `account`.
    pub fn nonce(&mut self, account: Address) -> u64 {
        self.state.basic(account).ok().flatten().map_or(0, |a| a.nonce)
    }

    /// Runs `tx` in block `number` on the state, without keeping its
    /// effects: the outcome and the changes to commit.
    fn run(&mut self, number: u64, timestamp: u64, tx: &Transaction) -> Result<(ExecutionResult, EvmState), EvmError> {
        let mut cfg: CfgEnv = CfgEnv::default();
        cfg.chain_id = CHAIN_ID;
        let state = std::mem::replace(&mut self.state, CacheDB::new(EmptyDB::new()));
        let mut machine = revm::Context::mainnet()
            .with_db(state)
            .with_cfg(cfg)
            .with_block(BlockEnv {
                number: U256::from(number),
                timestamp: U256::from(timestamp),
                gas_limit: 2 * GAS_LIMIT,
                ..Default::default()
            })
            .build_mainnet();
        let env = TxEnv::builder()
            .caller(tx.caller)
            .nonce(tx.nonce)
            .kind(tx.to.map_or(TxKind::Create, TxKind::Call))
            .data(tx.input.clone())
            .gas_limit(GAS_LIMIT)
            .gas_price(0)
            .chain_id(Some(CHAIN_ID))
            .build()
            .map_err(|e| EvmError::Invalid(format!("{e:?}")));
        let out = env.and_then(|env| machine.transact(env).map_err(|e| EvmError::Invalid(e.to_string())));
        self.state = machine.ctx.journaled_state.database;
        let out = out?;
        Ok((out.result, out.state))
    }

    /// Runs `tx` as the next block, at `timestamp`, and keeps its effects.
    pub fn execute(&mut self, tx: Transaction, timestamp: u64) -> Result<Block, EvmError> {
        let number = self.head + 1;
        let (result, state) = self.run(number, timestamp, &tx)?;
        let (success, output) = outcome(&result);
        let hash = Block::seal(self.head_hash, number, timestamp, &tx, success, &output);
        let block = Block {
            number,
            hash,
            parent_hash: self.head_hash,
            timestamp,
            transaction: tx,
            success,
            gas_used: result.tx_gas_used(),
            output,
        };
        self.state.commit(state);
        self.head = number;
        self.head_hash = hash;
        Ok(block)
    }

    /// Replays a recorded block on top of the state, checking that it is
    /// the next one and that it does what it says it did.
    pub fn replay(&mut self, block: &Block) -> Result<(), EvmError> {
        if block.number != self.head + 1 || block.parent_hash != self.head_hash {
            return Err(EvmError::OutOfOrder(block.number));
        }
        let (result, state) = self.run(block.number, block.timestamp, &block.transaction)?;
        let (success, output) = outcome(&result);
        let hash = Block::seal(self.head_hash, block.number, block.timestamp, &block.transaction, success, &output);
        if hash != block.hash || success != block.success || output != block.output {
            return Err(EvmError::Altered(block.number));
        }
        self.state.commit(state);
        self.head = block.number;
        self.head_hash = hash;
        Ok(())
    }

    /// Calls `to` without changing anything (a view), returning the call's
    /// output, or an error with the revert data.
    pub fn call(&mut self, to: Address, input: Bytes) -> Result<Bytes, EvmError> {
        let caller = Address::ZERO;
        let tx = Transaction { caller, nonce: self.nonce(caller), to: Some(to), input };
        let (result, _) = self.run(self.head + 1, 0, &tx)?;
        match result {
            ExecutionResult::Success { output, .. } => Ok(output.into_data()),
            ExecutionResult::Revert { output, .. } => Err(EvmError::Invalid(format!("reverted: 0x{output}"))),
            ExecutionResult::Halt { reason, .. } => Err(EvmError::Invalid(format!("halted: {reason:?}"))),
        }
    }
}

/// Whether a transaction succeeded, and its output (a call's return data,
/// a deployment's address, a revert's data).
fn outcome(result: &ExecutionResult) -> (bool, Bytes) {
    match result {
        ExecutionResult::Success { output: Output::Create(_, Some(address)), .. } => {
            (true, Bytes::copy_from_slice(address.as_slice()))
        }
        ExecutionResult::Success { output, .. } => (true, output.data().clone()),
        ExecutionResult::Revert { output, .. } => (false, output.clone()),
        ExecutionResult::Halt { .. } => (false, Bytes::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A contract that stores its call data's first word at slot 0 and
    // returns slot 0 (init code: copy the runtime and return it).
    // runtime: PUSH1 0 CALLDATALOAD DUP1 ISZERO PUSH1 0x0b JUMPI PUSH1 0 SSTORE
    //          JUMPDEST PUSH1 0 SLOAD PUSH1 0 MSTORE PUSH1 0x20 PUSH1 0 RETURN
    const RUNTIME: &str = "6000358015600b576000555b60005460005260206000f3";

    fn deploy_code() -> Bytes {
        let runtime = hex(RUNTIME);
        // PUSH1 len DUP1 PUSH1 12 PUSH1 0 CODECOPY PUSH1 0 RETURN, then runtime.
        let mut init = vec![0x60, runtime.len() as u8, 0x80, 0x60, 0x0c, 0x60, 0x00, 0x39, 0x60, 0x00, 0xf3, 0x00];
        init.extend(runtime);
        Bytes::from(init)
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    fn word(n: u8) -> Bytes {
        let mut w = [0u8; 32];
        w[31] = n;
        Bytes::copy_from_slice(&w)
    }

    #[test]
    fn blocks_replay_to_the_same_state_and_an_altered_block_does_not() {
        let me = Address::repeat_byte(7);
        let mut chain = Evm::new();
        let deployed = chain.execute(Transaction { caller: me, nonce: 0, to: None, input: deploy_code() }, 10).unwrap();
        assert!(deployed.success);
        let contract = Address::from_slice(&deployed.output);
        let nonce = chain.nonce(me);
        assert_eq!(nonce, 1);
        let stored = chain.execute(Transaction { caller: me, nonce, to: Some(contract), input: word(42) }, 11).unwrap();
        assert!(stored.success);
        assert_eq!(chain.call(contract, word(0)).unwrap(), word(42));
        assert_eq!(chain.head(), 2);

        // Another node replaying the blocks reaches the same state.
        let mut again = Evm::new();
        again.replay(&deployed).unwrap();
        again.replay(&stored).unwrap();
        assert_eq!(again.call(contract, word(0)).unwrap(), word(42));

        // A block with another input, or out of order, does not replay.
        let mut forged = stored.clone();
        forged.transaction.input = word(43);
        let mut third = Evm::new();
        third.replay(&deployed).unwrap();
        assert_eq!(third.replay(&forged), Err(EvmError::Altered(2)));
        assert_eq!(Evm::new().replay(&stored), Err(EvmError::OutOfOrder(2)));
        // A wrong nonce is refused before anything runs.
        assert!(chain.execute(Transaction { caller: me, nonce: 0, to: Some(contract), input: word(1) }, 12).is_err());
        assert_eq!(chain.head(), 2);
    }
}
