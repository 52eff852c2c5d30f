"""RFC 9162 Merkle tree: reference vectors, properties, and the perfect-subtree memo."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.audit import merkle
from service.audit.canonical import leaf_hash
from service.audit.merkle import (
    EMPTY_ROOT,
    MemoryStore,
    PerfectSubtreeStore,
    SubtreeCache,
    consistency_proof,
    consistency_proof_from_leaves,
    inclusion_proof,
    inclusion_proof_from_leaves,
    root,
    subtree_hash,
    verify_consistency,
    verify_inclusion,
)

# --------------------------------------------------------------------------- reference
# A deliberately naive transcription of RFC 9162 §2.1.1, §2.1.3.1 and §2.1.4.1, sharing
# nothing with the module under test, to cross-check it beyond the published vectors.


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: Sequence[bytes]) -> bytes:
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return d[0]  # the inputs are leaf hashes already
    k = _k(len(d))
    return hashlib.sha256(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:])).digest()


def ref_path(m: int, d: Sequence[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = _k(len(d))
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


def ref_subproof(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
    if m == len(d):
        return [] if b else [ref_mth(d)]
    k = _k(len(d))
    if m <= k:
        return [*ref_subproof(m, d[:k], b), ref_mth(d[k:])]
    return [*ref_subproof(m - k, d[k:], False), ref_mth(d[:k])]


# --------------------------------------------------------------------------- CT vectors
# The 8-entry test log of the Certificate Transparency reference implementations
# (google/certificate-transparency merkle_tree_test, transparency-dev/merkle).

CT_ENTRIES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
]
CT_LEAVES = [leaf_hash(e) for e in CT_ENTRIES]
CT_ROOTS = {
    0: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    2: "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    3: "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    4: "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    5: "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    6: "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    7: "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}
# (0-based leaf index, tree size, proof); the reference sources number leaves from 1.
CT_INCLUSION = [
    (0, 1, []),
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
CT_CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]
SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


def _h(hexes: list[str]) -> list[bytes]:
    return [bytes.fromhex(x) for x in hexes]


@pytest.mark.parametrize("size", range(9))
def test_ct_roots(size: int) -> None:
    expected = bytes.fromhex(CT_ROOTS[size])
    assert root(CT_LEAVES[:size]) == expected
    assert ref_mth(CT_LEAVES[:size]) == expected
    assert SubtreeCache(_reader(CT_LEAVES)).root(size) == expected


def test_empty_root_and_ct_leaf_zero() -> None:
    assert bytes.fromhex(CT_ROOTS[0]) == EMPTY_ROOT
    # The size-1 root is the leaf hash of the empty entry.
    assert CT_LEAVES[0] == bytes.fromhex(CT_ROOTS[1])


@pytest.mark.parametrize(("index", "size", "expected"), CT_INCLUSION)
def test_ct_inclusion_vectors(index: int, size: int, expected: list[str]) -> None:
    proof = inclusion_proof_from_leaves(index, CT_LEAVES[:size])
    assert proof == _h(expected)
    assert ref_path(index, CT_LEAVES[:size]) == proof
    root_hash = bytes.fromhex(CT_ROOTS[size])
    assert verify_inclusion(CT_LEAVES[index], index, size, proof, root_hash)
    for probe in _corrupt_inclusion(index, size, proof, root_hash):
        assert not verify_inclusion(*probe), probe


@pytest.mark.parametrize(("old", "new", "expected"), CT_CONSISTENCY)
def test_ct_consistency_vectors(old: int, new: int, expected: list[str]) -> None:
    proof = consistency_proof_from_leaves(old, CT_LEAVES[:new])
    assert proof == _h(expected)
    if old < new:
        assert ref_subproof(old, CT_LEAVES[:new], True) == proof
    old_root, new_root = bytes.fromhex(CT_ROOTS[old]), bytes.fromhex(CT_ROOTS[new])
    assert verify_consistency(old, new, old_root, new_root, proof)
    if proof:
        for probe in _corrupt_consistency(old, new, old_root, new_root, proof):
            assert not verify_consistency(*probe), probe


def _corrupt_inclusion(
    index: int, size: int, proof: list[bytes], root_hash: bytes
) -> Iterator[tuple[bytes, int, int, list[bytes], bytes]]:
    """The corruptions transparency-dev/merkle's verifier tests apply."""
    leaf = CT_LEAVES[index]
    for i in {index - 1, index + 1, index ^ 2} - {index}:
        if i >= 0:
            yield leaf, i, size, proof, root_hash
    for s in {size * 2, size // 2} - {size}:
        yield leaf, index, s, proof, root_hash
    yield SOME_HASH, index, size, proof, root_hash
    yield leaf, index, size, proof, EMPTY_ROOT
    yield leaf, index, size, proof, SOME_HASH
    yield leaf, index, size, [*proof, root_hash], root_hash
    yield leaf, index, size, [root_hash, *proof], root_hash
    for i in range(len(proof)):
        flipped = [*proof]
        flipped[i] = bytes([proof[i][0] ^ 8]) + proof[i][1:]
        yield leaf, index, size, flipped, root_hash
    if proof:
        yield leaf, index, size, proof[:-1], root_hash
    if len(proof) > 1:
        yield leaf, index, size, [SOME_HASH, proof[0], *proof[1:]], root_hash


def _corrupt_consistency(
    old: int, new: int, old_root: bytes, new_root: bytes, proof: list[bytes]
) -> Iterator[tuple[int, int, bytes, bytes, list[bytes]]]:
    for o in {old - 1, old + 1, old ^ 2} - {old}:
        yield o, new, old_root, new_root, proof
    for n in {new * 2, new // 2} - {new}:
        yield old, n, old_root, new_root, proof
    yield old, new, SOME_HASH, new_root, proof
    yield old, new, old_root, SOME_HASH, proof
    yield old, new, new_root, old_root, proof
    yield old, new, old_root, new_root, []
    for extra in (old_root, new_root, SOME_HASH):
        yield old, new, old_root, new_root, [*proof, extra]
        yield old, new, old_root, new_root, [extra, *proof]
    yield old, new, old_root, new_root, [proof[0], *proof]
    yield old, new, old_root, new_root, proof[:-1]
    for i in range(len(proof)):
        flipped = [*proof]
        flipped[i] = bytes([proof[i][0] ^ 16]) + proof[i][1:]
        yield old, new, old_root, new_root, flipped


# --------------------------------------------------------------------------- exhaustive


def _leaves(count: int, seed: int = 0) -> list[bytes]:
    return [leaf_hash(f"{seed}:{i}".encode()) for i in range(count)]


def _reader(leaves: Sequence[bytes]) -> merkle.LeafReader:
    def read(start: int, end: int) -> Sequence[bytes]:
        assert 0 <= start <= end <= len(leaves)
        return leaves[start:end]

    return read


def test_small_trees_match_the_reference_exhaustively() -> None:
    leaves = _leaves(40)
    for n in range(1, 41):
        tree = leaves[:n]
        root_hash = root(tree)
        assert root_hash == ref_mth(tree)
        for i in range(n):
            proof = inclusion_proof_from_leaves(i, tree)
            assert proof == ref_path(i, tree)
            assert verify_inclusion(tree[i], i, n, proof, root_hash)
        for m in range(1, n):
            proof = consistency_proof_from_leaves(m, tree)
            assert proof == ref_subproof(m, tree, True)
            assert verify_consistency(m, n, root(tree[:m]), root_hash, proof)


def test_root_streams_from_an_iterator() -> None:
    leaves = _leaves(1000)
    assert root(iter(leaves)) == root(leaves) == ref_mth(leaves)
    assert root(iter([])) == EMPTY_ROOT


# --------------------------------------------------------------------------- properties


@st.composite
def tree_and_index(draw: st.DrawFn) -> tuple[list[bytes], int]:
    size = draw(st.integers(min_value=1, max_value=300))
    seed = draw(st.integers(min_value=0, max_value=2**32))
    return _leaves(size, seed), draw(st.integers(min_value=0, max_value=size - 1))


@settings(max_examples=150, deadline=None)
@given(tree_and_index(), st.integers(min_value=1, max_value=299))
def test_inclusion_proofs_verify_and_bind(case: tuple[list[bytes], int], shift: int) -> None:
    leaves, index = case
    n = len(leaves)
    root_hash = root(leaves)
    proof = inclusion_proof_from_leaves(index, leaves)
    assert len(proof) <= (n - 1).bit_length()  # ceil(log2 n)
    assert verify_inclusion(leaves[index], index, n, proof, root_hash)
    if n > 1:
        other = (index + shift) % n
        if other != index:
            assert not verify_inclusion(leaves[index], other, n, proof, root_hash)
            assert not verify_inclusion(leaves[other], index, n, proof, root_hash)
        assert not verify_inclusion(leaves[index], index, n, proof, root(leaves[:-1]))
    # A size with its own root: the proof of a bigger tree is not this tree's proof.
    # (The verifier cannot tell sizes apart on its own: e.g. leaf 0's proof in trees of 3
    # and 4 leaves has the same shape, so size and root must come from one signed head.)
    bigger = [*leaves, leaf_hash(b"next")]
    assert not verify_inclusion(leaves[index], index, n + 1, proof, root(bigger))
    assert not verify_inclusion(leaf_hash(b"not in the log"), index, n, proof, root_hash)


@st.composite
def tree_and_old_size(draw: st.DrawFn) -> tuple[list[bytes], int]:
    size = draw(st.integers(min_value=1, max_value=300))
    seed = draw(st.integers(min_value=0, max_value=2**32))
    return _leaves(size, seed), draw(st.integers(min_value=1, max_value=size))


@settings(max_examples=150, deadline=None)
@given(tree_and_old_size(), st.data())
def test_consistency_proofs_verify_and_detect_rewrites(
    case: tuple[list[bytes], int], data: st.DataObject
) -> None:
    leaves, m = case
    n = len(leaves)
    old_root, new_root = root(leaves[:m]), root(leaves)
    proof = consistency_proof_from_leaves(m, leaves)
    assert len(proof) <= (n - 1).bit_length() + 1
    assert verify_consistency(m, n, old_root, new_root, proof)
    # Rewrite one leaf of the old range: neither the rewritten old head nor a new head
    # built over the rewritten history is consistent with the honest other head.
    victim = data.draw(st.integers(min_value=0, max_value=m - 1))
    forged = [*leaves]
    forged[victim] = leaf_hash(b"rewritten")
    forged_old, forged_new = root(forged[:m]), root(forged)
    forged_proof = consistency_proof_from_leaves(m, forged)
    assert not verify_consistency(m, n, forged_old, new_root, proof)
    assert not verify_consistency(m, n, old_root, forged_new, forged_proof)
    if m < n:
        assert not verify_consistency(m, n, old_root, new_root, proof[:-1])
        assert not verify_consistency(m - 1, n, old_root, new_root, proof)


@settings(max_examples=100, deadline=None)
@given(
    st.integers(min_value=0, max_value=300),
    st.data(),
    st.integers(min_value=0, max_value=5),
)
def test_memoised_subtrees_equal_naive(size: int, data: st.DataObject, min_level: int) -> None:
    leaves = _leaves(size, seed=size)
    store = MemoryStore()
    cache = SubtreeCache(_reader(leaves), store, min_level=min_level)
    # Arbitrary ranges, aligned or not, before and after the store is warm.
    for _ in range(5):
        start = data.draw(st.integers(min_value=0, max_value=size))
        end = data.draw(st.integers(min_value=start, max_value=size))
        assert cache(start, end) == root(leaves[start:end])
    assert cache.root(size) == root(leaves)
    for (level, index), digest in store.nodes.items():
        assert level >= min_level
        assert digest == root(leaves[index << level : (index + 1) << level])
    if size:
        index = data.draw(st.integers(min_value=0, max_value=size - 1))
        assert inclusion_proof(index, size, cache) == inclusion_proof_from_leaves(index, leaves)
        old = data.draw(st.integers(min_value=0, max_value=size))
        assert consistency_proof(old, size, cache) == consistency_proof_from_leaves(old, leaves)


def test_warm_store_serves_proofs_without_reading_leaves() -> None:
    leaves = _leaves(5000)
    reads: list[tuple[int, int]] = []

    def read(start: int, end: int) -> Sequence[bytes]:
        reads.append((start, end))
        return leaves[start:end]

    cache = SubtreeCache(read)
    assert cache.root(4000) == root(leaves[:4000])
    reads.clear()
    for i in range(0, 4000, 37):
        assert verify_inclusion(
            leaves[i], i, 4000, inclusion_proof(i, 4000, cache), root(leaves[:4000])
        )
    assert reads == []
    # The log grows: perfect subtrees of the first 4000 leaves stay valid and are reused.
    root_5000 = root(leaves)
    proof = consistency_proof(4000, 5000, cache)
    assert verify_consistency(4000, 5000, root(leaves[:4000]), root_5000, proof)
    assert max(e - s for s, e in reads) <= 1  # only new leaves, one at a time at min_level 0


def test_min_level_bounds_the_store_and_reads() -> None:
    leaves = _leaves(1 << 12)
    for min_level in (0, 3, 6):
        store = MemoryStore()
        cache = SubtreeCache(_reader(leaves), store, min_level=min_level)
        assert cache.root(len(leaves)) == root(leaves)
        # Every perfect node at level >= min_level, and no others: 2**(13 - L) - 1.
        assert len(store) == (1 << (13 - min_level)) - 1


class _CountingStore:
    """A stand-in for the database table, checked structurally against the Protocol."""

    def __init__(self) -> None:
        self.rows: dict[tuple[int, int], bytes] = {}
        self.puts = 0

    def get(self, level: int, index: int) -> bytes | None:
        return self.rows.get((level, index))

    def put(self, level: int, index: int, digest: bytes) -> None:
        self.puts += 1
        self.rows[(level, index)] = digest


def test_custom_store_plugs_in_and_is_written_once_per_node() -> None:
    leaves = _leaves(1000)
    store: PerfectSubtreeStore = _CountingStore()
    assert subtree_hash(0, 1000, _reader(leaves), store, min_level=2) == root(leaves)
    assert isinstance(store, _CountingStore)
    puts = store.puts
    assert subtree_hash(0, 1000, _reader(leaves), store, min_level=2) == root(leaves)
    assert store.puts == puts


def test_a_larger_log_through_the_cache() -> None:
    leaves = _leaves(100_003)
    cache = SubtreeCache(_reader(leaves), min_level=4)
    root_hash = root(leaves)
    assert cache.root(len(leaves)) == root_hash
    for i in (0, 1, 65_535, 65_536, 99_999, 100_002):
        proof = inclusion_proof(i, len(leaves), cache)
        assert len(proof) <= 17
        assert verify_inclusion(leaves[i], i, len(leaves), proof, root_hash)


# --------------------------------------------------------------------------- bad input


def test_generators_reject_bad_arguments() -> None:
    with pytest.raises(ValueError, match="outside"):
        inclusion_proof_from_leaves(8, CT_LEAVES)
    with pytest.raises(ValueError, match="outside"):
        inclusion_proof_from_leaves(-1, CT_LEAVES)
    with pytest.raises(ValueError, match="outside"):
        inclusion_proof_from_leaves(0, [])
    with pytest.raises(ValueError, match="consistency"):
        consistency_proof(5, 3, SubtreeCache(_reader(CT_LEAVES)))
    with pytest.raises(ValueError, match="consistency"):
        consistency_proof(-1, 3, SubtreeCache(_reader(CT_LEAVES)))
    with pytest.raises(ValueError, match="32-byte"):
        root([b"\x00" * 31])
    with pytest.raises(ValueError, match="range"):
        subtree_hash(3, 2, _reader(CT_LEAVES), MemoryStore())
    with pytest.raises(ValueError, match="min_level"):
        SubtreeCache(_reader(CT_LEAVES), min_level=-1)
    assert consistency_proof_from_leaves(0, CT_LEAVES) == []


ROOT8 = bytes.fromhex(CT_ROOTS[8])
ROOT6 = bytes.fromhex(CT_ROOTS[6])
PROOF5 = inclusion_proof_from_leaves(5, CT_LEAVES)
CPROOF68 = consistency_proof_from_leaves(6, CT_LEAVES)

BAD_INCLUSION: list[tuple[object, object, object, object, object]] = [
    (CT_LEAVES[5], 5, 8, PROOF5, ROOT8[:31]),
    (CT_LEAVES[5][:31], 5, 8, PROOF5, ROOT8),
    (CT_LEAVES[5], 5, 8, [PROOF5[0][:31], *PROOF5[1:]], ROOT8),
    (CT_LEAVES[5], 5, 8, "not a proof", ROOT8),
    (CT_LEAVES[5], 5, 8, None, ROOT8),
    (CT_LEAVES[5], 5, 8, [None, *PROOF5[1:]], ROOT8),
    (CT_LEAVES[5].hex(), 5, 8, PROOF5, ROOT8),
    (CT_LEAVES[5], "5", 8, PROOF5, ROOT8),
    (CT_LEAVES[5], 5, 8.0, PROOF5, ROOT8),
    (CT_LEAVES[5], True, 8, PROOF5, ROOT8),
    (CT_LEAVES[5], -1, 8, PROOF5, ROOT8),
    (CT_LEAVES[5], 8, 8, PROOF5, ROOT8),
    (CT_LEAVES[0], 0, 0, [], EMPTY_ROOT),
    (CT_LEAVES[0], 1, 1, [], CT_LEAVES[0]),
]


@pytest.mark.parametrize("args", BAD_INCLUSION)
def test_verify_inclusion_returns_false_on_bad_input(
    args: tuple[object, object, object, object, object],
) -> None:
    assert verify_inclusion(*args) is False  # type: ignore[arg-type]


BAD_CONSISTENCY: list[tuple[object, object, object, object, object]] = [
    (6, 8, ROOT6[:31], ROOT8, CPROOF68),
    (6, 8, ROOT6, ROOT8[:31], CPROOF68),
    (6, 8, ROOT6, ROOT8, [CPROOF68[0][:31], *CPROOF68[1:]]),
    (6, 8, ROOT6, ROOT8, "proof"),
    (6, 8, ROOT6, ROOT8, None),
    (8, 6, ROOT8, ROOT6, CPROOF68),
    (6, 8, ROOT6, ROOT8, []),
    ("6", 8, ROOT6, ROOT8, CPROOF68),
    (-6, 8, ROOT6, ROOT8, CPROOF68),
    (6, 8, None, ROOT8, CPROOF68),
    (4, 4, ROOT6, ROOT8, []),  # equal sizes need equal roots
    (4, 4, ROOT8, ROOT8, [SOME_HASH]),  # ... and an empty proof
    (0, 8, SOME_HASH, ROOT8, []),  # size 0 has the empty-tree root
    (0, 8, EMPTY_ROOT, ROOT8, [SOME_HASH]),
]


@pytest.mark.parametrize("args", BAD_CONSISTENCY)
def test_verify_consistency_returns_false_on_bad_input(
    args: tuple[object, object, object, object, object],
) -> None:
    assert verify_consistency(*args) is False  # type: ignore[arg-type]


def test_trivial_consistency_cases_verify() -> None:
    assert verify_consistency(8, 8, ROOT8, ROOT8, [])
    assert verify_consistency(0, 8, EMPTY_ROOT, ROOT8, [])
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
