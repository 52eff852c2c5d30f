"""ASGI entrypoint: `uvicorn service.main:app`."""

from service.app import create_app
from service.core.observability import configure_logging
from service.core.settings import Settings

settings = Settings()
configure_logging(settings.log_level)
app = create_app(settings)
