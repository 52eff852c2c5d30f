"""Pseudonyms are HMAC-SHA256 of the subject id under the server key, whatever the key."""

from __future__ import annotations

import hashlib
import hmac

from hypothesis import given
from hypothesis import strategies as st

from service.core.pseudonym import Pseudonymiser


def reference(key: bytes, subject_id: str) -> str:
    return "ps_" + hmac.new(key, subject_id.encode("utf-8"), hashlib.sha256).hexdigest()


# Keys shorter than, exactly and longer than SHA-256's 64-byte block (RFC 2104 hashes those
# first); subject ids of any text, multi-byte characters included.
@given(key=st.binary(min_size=0, max_size=200), subject_id=st.text(max_size=300))
def test_is_hmac_sha256_of_the_subject_id(key: bytes, subject_id: str) -> None:
    assert Pseudonymiser(key)(subject_id) == reference(key, subject_id)


def test_rfc_4231_test_case_2() -> None:
    """RFC 4231 §4.3: key "Jefe", data "what do ya want for nothing?"."""
    assert Pseudonymiser(b"Jefe")("what do ya want for nothing?") == (
        "ps_5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )


def test_each_pseudonym_starts_from_the_keyed_state() -> None:
    pseudonymise = Pseudonymiser(b"k" * 32)
    first = pseudonymise("subject-1")
    pseudonymise("subject-2")
    assert pseudonymise("subject-1") == first
    assert first != pseudonymise("subject-2")
