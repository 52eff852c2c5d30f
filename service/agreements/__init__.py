"""Data-sharing agreements: versions, parties, approvals and their lifecycle."""
