"""Verification names the first event that does not match, for every kind of tampering.

The tampering goes through raw SQL with the append-only triggers bypassed on purpose
(`tampering`): that is what someone with database access could do.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from sqlalchemy import Connection, delete, insert, select, text, update
from typer.testing import CliRunner

from service.audit import leaf_pages, signer, tree
from service.audit import verify as verify_module
from service.audit.cli import app as audit_cli
from service.audit.leaves import leaf_rows, row_leaf_hash
from service.audit.models import AuditEvent, TreeHead
from service.audit.signing import SigningKey
from service.audit.verify import VerifyReport, verify_log
from tests.audit.conftest import LogRuntime, append_events, tampering

pytestmark = pytest.mark.storage

SIZE = 20


@pytest.fixture
def signed_log(log_runtime: LogRuntime, monkeypatch: pytest.MonkeyPatch) -> LogRuntime:
    """Twenty events under two signed heads, with 4-leaf stored blocks."""
    monkeypatch.setattr(tree, "MIN_LEVEL", 2)
    append_events(log_runtime, 12)
    signer.sign_tree_head(log_runtime)
    append_events(log_runtime, SIZE - 12)
    signer.sign_tree_head(log_runtime)
    assert verify_log(log_runtime).ok
    return log_runtime


def first(report: VerifyReport) -> tuple[str, int | None]:
    assert not report.ok
    assert report.first is not None
    return report.first.kind, report.first.seq


def row(connection: Connection, seq: int) -> dict[str, Any]:
    found = connection.execute(select(AuditEvent.__table__).where(AuditEvent.seq == seq)).one()
    return dict(found._mapping)


def move(connection: Connection, frm: int, to: int) -> None:
    connection.execute(update(AuditEvent).where(AuditEvent.seq == frm).values(seq=to))


def shift(connection: Connection, start: int, by: int) -> None:
    """Renumber events from `start` by `by`, in two steps so the primary key never clashes."""
    far = 1_000_000
    seq = AuditEvent.seq
    connection.execute(update(AuditEvent).where(seq >= start).values(seq=seq + far))
    connection.execute(update(AuditEvent).where(seq >= far).values(seq=seq - far + by))


def delete_from(connection: Connection, start: int) -> None:
    connection.execute(delete(AuditEvent).where(AuditEvent.seq >= start))


def forged(connection: Connection, seq: int, *, rehash: bool = True) -> dict[str, Any]:
    """A plausible event at `seq`, with a correct leaf hash unless told otherwise."""
    values = {**row(connection, 0), "seq": seq, "event_id": f"forged-{seq}", "outcome": "allow"}
    if rehash:
        leaf = connection.execute(leaf_rows(0, 1)).one()
        forged_row = list(leaf)
        forged_row[1], forged_row[12] = values["event_id"], "allow"
        values["leaf_hash"] = row_leaf_hash(forged_row, seq)
    return values


def test_an_untouched_log_verifies(signed_log: LogRuntime) -> None:
    report = verify_log(signed_log)
    assert (report.ok, report.events, report.log_size, report.heads) == (True, SIZE, SIZE, 2)
    assert report.first is None


def test_an_edited_event_is_named(signed_log: LogRuntime) -> None:
    with tampering(signed_log.db) as connection:
        connection.execute(text("UPDATE audit_events SET outcome = 'refused' WHERE seq = 5"))
        connection.execute(text("UPDATE audit_events SET purpose = 'x' WHERE seq = 9"))
    report = verify_log(signed_log)
    assert first(report) == ("edited", 5)


def test_an_edit_with_its_leaf_hash_rewritten_is_localised_by_the_signed_head(
    signed_log: LogRuntime,
) -> None:
    with tampering(signed_log.db) as connection:
        connection.execute(text("UPDATE audit_events SET outcome = 'refused' WHERE seq = 5"))
        altered = connection.execute(leaf_rows(5, 6)).one()
        connection.execute(
            update(AuditEvent).where(AuditEvent.seq == 5).values(leaf_hash=row_leaf_hash(altered))
        )
    report = verify_log(signed_log)
    assert report.first is not None
    assert (report.first.kind, report.first.seq, report.first.head_size) == ("edited", 4, 12)
    assert "[4, 8)" in report.first.detail


def test_a_deleted_event_is_named(signed_log: LogRuntime) -> None:
    with tampering(signed_log.db) as connection:
        connection.execute(text("DELETE FROM audit_events WHERE seq = 7"))
    assert first(verify_log(signed_log)) == ("missing", 7)


def test_a_deletion_hidden_by_renumbering_is_named(signed_log: LogRuntime) -> None:
    with tampering(signed_log.db) as connection:
        connection.execute(text("DELETE FROM audit_events WHERE seq = 7"))
        shift(connection, 8, -1)
        connection.execute(text("UPDATE audit_head SET size = size - 1"))
    assert first(verify_log(signed_log)) == ("missing", 7)


@pytest.mark.parametrize("with_leaf_hashes", [True, False])
def test_reordered_events_are_named(signed_log: LogRuntime, with_leaf_hashes: bool) -> None:
    with tampering(signed_log.db) as connection:
        if with_leaf_hashes:  # whole rows exchange places
            move(connection, 3, -1)
            move(connection, 9, 3)
            move(connection, -1, 9)
        else:  # contents exchange places, each leaf hash stays where it was
            three, nine = row(connection, 3), row(connection, 9)
            for seq, values in ((3, nine), (9, three)):
                content = {k: v for k, v in values.items() if k not in ("seq", "leaf_hash")}
                content["event_id"] = f"moving-{seq}"  # event ids are unique meanwhile
                connection.execute(update(AuditEvent).where(AuditEvent.seq == seq).values(content))
            for seq, values in ((3, nine), (9, three)):
                connection.execute(
                    update(AuditEvent)
                    .where(AuditEvent.seq == seq)
                    .values(event_id=values["event_id"])
                )
    report = verify_log(signed_log)
    assert first(report) == ("reordered", 3)
    assert report.first is not None
    assert "3 and 9" in report.first.detail


def test_an_event_inserted_at_the_end_is_named(signed_log: LogRuntime) -> None:
    with tampering(signed_log.db) as connection:
        connection.execute(insert(AuditEvent).values(forged(connection, SIZE)))
    assert first(verify_log(signed_log)) == ("inserted", SIZE)


@pytest.mark.parametrize("rehash", [True, False])
def test_an_event_inserted_in_the_middle_is_named(signed_log: LogRuntime, rehash: bool) -> None:
    with tampering(signed_log.db) as connection:
        shift(connection, 6, 1)
        connection.execute(insert(AuditEvent).values(forged(connection, 6, rehash=rehash)))
        connection.execute(text("UPDATE audit_head SET size = size + 1"))
    assert first(verify_log(signed_log)) == ("inserted", 6)


def test_truncation_after_a_signed_head_is_named(signed_log: LogRuntime) -> None:
    with tampering(signed_log.db) as connection:
        delete_from(connection, SIZE - 3)
        connection.execute(text("UPDATE audit_head SET size = :n"), {"n": SIZE - 3})
    report = verify_log(signed_log)
    assert first(report) == ("truncated", SIZE - 3)
    assert report.first is not None
    assert report.first.head_size == SIZE


def test_truncation_of_unsigned_events_is_named(signed_log: LogRuntime) -> None:
    append_events(signed_log, 4)
    with tampering(signed_log.db) as connection:
        delete_from(connection, SIZE + 1)
    assert first(verify_log(signed_log)) == ("truncated", SIZE + 1)


def test_a_forged_head_is_refused(signed_log: LogRuntime) -> None:
    append_events(signed_log, 2)
    current = signed_log.settings.signing_key_seed.get_secret_value()
    key_id = SigningKey.from_seed(bytes.fromhex(current)).key_id
    with tampering(signed_log.db) as connection:
        connection.execute(
            insert(TreeHead).values(
                size=SIZE + 2,
                root_hash=bytes(32),
                signed_at="2030-01-01T00:00:00.000000Z",
                key_id=key_id,
                signature=bytes(64),
            )
        )
    report = verify_log(signed_log)
    assert first(report) == ("bad_signature", None)
    assert report.first is not None
    assert report.first.head_size == SIZE + 2


def test_a_head_signed_by_an_untrusted_key_is_refused(signed_log: LogRuntime) -> None:
    report = verify_log(signed_log, trusted={"other": SigningKey.generate().public_key})
    assert first(report) == ("bad_signature", None)
    assert report.first is not None
    assert "unknown key" in report.first.detail


def test_a_tampered_subtree_is_reported(signed_log: LogRuntime) -> None:
    with tampering(signed_log.db) as connection:
        connection.execute(
            text("UPDATE audit_subtrees SET hash = :h WHERE level = 2 AND node_index = 1"),
            {"h": bytes(32)},
        )
    report = verify_log(signed_log)
    assert [p.kind for p in report.problems] == ["subtree_mismatch"]
    assert report.problems[0].seq == 4


def test_the_cli_exits_non_zero_on_failure(signed_log: LogRuntime) -> None:
    env = {**os.environ, "ACCORD_DATABASE_URL": signed_log.settings.database_url}
    runner = CliRunner()
    good = runner.invoke(audit_cli, ["verify", "--json"], env=env)
    assert good.exit_code == 0, good.output
    assert json.loads(good.output)["ok"] is True
    with tampering(signed_log.db) as connection:
        connection.execute(text("DELETE FROM audit_events WHERE seq = 2"))
    bad = runner.invoke(audit_cli, ["verify"], env=env)
    assert bad.exit_code == 1
    assert "missing at event 2" in bad.output


@pytest.mark.slow
def test_worker_processes_find_the_same_first_problem(
    signed_log: LogRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(verify_module, "_PARALLEL_FROM", 0)
    monkeypatch.setattr(leaf_pages, "_RANGE", 7)  # three ranges over twenty events
    assert verify_log(signed_log, workers=2).ok
    with tampering(signed_log.db) as connection:
        connection.execute(text("UPDATE audit_events SET outcome = 'refused' WHERE seq = 15"))
        connection.execute(insert(AuditEvent).values(forged(connection, SIZE)))
    parallel = verify_log(signed_log, workers=2)
    assert first(parallel) == ("edited", 15)
    assert parallel.problems == verify_log(signed_log).problems
    assert "inserted" in {p.kind for p in parallel.problems}


def test_tampered_block_times_are_reported(signed_log: LogRuntime) -> None:
    with tampering(signed_log.db) as connection:
        connection.execute(
            text("UPDATE audit_block_times SET first_at = '2099' WHERE node_index = 2")
        )
    report = verify_log(signed_log)
    assert [(p.kind, p.seq) for p in report.problems] == [("subtree_mismatch", 8)]
