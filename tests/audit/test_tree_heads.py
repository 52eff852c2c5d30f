"""Signed tree heads over the stored tree: roots, signatures, idempotence and concurrency."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import func, select, text

from service.audit import merkle, signer, tree
from service.audit.keys import signing_key
from service.audit.models import AuditEvent, TreeHead
from service.audit.signing import verify_tree_head
from service.audit.tree_models import AuditSubtree
from service.audit.verify import verify_log
from tests.audit.conftest import LogRuntime, append_events, tampering, tx

pytestmark = pytest.mark.storage


def leaves(runtime: LogRuntime) -> list[bytes]:
    with tx(runtime.read_sessions) as session:
        query = select(AuditEvent.leaf_hash).order_by(AuditEvent.seq)
        return [bytes(h) for h in session.scalars(query)]


def test_heads_match_the_rfc_root_at_every_size(
    log_runtime: LogRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tree, "MIN_LEVEL", 2)  # small blocks: every boundary case in ~100 leaves
    public = signing_key(log_runtime.settings).public_key
    empty = signer.sign_tree_head(log_runtime)
    assert (empty.size, bytes(empty.root_hash)) == (0, merkle.EMPTY_ROOT)
    for batch in (1, 1, 2, 3, 5, 8, 13, 21, 34):
        append_events(log_runtime, batch)
        head = signer.sign_tree_head(log_runtime)
        all_leaves = leaves(log_runtime)
        assert head.size == len(all_leaves)
        assert bytes(head.root_hash) == merkle.root(all_leaves)
        assert verify_tree_head(
            public, head.size, bytes(head.root_hash), head.signed_at, bytes(head.signature)
        )
        with tx(log_runtime.read_sessions) as session:
            for index in range(0, head.size, 5):
                path = tree.inclusion_path(session, index, head.size)
                assert path == merkle.inclusion_proof_from_leaves(index, all_leaves)
            for old in range(0, head.size + 1, 3):
                proof = tree.consistency_path(session, old, head.size)
                assert proof == merkle.consistency_proof_from_leaves(old, all_leaves)
    assert verify_log(log_runtime).ok


def test_default_blocks_are_stored_once_and_reused(log_runtime: LogRuntime) -> None:
    append_events(log_runtime, 300)
    first = signer.sign_tree_head(log_runtime)
    append_events(log_runtime, 300)
    second = signer.sign_tree_head(log_runtime)
    all_leaves = leaves(log_runtime)
    assert bytes(first.root_hash) == merkle.root(all_leaves[:300])
    assert bytes(second.root_hash) == merkle.root(all_leaves)
    with tx(log_runtime.read_sessions) as session:
        stored = session.execute(select(AuditSubtree.level, AuditSubtree.node_index)).all()
        assert sorted(stored) == [(8, 0), (8, 1), (9, 0)]
        assert tree.inclusion_path(session, 299, 600) == merkle.inclusion_proof_from_leaves(
            299, all_leaves
        )


def test_signing_without_new_events_returns_the_same_head(log_runtime: LogRuntime) -> None:
    append_events(log_runtime, 3)
    first = signer.sign_tree_head(log_runtime)
    again = signer.sign_tree_head(log_runtime)
    assert (again.size, again.signature) == (first.size, first.signature)
    with tx(log_runtime.read_sessions) as session:
        assert session.scalar(select(func.count()).select_from(TreeHead)) == 1


def test_concurrent_signers_and_writers_leave_one_consistent_log(
    log_runtime: LogRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tree, "MIN_LEVEL", 2)
    errors: list[BaseException] = []
    start, writing = threading.Barrier(4), threading.Event()
    writing.set()

    def sign() -> None:
        start.wait()
        try:
            while writing.is_set():  # three signers race each other and the writer
                signer.sign_tree_head(log_runtime)
        except BaseException as exc:  # reported below
            errors.append(exc)

    def write() -> None:
        start.wait()
        try:
            for _ in range(10):
                append_events(log_runtime, 3)
        except BaseException as exc:
            errors.append(exc)
        finally:
            writing.clear()

    threads = [threading.Thread(target=f) for f in (sign, sign, sign, write)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    final = signer.sign_tree_head(log_runtime)
    assert final.size == 30  # the key was registered once, with no rotation event
    report = verify_log(log_runtime)
    assert report.ok, report.problems
    assert report.heads >= 1


def test_signing_refuses_an_altered_event(log_runtime: LogRuntime) -> None:
    append_events(log_runtime, 5)
    with tampering(log_runtime.db) as connection:
        connection.execute(text("UPDATE audit_events SET outcome = 'allow' WHERE seq = 3"))
    with pytest.raises(tree.LogIntegrityError, match="event 3"):
        signer.sign_tree_head(log_runtime)
    with tx(log_runtime.read_sessions) as session:
        assert tree.latest_head(session) is None


def test_the_background_signer_signs_at_its_interval(
    log_runtime: LogRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(signer, "tree_head_interval", lambda settings: 0.05)
    append_events(log_runtime, 4)
    stop = threading.Event()
    thread = threading.Thread(target=signer.run_tree_head_signer, args=(log_runtime, stop))
    thread.start()
    try:
        deadline = time.monotonic() + 10
        append_events(log_runtime, 2)
        while time.monotonic() < deadline:
            with tx(log_runtime.read_sessions) as session:
                head = tree.latest_head(session)
            if head is not None and head.size == 6:
                break
            time.sleep(0.02)
        assert head is not None
        assert head.size == 6
    finally:
        stop.set()
        thread.join(timeout=5)
    assert not thread.is_alive()


def test_a_zero_interval_disables_the_background_signer(
    log_runtime: LogRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(signer, "tree_head_interval", lambda settings: 0.0)
    signer.run_tree_head_signer(log_runtime, threading.Event())  # returns at once
    with tx(log_runtime.read_sessions) as session:
        assert tree.latest_head(session) is None
