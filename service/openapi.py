"""The committed OpenAPI document is generated from the app by this function."""

from __future__ import annotations

import json

from service.core.settings import Settings


def render() -> str:
    from service.app import create_app

    app = create_app(Settings(database_url="sqlite:///:memory:", sweep_interval_seconds=0))
    return json.dumps(app.openapi(), indent=2, sort_keys=True) + "\n"
