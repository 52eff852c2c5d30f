"""Pseudonyms are HMAC-SHA256 of the subject id under the server key, whatever the key."""

from __future__ import annotations

import hashlib
import hmac

from hypothesis import example, given
from hypothesis import strategies as st

from service.core.pseudonym import Pseudonymiser


def reference(key: bytes, subject_id: str) -> str:
    return "ps_" + hmac.new(key, subject_id.encode("utf-8"), hashlib.sha256).hexdigest()


# Keys shorter than, exactly and longer than SHA-256's 64-byte block (RFC 2104 hashes those
# first); subject ids of any text, multi-byte characters included.
@given(key=st.binary(min_size=0, max_size=200), subject_id=st.text(max_size=300))
@example(key=b"", subject_id="")
@example(key=b"k" * 63, subject_id="subject")
@example(key=b"k" * 64, subject_id="subject")
@example(key=b"k" * 65, subject_id="subject")
@example(key=b"k" * 131, subject_id="ünïcödé")
def test_is_hmac_sha256_of_the_subject_id(key: bytes, subject_id: str) -> None:
    assert Pseudonymiser(key)(subject_id) == reference(key, subject_id)


def test_rfc_4231_test_case_2() -> None:
    """RFC 4231 §4.3: key "Jefe", data "what do ya want for nothing?"."""
    assert Pseudonymiser(b"Jefe")("what do ya want for nothing?") == (
        "ps_5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )


def test_rfc_4231_test_case_6() -> None:
    """RFC 4231 §4.7: a 131-byte key, longer than the block, is hashed first."""
    key = b"\xaa" * 131
    data = "Test Using Larger Than Block-Size Key - Hash Key First"
    assert Pseudonymiser(key)(data) == (
        "ps_60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
    )


def test_each_pseudonym_starts_from_the_keyed_state() -> None:
    pseudonymise = Pseudonymiser(b"k" * 32)
    first = pseudonymise("subject-1")
    pseudonymise("subject-2")
    assert pseudonymise("subject-1") == first
    assert first != pseudonymise("subject-2")
