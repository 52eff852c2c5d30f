"""The tamper-evident audit log: events, Merkle tree heads and proofs."""
