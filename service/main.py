"""ASGI entrypoint: `uvicorn service.main:app`."""

import gc

from service.app import create_app
from service.core.observability import configure_logging
from service.core.settings import Settings

# A decision allocates thousands of short-lived objects (a batch, hundreds of thousands),
# nearly all freed by reference counting. At CPython's default gen-0 threshold (700) the
# cyclic collector still runs several times per request and, through the older
# generations, rescans the whole heap: a fifth of a batch's time here. Collect less often.
gc.set_threshold(10_000, 10, 10)

settings = Settings()
configure_logging(settings.log_level)
app = create_app(settings)

# What is built by now lives as long as the process: keep it out of every collection.
gc.freeze()
