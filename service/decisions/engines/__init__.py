"""Policy engines: two implementations of one small `PolicyEngine` protocol.

PolicyError               evaluation failed; the caller must fail closed
├── PolicyTimeout         no answer within the deadline
├── PolicyUndefined       the entrypoint produced no value
└── BundleRejected        a bundle failed to load; the last good one stays
"""

from service.decisions.engines.base import (
    BundleRejected,
    PolicyBundle,
    PolicyEngine,
    PolicyError,
    PolicyTimeout,
    PolicyUndefined,
    load_bundle,
)

__all__ = [
    "BundleRejected",
    "PolicyBundle",
    "PolicyEngine",
    "PolicyError",
    "PolicyTimeout",
    "PolicyUndefined",
    "load_bundle",
]
