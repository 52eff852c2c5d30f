"""Signed heads, inclusion and consistency proofs over HTTP, checked with RFC 9162 alone.

The checks below use only hashlib, rfc8785 and cryptography: the verification a partner or
auditor would write from the RFCs, without Accord's code.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tests.support.api import Api
from tests.support.clock import MutableClock

pytestmark = pytest.mark.storage


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def rfc9162_inclusion(leaf: bytes, index: int, size: int, path: list[bytes], root: bytes) -> bool:
    """RFC 9162 §2.1.3.2, transcribed."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            r = sha(b"\x01" + p + r)
            while fn % 2 == 0 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = sha(b"\x01" + r + p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def rfc9162_consistency(m: int, n: int, old: bytes, new: bytes, proof: list[bytes]) -> bool:
    """RFC 9162 §2.1.4.2, transcribed (0 < m < n)."""
    if not proof:
        return False
    if m & (m - 1) == 0:
        proof = [old, *proof]
    fn, sn = m - 1, n - 1
    while fn % 2 == 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            fr, sr = sha(b"\x01" + c + fr), sha(b"\x01" + c + sr)
            while fn % 2 == 0 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = sha(b"\x01" + sr + c)
        fn, sn = fn >> 1, sn >> 1
    return fr == old and sr == new and sn == 0


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def head_signature_ok(head: dict[str, Any], jwks: dict[str, Any]) -> bool:
    key = next(k for k in jwks["keys"] if k["kid"] == head["key_id"])
    payload = rfc8785.dumps(
        {
            "log": "accord",
            "root": base64.urlsafe_b64encode(bytes.fromhex(head["root_hash"]))
            .rstrip(b"=")
            .decode(),
            "size": head["tree_size"],
            "timestamp": head["timestamp"],
        }
    )
    assert payload.decode() == head["signed_payload"]
    public = Ed25519PublicKey.from_public_bytes(b64url_decode(key["x"]))
    public.verify(b64url_decode(head["signature"]), payload)  # raises if invalid
    return True


def sign(api: Api) -> dict[str, Any]:
    head: dict[str, Any] = api.ok(api.post("/v1/audit/tree-heads", "auditor", "council"))
    return head


@pytest.fixture
def decision(world: Api, clock: MutableClock) -> dict[str, Any]:
    agreement_id = world.active(clock.now())
    world.consent(clock.now(), "subject-1")
    return world.decide(agreement_id)


def test_a_partner_proves_its_decision_is_in_the_signed_log(
    world: Api, decision: dict[str, Any]
) -> None:
    head = sign(world)
    seq = decision["audit_seq"]
    proof = world.ok(world.get(f"/v1/audit/events/{seq}/inclusion", "partner", "uni-lab"))
    event = proof["event"]
    assert event["resource"] == {"type": "decision", "id": decision["decision_id"]}
    leaf = sha(b"\x00" + rfc8785.dumps(event))
    assert leaf.hex() == proof["leaf_hash"]
    assert (proof["leaf_index"], proof["tree_size"]) == (seq, head["tree_size"])
    path = [bytes.fromhex(p) for p in proof["audit_path"]]
    root = bytes.fromhex(proof["tree_head"]["root_hash"])
    assert rfc9162_inclusion(leaf, seq, proof["tree_size"], path, root)
    assert len(path) <= proof["tree_size"].bit_length()
    jwks = world.client.get("/v1/audit/jwks").json()  # public: no token
    assert head_signature_ok(proof["tree_head"], jwks)
    assert proof["tree_head"] == head


def test_proofs_only_for_events_the_caller_may_see(world: Api, decision: dict[str, Any]) -> None:
    sign(world)
    path = f"/v1/audit/events/{decision['audit_seq']}/inclusion"
    assert world.get(path, "partner", "outsider").status_code == 404
    assert world.get(path, "partner", "health-trust").status_code == 404
    assert world.get(path, "steward", "health-trust").status_code == 200  # a party
    assert world.get(path, "auditor", "council").status_code == 200
    assert world.get(path, "ethics_reviewer", "ethics-board").status_code == 403
    assert world.client.get(path).status_code == 401


def test_a_proof_needs_a_head_covering_the_event(world: Api, clock: MutableClock) -> None:
    agreement_id = world.active(clock.now())
    assert world.get("/v1/audit/tree-heads/latest", "auditor", "council").status_code == 404
    sign(world)
    seq = world.decide(agreement_id)["audit_seq"]
    path = f"/v1/audit/events/{seq}/inclusion"
    assert world.get(path, "auditor", "council").status_code == 409
    head = sign(world)
    beyond = f"{path}?tree_size={head['tree_size'] + 5}"
    assert world.get(beyond, "auditor", "council").status_code == 404
    assert world.get(path, "auditor", "council").status_code == 200


def test_consistency_between_two_signed_heads(
    world: Api, decision: dict[str, Any], clock: MutableClock
) -> None:
    first = sign(world)
    world.consent(clock.now(), "subject-2")
    second = sign(world)
    assert second["tree_size"] > first["tree_size"]
    query = f"first={first['tree_size']}&second={second['tree_size']}"
    proof = world.ok(world.get(f"/v1/audit/consistency?{query}", "partner", "outsider"))
    assert (proof["first"], proof["second"]) == (first, second)
    hashes = [bytes.fromhex(p) for p in proof["proof"]]
    assert rfc9162_consistency(
        first["tree_size"],
        second["tree_size"],
        bytes.fromhex(first["root_hash"]),
        bytes.fromhex(second["root_hash"]),
        hashes,
    )
    backwards = f"first={second['tree_size']}&second={first['tree_size']}"
    assert world.get(f"/v1/audit/consistency?{backwards}", "auditor", "council").status_code == 422
    unsigned = f"/v1/audit/consistency?first={first['tree_size'] - 1}&second={second['tree_size']}"
    assert world.get(unsigned, "auditor", "council").status_code == 404


def test_heads_are_signed_by_auditors_and_admins_only(world: Api) -> None:
    assert world.post("/v1/audit/tree-heads", "partner", "uni-lab").status_code == 403
    assert world.post("/v1/audit/tree-heads", "steward", "uni-lab").status_code == 403
    head = world.ok(world.post("/v1/audit/tree-heads", "admin", "accord"))
    latest = world.ok(world.get("/v1/audit/tree-heads/latest", "partner", "uni-lab"))
    assert latest == head
    by_size = world.get(f"/v1/audit/tree-heads/{head['tree_size']}", "steward", "council")
    assert world.ok(by_size) == head


def test_verification_over_http(world: Api, decision: dict[str, Any]) -> None:
    sign(world)
    report = world.ok(world.post("/v1/audit/verify", "auditor", "council"))
    assert report["ok"] is True
    assert report["first"] is None
    assert report["events"] == report["log_size"] > 0
    assert report["heads"] >= 1
    assert world.post("/v1/audit/verify", "steward", "health-trust").status_code == 403
