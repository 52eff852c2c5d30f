"""RFC 9162 (Certificate Transparency v2) Merkle tree: roots, proofs and their verification.

Inputs are *leaf hashes* (32 bytes, already SHA-256(0x00 || event)); interior nodes are
SHA-256(0x01 || left || right) and the tree hash of no leaves is SHA-256(b""). A tree of
n > 1 leaves splits at k, the largest power of two strictly below n (RFC 9162 §2.1.1).

Proof generation never reads leaves itself: it asks a `subtree(start, end)` callable for
MTH(leaves[start:end]). Every range it asks for is a node of the tree, i.e. `start` is a
multiple of a power of two 2**j >= end - start. `SubtreeCache` answers those calls from a
`PerfectSubtreeStore` of aligned perfect subtrees, so a storage-backed table of
(level, index) -> hash can stand in for the in-memory `MemoryStore`.

The verifiers follow RFC 9162 §2.1.3.2 and §2.1.4.2 step by step and share no code with
the generators, so a bug in one is not mirrored in the other. They return False on any
malformed input instead of raising: proofs come from outside.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "LeafReader",
    "MemoryStore",
    "PerfectSubtreeStore",
    "SubtreeCache",
    "SubtreeHasher",
    "consistency_proof",
    "consistency_proof_from_leaves",
    "inclusion_proof",
    "inclusion_proof_from_leaves",
    "node_hash",
    "root",
    "subtree_hash",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
_NODE = b"\x01"
_sha256 = hashlib.sha256

#: subtree(start, end) -> MTH(leaves[start:end])
SubtreeHasher = Callable[[int, int], bytes]
#: read(start, end) -> leaves[start:end] (the leaf hashes, in order)
LeafReader = Callable[[int, int], Sequence[bytes]]


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the interior node hash SHA-256(0x01 || left || right)."""
    return _sha256(_NODE + left + right).digest()


def _split(n: int) -> int:
    """Return the largest power of two strictly less than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _check_hash(value: bytes, what: str) -> None:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise ValueError(f"{what} must be {HASH_SIZE} bytes")


# --------------------------------------------------------------------------- tree hash


def root(leaves: Iterable[bytes]) -> bytes:
    """Return MTH(leaves) in O(n) time and O(log n) memory; leaves may be streamed."""
    # The stack holds the roots of the complete perfect subtrees seen so far, largest
    # first. Appending leaf number `count` (1-based) completes one perfect subtree per
    # trailing zero bit of `count`, so we merge that many times: a binary counter.
    sha = _sha256
    stack: list[bytes] = []
    push, pop = stack.append, stack.pop
    for count, digest in enumerate(leaves, 1):
        if len(digest) != HASH_SIZE:
            raise ValueError(f"leaf {count - 1} is not a {HASH_SIZE}-byte hash")
        while not count & 1:
            digest = sha(_NODE + pop() + digest).digest()
            count >>= 1
        push(digest)
    if not stack:
        return EMPTY_ROOT
    # What is left are perfect subtrees of strictly decreasing size: exactly the right
    # spine of the RFC's split, so folding them from the right gives MTH.
    digest = pop()
    while stack:
        digest = sha(_NODE + pop() + digest).digest()
    return digest


# --------------------------------------------------------------------------- proofs


def inclusion_proof(index: int, size: int, subtree: SubtreeHasher) -> list[bytes]:
    """Return PATH(index, D[0:size]) per RFC 9162 §2.1.3.1, leaf-side sibling first."""
    if not 0 <= index < size:
        raise ValueError(f"index {index} is outside a tree of size {size}")
    # Walk down from the root; each step records the sibling of the half holding `index`.
    # The RFC lists siblings bottom-up, so reverse at the end.
    path: list[bytes] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            path.append(subtree(lo + k, hi))
            hi = lo + k
        else:
            path.append(subtree(lo, lo + k))
            lo += k
    path.reverse()
    return path


def consistency_proof(old_size: int, new_size: int, subtree: SubtreeHasher) -> list[bytes]:
    """Return PROOF(old_size, D[0:new_size]) per RFC 9162 §2.1.4.1 (SUBPROOF with b=true).

    The RFC defines the proof for 0 < old_size < new_size; for old_size == 0 or
    old_size == new_size the proof is empty, as in the CT reference implementations.
    """
    if not 0 <= old_size <= new_size:
        raise ValueError(f"no consistency proof from size {old_size} to {new_size}")
    if old_size in (0, new_size):
        return []
    proof: list[bytes] = []
    lo, hi, m = 0, new_size, old_size  # SUBPROOF(m, D[lo:hi], complete)
    complete = True  # b: is D[lo:hi] still a prefix the verifier already knows the root of?
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            proof.append(subtree(lo + k, hi))
            hi = lo + k
        else:
            proof.append(subtree(lo, lo + k))
            lo += k
            m -= k
            complete = False
    if not complete:
        proof.append(subtree(lo, hi))
    proof.reverse()
    return proof


def _from_leaves(leaves: Sequence[bytes]) -> SubtreeHasher:
    def subtree(start: int, end: int) -> bytes:
        return root(leaves[start:end])

    return subtree


def inclusion_proof_from_leaves(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """Return the inclusion proof of leaves[index] in the tree of all `leaves` (O(n))."""
    return inclusion_proof(index, len(leaves), _from_leaves(leaves))


def consistency_proof_from_leaves(old_size: int, leaves: Sequence[bytes]) -> list[bytes]:
    """Return the consistency proof from size `old_size` to the tree of all `leaves`."""
    return consistency_proof(old_size, len(leaves), _from_leaves(leaves))


# --------------------------------------------------------------------------- verification


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == HASH_SIZE


def _is_size(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """Check an inclusion proof exactly as RFC 9162 §2.1.3.2; False on any bad input.

    `size` and `root` must come from the same signed tree head: the proof alone does not
    pin the size (leaf 0's proof has the same shape in trees of 3 and 4 leaves).
    """
    if not (_is_size(index) and _is_size(size) and _is_hash(leaf_hash) and _is_hash(root)):
        return False
    if not isinstance(proof, Sequence) or not all(_is_hash(p) for p in proof):
        return False
    # 1. leaf_index must be below tree_size.
    if index >= size:
        return False
    # 2.-3.
    fn, sn = index, size - 1
    r = leaf_hash
    # 4.
    for p in proof:
        # a.
        if sn == 0:
            return False
        # b.
        if fn & 1 or fn == sn:
            r = _sha256(_NODE + p + r).digest()
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _sha256(_NODE + r + p).digest()
        # c.
        fn >>= 1
        sn >>= 1
    # 5.
    return sn == 0 and r == root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Check a consistency proof as RFC 9162 §2.1.4.2; False on any bad input.

    Outside the RFC's 0 < old_size < new_size: equal sizes need an empty proof and equal
    roots; old_size 0 needs an empty proof and old_root == SHA-256(b"").
    """
    if not (_is_size(old_size) and _is_size(new_size)):
        return False
    if not (_is_hash(old_root) and _is_hash(new_root)):
        return False
    if not isinstance(proof, Sequence) or not all(_is_hash(c) for c in proof):
        return False
    if old_size > new_size:
        return False
    if old_size == new_size:
        return len(proof) == 0 and old_root == new_root
    if old_size == 0:
        return len(proof) == 0 and old_root == EMPTY_ROOT
    # 1.
    if len(proof) == 0:
        return False
    path = list(proof)
    # 2. A power-of-two old tree is itself a node of the new tree; the proof omits it.
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    # 3.
    fn, sn = old_size - 1, new_size - 1
    # 4.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # 5.
    fr = sr = path[0]
    # 6.
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = _sha256(_NODE + c + fr).digest()
            sr = _sha256(_NODE + c + sr).digest()
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = _sha256(_NODE + sr + c).digest()
        fn >>= 1
        sn >>= 1
    # 7.
    return fr == old_root and sr == new_root and sn == 0


# --------------------------------------------------------------------------- subtree memo
#
# Approach. A *perfect* subtree (level, index) covers leaves [index * 2**level,
# (index + 1) * 2**level). Once those leaves exist its hash never changes, because the log
# is append-only, so it can be stored forever (a table keyed by (level, index)). Any range
# the proof generators ask for, [start, end) with `start` aligned, decomposes by the binary
# digits of end - start into at most log2(n) aligned perfect subtrees, largest first; MTH
# of the range is those hashes folded from the right (the RFC's right spine). So a proof on
# a 1,000,000-leaf log with a warm store costs O(log² n) store look-ups and hashes, and
# never touches the leaves except a final partial block smaller than 2**min_level.
#
# Perfect subtrees below `min_level` are not stored: they are recomputed from one read of
# at most 2**min_level leaves, which keeps the store ~2**-min_level the size of the log.


class PerfectSubtreeStore(Protocol):
    """Persistent map (level, index) -> hash of leaves [index << level, (index + 1) << level)."""

    def get(self, level: int, index: int) -> bytes | None:
        """Return the stored hash, or None if it has not been computed yet."""
        ...

    def put(self, level: int, index: int, digest: bytes) -> None:
        """Record a hash; it never changes, so an existing entry may be kept as is."""
        ...


class MemoryStore:
    """A dict-backed PerfectSubtreeStore (tests, tools, single-process caches)."""

    def __init__(self) -> None:
        self.nodes: dict[tuple[int, int], bytes] = {}

    def get(self, level: int, index: int) -> bytes | None:
        """Return the stored hash or None."""
        return self.nodes.get((level, index))

    def put(self, level: int, index: int, digest: bytes) -> None:
        """Record a hash."""
        self.nodes[(level, index)] = digest

    def __len__(self) -> int:
        return len(self.nodes)


def _perfect(
    level: int, index: int, read: LeafReader, store: PerfectSubtreeStore, min_level: int
) -> bytes:
    """Return the hash of the aligned perfect subtree (level, index), memoising it."""
    cached = store.get(level, index)
    if cached is not None:
        return cached
    if level == min_level:
        start = index << level
        digest = root(read(start, start + (1 << level)))
    else:
        # Recursion depth is at most log2(n) - min_level; children are memoised in turn.
        left = _perfect(level - 1, 2 * index, read, store, min_level)
        right = _perfect(level - 1, 2 * index + 1, read, store, min_level)
        digest = _sha256(_NODE + left + right).digest()
    store.put(level, index, digest)
    return digest


def subtree_hash(
    start: int, end: int, read: LeafReader, store: PerfectSubtreeStore, min_level: int = 0
) -> bytes:
    """Return MTH(leaves[start:end]) from aligned perfect subtrees (see the note above)."""
    if not 0 <= start <= end:
        raise ValueError(f"bad leaf range [{start}, {end})")
    if min_level < 0:
        raise ValueError("min_level must be >= 0")
    parts: list[bytes] = []
    pos, remaining = start, end - start
    while remaining:
        level = remaining.bit_length() - 1  # largest perfect block first, as the RFC splits
        width = 1 << level
        if level < min_level:
            # Everything left is smaller than one stored block: hash it in one read.
            parts.append(root(read(pos, end)))
            break
        if pos % width == 0:
            parts.append(_perfect(level, pos >> level, read, store, min_level))
        else:
            # Not on the grid (never the case for proof requests): compute directly.
            parts.append(root(read(pos, pos + width)))
        pos += width
        remaining -= width
    if not parts:
        return EMPTY_ROOT
    digest = parts.pop()
    while parts:
        digest = _sha256(_NODE + parts.pop() + digest).digest()
    return digest


class SubtreeCache:
    """A SubtreeHasher backed by a leaf reader and a PerfectSubtreeStore.

    Pass an instance as `subtree` to inclusion_proof/consistency_proof. Calling
    `root(size)` once warms the store with every perfect subtree of the first `size`
    leaves at level >= min_level.
    """

    def __init__(
        self, read: LeafReader, store: PerfectSubtreeStore | None = None, min_level: int = 0
    ) -> None:
        if min_level < 0:
            raise ValueError("min_level must be >= 0")
        self.read = read
        self.store: PerfectSubtreeStore = MemoryStore() if store is None else store
        self.min_level = min_level

    def __call__(self, start: int, end: int) -> bytes:
        """Return MTH(leaves[start:end])."""
        return subtree_hash(start, end, self.read, self.store, self.min_level)

    def root(self, size: int) -> bytes:
        """Return the tree hash of the first `size` leaves."""
        return self(0, size)
