"""How many threads evaluate decisions: by database, unless configured."""

from __future__ import annotations

import pytest

from service.app import decision_pool
from service.core.settings import Environment, Settings


@pytest.mark.parametrize(
    ("url", "configured", "threads"),
    [
        ("sqlite:///accord.db", None, 1),
        ("postgresql+psycopg://accord@db/accord", None, 2),
        ("sqlite:///accord.db", 3, 3),
        ("postgresql+psycopg://accord@db/accord", 1, 1),
    ],
)
def test_decision_threads(url: str, configured: int | None, threads: int) -> None:
    settings = Settings(environment=Environment.TEST, database_url=url, decision_threads=configured)
    pool = decision_pool(settings)
    try:
        assert pool._max_workers == threads
    finally:
        pool.shutdown()
