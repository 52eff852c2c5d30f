"""`accord` command line: serve, migrate, seed-demo, token, sweep, openapi."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from service.audit.cli import app as audit_cli
from service.core.identity import Role, mint_token
from service.core.settings import Settings

app = typer.Typer(help="Accord: data-sharing agreements, consents and policy decisions.")
app.add_typer(audit_cli, name="audit", help="Verify the audit log, sign tree heads, rotate keys.")


@app.command()
def migrate() -> None:
    """Apply every Alembic migration to ACCORD_DATABASE_URL."""
    from service.core.migrations import upgrade

    upgrade(Settings().database_url)
    typer.echo("database migrated")


@app.command("seed-demo")
def seed_demo() -> None:
    """Load demo organisations, agreements in every state and consents (empty database only)."""
    from service.demo import seed

    settings = Settings()
    summary = seed(settings)
    typer.echo(json.dumps(summary, indent=2))


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
    workers: Annotated[int, typer.Option(help="worker processes")] = 1,
    demo: Annotated[bool, typer.Option(help="migrate and seed demo data first")] = False,
) -> None:
    """Run the API with uvicorn (migrating first)."""
    import uvicorn

    from service.core.migrations import upgrade

    settings = Settings()
    upgrade(settings.database_url)
    if demo:
        from service.demo import seed

        seed(settings)
    uvicorn.run(
        "service.main:app",
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        access_log=False,
    )


@app.command()
def token(
    role: Annotated[Role, typer.Option(help="role claim")],
    org: Annotated[str, typer.Option(help="organisation id claim")],
    subject: Annotated[str, typer.Option(help="sub claim")] = "dev-user",
    ttl: Annotated[int, typer.Option(help="lifetime in seconds")] = 3600,
) -> None:
    """Mint a development token signed with ACCORD_JWT_SECRET."""
    typer.echo(
        mint_token(Settings(), subject=subject, role=role, organisation_id=org, ttl_seconds=ttl)
    )


@app.command()
def sweep() -> None:
    """Run the lifecycle sweep once (activations, expiries)."""
    from service.app import build_runtime, run_sweep

    runtime = build_runtime(Settings())
    typer.echo(json.dumps(run_sweep(runtime)))


@app.command()
def openapi(
    output: Annotated[Path, typer.Option(help="where to write")] = Path("openapi/openapi.json"),
) -> None:
    """Write the OpenAPI document generated from the app."""
    from service.openapi import render

    output.write_text(render())
    typer.echo(f"wrote {output}")


def main() -> None:
    app()
