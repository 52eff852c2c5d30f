"""Tables derived from the log: stored subtree hashes, block times and the signing keys.

All are append-only (the database refuses UPDATE and DELETE, migration 0002). None is
written on the decision path: subtrees and block times are filled when a head is signed.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Integer, LargeBinary, SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from service.core.database import Base

_BigInt = BigInteger().with_variant(Integer, "sqlite")


class AuditSubtree(Base):
    """MTH of leaves [node_index << level, (node_index + 1) << level); never changes once set."""

    __tablename__ = "audit_subtrees"

    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    node_index: Mapped[int] = mapped_column(_BigInt, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class AuditSigningKey(Base):
    """A public key that has signed tree heads; kept after rotation so old heads verify."""

    __tablename__ = "audit_signing_keys"

    key_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary(32))
    registered_at: Mapped[str] = mapped_column(String(32))


class AuditBlockTime(Base):
    """Earliest and latest `occurred_at` of the 256 events of one stored block.

    Time is only nearly monotonic in seq (clocks, long requests), so a time window maps to
    the seq span of the blocks it overlaps: searches bound their seq-ordered scan by it.
    """

    __tablename__ = "audit_block_times"

    node_index: Mapped[int] = mapped_column(_BigInt, primary_key=True, autoincrement=False)
    first_at: Mapped[str] = mapped_column(String(32))
    last_at: Mapped[str] = mapped_column(String(32))
