"""Keyed pseudonyms: subject ids never reach the database or the audit log in the clear."""

from __future__ import annotations

import hashlib
import hmac


class Pseudonymiser:
    def __init__(self, key: bytes) -> None:
        # Keyed once; each pseudonym copies the keyed state (batches of 10,000 subjects).
        self._keyed = hmac.new(key, digestmod=hashlib.sha256)

    def __call__(self, subject_id: str) -> str:
        """HMAC-SHA256 of the subject id under the server key, as hex."""
        mac = self._keyed.copy()
        mac.update(subject_id.encode("utf-8"))
        return "ps_" + mac.hexdigest()
