"""Fresh, migrated databases for tests: SQLite files and PostgreSQL databases.

Each backend is migrated once per test process into a template; every test gets its own
copy (a file copy, or CREATE DATABASE … TEMPLATE), so tests commit for real and never see
each other's data. PostgreSQL being unreachable is a failure, never a skip.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql

from service.core.migrations import upgrade

PG_ADMIN_URL = os.environ.get("ACCORD_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BACKENDS = [b for b in os.environ.get("ACCORD_TEST_BACKENDS", "sqlite,postgresql").split(",") if b]


def _sqlalchemy_pg_url(database: str) -> str:
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{database}"


def _admin() -> psycopg.Connection:
    try:
        return psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        raise RuntimeError(
            f"PostgreSQL is required for the storage tests and is unreachable at {PG_ADMIN_URL}: "
            f"{exc}. Start it (see README) or set ACCORD_TEST_BACKENDS=sqlite to run "
            "SQLite only."
        ) from exc


class DatabaseFactory:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.tag = f"{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self._templates: dict[str, str] = {}

    def _template(self, backend: str) -> str:
        if backend in self._templates:
            return self._templates[backend]
        if backend == "sqlite":
            path = self.workdir / "template.db"
            upgrade(f"sqlite:///{path}")
            self._templates[backend] = str(path)
        else:
            name = f"accord_tpl_{self.tag}"
            with _admin() as admin:
                admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            upgrade(_sqlalchemy_pg_url(name))
            self._templates[backend] = name
        return self._templates[backend]

    @contextmanager
    def fresh(self, backend: str) -> Iterator[str]:
        """A migrated database of its own, as a SQLAlchemy URL."""
        template = self._template(backend)
        if backend == "sqlite":
            path = self.workdir / f"t_{uuid.uuid4().hex}.db"
            shutil.copyfile(template, path)
            yield f"sqlite:///{path}"
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            return
        name = f"accord_t_{self.tag}_{uuid.uuid4().hex[:8]}"
        with _admin() as admin:
            admin.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(template)
                )
            )
        try:
            yield _sqlalchemy_pg_url(name)
        finally:
            with _admin() as admin:
                admin.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )

    def empty(self, backend: str) -> Iterator[str]:
        """An unmigrated database (for migration tests)."""
        if backend == "sqlite":
            path = self.workdir / f"e_{uuid.uuid4().hex}.db"
            yield f"sqlite:///{path}"
            return
        name = f"accord_e_{self.tag}_{uuid.uuid4().hex[:8]}"
        with _admin() as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield _sqlalchemy_pg_url(name)
        finally:
            with _admin() as admin:
                admin.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )

    def close(self) -> None:
        for backend, template in self._templates.items():
            if backend == "postgresql":
                with _admin() as admin:
                    admin.execute(
                        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                            sql.Identifier(template)
                        )
                    )
        shutil.rmtree(self.workdir, ignore_errors=True)
