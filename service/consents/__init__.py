"""Consent records: the current state of each consent and its append-only event history."""
