"""Keyed pseudonyms: subject ids never reach the database or the audit log in the clear."""

from __future__ import annotations

import hashlib
import hmac


class Pseudonymiser:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def __call__(self, subject_id: str) -> str:
        """HMAC-SHA256 of the subject id under the server key, as hex."""
        digest = hmac.new(self._key, subject_id.encode("utf-8"), hashlib.sha256).hexdigest()
        return "ps_" + digest
