// SPDX-License-Identifier: MIT
// Panal's ledger anchor: the roots of the ledger's Merkle tree and the
// results (leaf hashes) it holds, recorded in order by the one account that
// deployed the contract. See docs/ledger.md.
//
// The contract only ever grows: a new anchor must cover a larger tree and
// carry exactly the leaves appended since the last one, so the chain holds
// every result once, in the log's order, and a root, once anchored, is never
// replaced.
pragma solidity 0.8.28;

contract PanalLedger {
    /// The account that may anchor (the ledger service's).
    address public immutable owner;
    /// The size of the tree last anchored.
    uint64 public size;
    /// The root of the tree of each anchored size.
    mapping(uint64 => bytes32) public roots;
    /// Each tournament's result: the leaf hash of its entry.
    mapping(bytes16 => bytes32) public results;
    /// Each tournament's position in the log, plus one (0: not recorded).
    mapping(bytes16 => uint64) public positions;

    event Anchored(uint64 indexed size, bytes32 root);
    event Recorded(bytes16 indexed tournament, uint64 index, bytes32 leaf);

    error NotOwner(address caller);
    error SizeMustGrow(uint64 anchored, uint64 given);
    error LeavesMismatch(uint64 expected, uint256 tournaments, uint256 leaves);
    error AlreadyRecorded(bytes16 tournament);

    constructor() {
        owner = msg.sender;
    }

    /// Records the tree of `newSize` leaves with `root`, and the results
    /// appended since the last anchor: `tournaments[i]`'s entry is leaf
    /// `size + i`, whose hash is `leaves[i]`.
    function anchor(uint64 newSize, bytes32 root, bytes16[] calldata tournaments, bytes32[] calldata leaves)
        external
    {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        uint64 anchored = size;
        if (newSize <= anchored) revert SizeMustGrow(anchored, newSize);
        if (tournaments.length != newSize - anchored || leaves.length != tournaments.length) {
            revert LeavesMismatch(newSize - anchored, tournaments.length, leaves.length);
        }
        for (uint256 i = 0; i < tournaments.length; i++) {
            bytes16 t = tournaments[i];
            if (positions[t] != 0) revert AlreadyRecorded(t);
            uint64 index = anchored + uint64(i);
            positions[t] = index + 1;
            results[t] = leaves[i];
            emit Recorded(t, index, leaves[i]);
        }
        size = newSize;
        roots[newSize] = root;
        emit Anchored(newSize, root);
    }
}
