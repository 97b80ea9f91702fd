//! Anchoring on a real EVM chain (Avalanche Fuji, a local node) through its
//! JSON-RPC endpoint, with transactions signed here by the ledger's chain
//! key (secp256k1, a secret given as a file).
//!
//! Transactions are legacy ones with EIP-155 replay protection (every EVM
//! chain takes them): RLP of (nonce, gas price, gas, to, value, data,
//! chain id, 0, 0) hashed with keccak-256 and signed, then sent as RLP of
//! (nonce, gas price, gas, to, value, data, v, r, s).

use std::time::Duration;

use alloy_sol_types::{SolCall, SolEvent};
use chrono::{DateTime, Utc};
use k256::ecdsa::SigningKey;
use kit::db::Tx;
use revm::primitives::{Address, B256, hex, keccak256};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::chain::{ChainError, PanalLedger};
use crate::domain::Hash;
use crate::store::{self, Anchor, Store};

/// A JSON-RPC chain and the account that anchors on it.
pub struct Rpc {
    http: reqwest::Client,
    url: String,
    key: SigningKey,
    sender: Address,
    chain_id: u64,
    /// The contract: configured, or deployed at the first anchor and kept
    /// in the database.
    contract: Mutex<Option<Address>>,
    receipt_timeout: Duration,
}

/// The address of a secp256k1 key: the last 20 bytes of the keccak-256 of
/// its uncompressed public point.
fn address_of(key: &SigningKey) -> Address {
    let point = key.verifying_key().to_encoded_point(false);
    Address::from_slice(&keccak256(&point.as_bytes()[1..])[12..])
}

/// An integer as RLP wants it: big-endian, no leading zeros.
fn trimmed(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

/// RLP of a list of already-encoded items.
fn rlp_list(items: &[Vec<u8>]) -> Vec<u8> {
    let payload: Vec<u8> = items.concat();
    let mut out = Vec::with_capacity(payload.len() + 9);
    alloy_rlp::Header { list: true, payload_length: payload.len() }.encode(&mut out);
    out.extend(payload);
    out
}

fn rlp<T: alloy_rlp::Encodable + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    value.encode(&mut out);
    out
}

fn quantity(v: &Value) -> Option<u64> {
    u64::from_str_radix(v.as_str()?.trim_start_matches("0x"), 16).ok()
}

fn quantity_u128(v: &Value) -> Option<u128> {
    u128::from_str_radix(v.as_str()?.trim_start_matches("0x"), 16).ok()
}

/// A legacy transaction, for a chain (EIP-155).
pub struct LegacyTx<'a> {
    pub chain_id: u64,
    pub nonce: u64,
    pub gas_price: u128,
    pub gas: u64,
    /// `None` deploys `data`.
    pub to: Option<Address>,
    pub value: u128,
    pub data: &'a [u8],
}

/// The transaction signed with `key`, encoded as a node takes it.
pub fn sign_legacy(key: &SigningKey, tx: &LegacyTx<'_>) -> Result<Vec<u8>, ChainError> {
    let LegacyTx { chain_id, nonce, gas_price, gas, to, value, data } = *tx;
    let to = match to {
        Some(a) => rlp(a.as_slice()),
        None => rlp(&[] as &[u8]),
    };
    let head = [
        rlp(trimmed(&nonce.to_be_bytes())),
        rlp(trimmed(&gas_price.to_be_bytes())),
        rlp(trimmed(&gas.to_be_bytes())),
        to,
        rlp(trimmed(&value.to_be_bytes())),
        rlp(data),
    ];
    let mut unsigned = head.to_vec();
    unsigned.extend([rlp(trimmed(&chain_id.to_be_bytes())), rlp(&[] as &[u8]), rlp(&[] as &[u8])]);
    let hash = keccak256(rlp_list(&unsigned));
    let (signature, recovery) =
        key.sign_prehash_recoverable(hash.as_slice()).map_err(|e| ChainError::Rpc(format!("signing: {e}")))?;
    let v = u64::from(recovery.to_byte()) + chain_id * 2 + 35;
    let (r, s) = signature.split_bytes();
    let mut signed = head.to_vec();
    signed.extend([rlp(trimmed(&v.to_be_bytes())), rlp(trimmed(&r)), rlp(trimmed(&s))]);
    Ok(rlp_list(&signed))
}

impl Rpc {
    /// Connects: reads the chain's id, and checks the configured contract
    /// has code.
    pub async fn connect(
        url: String,
        key_hex: &str,
        contract: Option<Address>,
        receipt_timeout: Duration,
        store: &Store,
    ) -> Result<Self, ChainError> {
        let bytes = hex::decode(key_hex.trim()).map_err(|_| ChainError::Rpc("the chain key is not hex".into()))?;
        let key =
            SigningKey::from_slice(&bytes).map_err(|_| ChainError::Rpc("the chain key is not secp256k1".into()))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| ChainError::Rpc(e.to_string()))?;
        let mut rpc =
            Self { http, url, sender: address_of(&key), key, chain_id: 0, contract: Mutex::new(None), receipt_timeout };
        rpc.chain_id = quantity(&rpc.call("eth_chainId", json!([])).await?)
            .ok_or_else(|| ChainError::Rpc("eth_chainId: not a quantity".into()))?;
        let contract = match contract {
            Some(c) => Some(c),
            None => store.chain_contract(rpc.chain_id).await?.map(|a| Address::from_slice(&a)),
        };
        if let Some(c) = contract {
            let code = rpc.call("eth_getCode", json!([c, "latest"])).await?;
            if code.as_str().is_none_or(|c| c == "0x") {
                return Err(ChainError::Rpc(format!("no contract at {c} on chain {}", rpc.chain_id)));
            }
        }
        *rpc.contract.get_mut() = contract;
        Ok(rpc)
    }

    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    pub fn sender(&self) -> Address {
        self.sender
    }

    pub async fn contract(&self) -> Option<Address> {
        *self.contract.lock().await
    }

    async fn call(&self, method: &str, params: Value) -> Result<Value, ChainError> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let r = self
            .http
            .post(&self.url)
            .json(&body)
            .send()
            .await
            .map_err(|e| ChainError::Rpc(format!("{method}: {e}")))?;
        let answer: Value = r.json().await.map_err(|e| ChainError::Rpc(format!("{method}: {e}")))?;
        if let Some(error) = answer.get("error") {
            // A revert's data, when the node gives it, says why.
            let data = error["data"].as_str().and_then(|d| hex::decode(d).ok());
            return Err(match data {
                Some(d) if !d.is_empty() => ChainError::Reverted(crate::chain::reverted(&d)),
                _ => ChainError::Rpc(format!("{method}: {}", error["message"].as_str().unwrap_or("error"))),
            });
        }
        Ok(answer["result"].clone())
    }

    /// Signs and sends a transaction, and waits for its receipt: the block
    /// and hash, or why it failed.
    async fn send(&self, to: Option<Address>, data: Vec<u8>) -> Result<(u64, B256, Value), ChainError> {
        let tx = json!({"from": self.sender, "to": to, "data": hex::encode_prefixed(&data)});
        let gas = quantity(&self.call("eth_estimateGas", json!([tx])).await?)
            .ok_or_else(|| ChainError::Rpc("eth_estimateGas: not a quantity".into()))?;
        let gas_price = quantity_u128(&self.call("eth_gasPrice", json!([])).await?)
            .ok_or_else(|| ChainError::Rpc("eth_gasPrice: not a quantity".into()))?;
        let nonce = quantity(&self.call("eth_getTransactionCount", json!([self.sender, "pending"])).await?)
            .ok_or_else(|| ChainError::Rpc("eth_getTransactionCount: not a quantity".into()))?;
        // A fifth more gas than estimated: estimates are tight.
        let raw = sign_legacy(
            &self.key,
            &LegacyTx { chain_id: self.chain_id, nonce, gas_price, gas: gas + gas / 5, to, value: 0, data: &data },
        )?;
        let hash = self.call("eth_sendRawTransaction", json!([hex::encode_prefixed(&raw)])).await?;
        let hash: B256 =
            hash.as_str().and_then(|h| h.parse().ok()).ok_or_else(|| ChainError::Rpc("no transaction hash".into()))?;
        let deadline = tokio::time::Instant::now() + self.receipt_timeout;
        loop {
            let receipt = self.call("eth_getTransactionReceipt", json!([hash])).await?;
            if !receipt.is_null() {
                if quantity(&receipt["status"]) != Some(1) {
                    return Err(ChainError::Reverted(format!("transaction {hash} failed")));
                }
                let block = quantity(&receipt["blockNumber"]).unwrap_or(0);
                return Ok((block, hash, receipt));
            }
            if tokio::time::Instant::now() > deadline {
                return Err(ChainError::Rpc(format!("transaction {hash} was not mined in time")));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn view<C: SolCall>(&self, contract: Address, call: C) -> Result<C::Return, ChainError> {
        let out = self
            .call("eth_call", json!([{"to": contract, "data": hex::encode_prefixed(call.abi_encode())}, "latest"]))
            .await?;
        let bytes = out.as_str().and_then(|o| hex::decode(o).ok()).unwrap_or_default();
        C::abi_decode_returns(&bytes).map_err(|e| ChainError::Decode(e.to_string()))
    }

    /// Anchors the checkpoint of `size`, in the caller's transaction
    /// (which holds the log's lock); deploys the contract first when
    /// there is none. An anchor a crash left unrecorded is found on the
    /// chain (its `Anchored` event) rather than sent twice.
    pub async fn anchor(
        &self,
        db: &mut Tx,
        size: u64,
        root: &Hash,
        results: &[(uuid::Uuid, Hash)],
        now: DateTime<Utc>,
    ) -> Result<Anchor, ChainError> {
        let mut contract = self.contract.lock().await;
        let address = match *contract {
            Some(c) => c,
            None => {
                let code = hex::decode(crate::chain::BYTECODE.trim()).map_err(|e| ChainError::Decode(e.to_string()))?;
                let (_, _, receipt) = self.send(None, code).await?;
                let address: Address = receipt["contractAddress"]
                    .as_str()
                    .and_then(|a| a.parse().ok())
                    .ok_or_else(|| ChainError::Rpc("the deployment's receipt names no contract".into()))?;
                // Kept with the anchor: a deployment whose transaction
                // rolls back is deployed again (the first one unused).
                store::set_chain_contract(db, self.chain_id, address.as_slice(), now).await?;
                *contract = Some(address);
                address
            }
        };
        let held = self.view(address, PanalLedger::rootsCall(size)).await?;
        if held.0 == *root {
            return self.anchored(address, size, now).await;
        }
        if !held.is_zero() {
            return Err(ChainError::Reverted(format!("the chain holds another root for a log of {size} entries")));
        }
        let call = PanalLedger::anchorCall {
            newSize: size,
            root: B256::from(*root),
            tournaments: results.iter().map(|(t, _)| crate::chain::bytes16(*t)).collect(),
            leaves: results.iter().map(|(_, l)| B256::from(*l)).collect(),
        };
        let (block, transaction, _) = self.send(Some(address), call.abi_encode()).await?;
        Ok(Anchor { block, transaction, anchored_at: now })
    }

    /// The anchor of `size` already on the chain, from its event.
    async fn anchored(&self, contract: Address, size: u64, now: DateTime<Utc>) -> Result<Anchor, ChainError> {
        let topic = B256::left_padding_from(&size.to_be_bytes());
        let logs = self
            .call(
                "eth_getLogs",
                json!([{"address": contract, "fromBlock": "earliest", "toBlock": "latest",
                    "topics": [PanalLedger::Anchored::SIGNATURE_HASH, topic]}]),
            )
            .await?;
        let log = logs.as_array().and_then(|l| l.first()).ok_or_else(|| {
            ChainError::Rpc(format!("the chain holds the root of {size} entries but no Anchored event for it"))
        })?;
        let transaction: B256 = log["transactionHash"].as_str().and_then(|h| h.parse().ok()).unwrap_or_default();
        Ok(Anchor { block: quantity(&log["blockNumber"]).unwrap_or(0), transaction, anchored_at: now })
    }

    pub async fn root(&self, size: u64) -> Result<Option<Hash>, ChainError> {
        let Some(contract) = self.contract().await else { return Ok(None) };
        let root = self.view(contract, PanalLedger::rootsCall(size)).await?;
        Ok((!root.is_zero()).then_some(root.0))
    }

    pub async fn result(&self, tournament: uuid::Uuid) -> Result<Option<(u64, Hash)>, ChainError> {
        let Some(contract) = self.contract().await else { return Ok(None) };
        let id = crate::chain::bytes16(tournament);
        let position = self.view(contract, PanalLedger::positionsCall(id)).await?;
        if position == 0 {
            return Ok(None);
        }
        let leaf = self.view(contract, PanalLedger::resultsCall(id)).await?;
        Ok(Some((position - 1, leaf.0)))
    }

    pub async fn head(&self) -> Result<u64, ChainError> {
        quantity(&self.call("eth_blockNumber", json!([])).await?)
            .ok_or_else(|| ChainError::Rpc("eth_blockNumber: not a quantity".into()))
    }

    pub async fn anchored_size(&self) -> Result<u64, ChainError> {
        let Some(contract) = self.contract().await else { return Ok(0) };
        self.view(contract, PanalLedger::sizeCall).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(hex_key: &str) -> SigningKey {
        SigningKey::from_slice(&hex::decode(hex_key).unwrap()).unwrap()
    }

    #[test]
    fn a_key_has_its_ethereum_address() {
        // The first of the well-known development accounts (Hardhat, Anvil).
        let k = key("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80");
        assert_eq!(address_of(&k), "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266".parse::<Address>().unwrap());
    }

    #[test]
    fn a_transaction_is_signed_as_eip_155_says() {
        // EIP-155's own example: nonce 9, 20 gwei, 21000 gas, one ether to
        // 0x3535…35 on chain 1, signed with the key 0x4646…46.
        let k = key("4646464646464646464646464646464646464646464646464646464646464646");
        let to = Some(Address::repeat_byte(0x35));
        let tx = LegacyTx {
            chain_id: 1,
            nonce: 9,
            gas_price: 20_000_000_000,
            gas: 21_000,
            to,
            value: 1_000_000_000_000_000_000,
            data: &[],
        };
        let raw = sign_legacy(&k, &tx).unwrap();
        assert_eq!(
            hex::encode(raw),
            "f86c098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a76400008025a028ef61340bd939bc2195fe537567866003e1a15d3c71ff63e1590620aa636276a067cbe9d8997f761aecb703304b3800ccf555c9f3dc64214b297fb1966a3b6d83"
        );
    }
}
