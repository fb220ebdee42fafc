"""``agentdb serve --reload``: the app built from the environment, so uvicorn's reloader can
rebuild it in a fresh worker process whenever a source file of the package changes.

``agentdb serve --reload`` puts its options in ``AGENTDB_SERVE_OPTIONS`` (JSON) and runs
``uvicorn.run("agentdb.server.reload:app_from_environment", factory=True, reload=True)``; each
worker opens the store, serves it, and closes it on shutdown. For development: a reload
restarts the store (its indexes are saved on close and loaded again).

>>> import json, os
>>> os.environ["AGENTDB_SERVE_OPTIONS"] = json.dumps({"db": ":memory:", "api_keys": None})
>>> app_from_environment().state.keys is None
True
>>> del os.environ["AGENTDB_SERVE_OPTIONS"]
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator
from typing import Any

from ..errors import InvalidArgumentError

__all__ = ["ENV", "app_from_environment"]

#: The environment variable carrying ``agentdb serve``'s options to the reloaded workers.
ENV = "AGENTDB_SERVE_OPTIONS"


def app_from_environment() -> Any:
    """The FastAPI app for the options in ``$AGENTDB_SERVE_OPTIONS`` (see the module)."""
    from .. import memory
    from .app import create_app

    raw = os.environ.get(ENV)
    if not raw:
        raise InvalidArgumentError(f"{ENV} is not set: run `agentdb serve --reload`")
    try:
        options: dict[str, Any] = json.loads(raw)
        path = options.pop("db")
    except (ValueError, KeyError, TypeError):
        raise InvalidArgumentError(f"{ENV} is not a JSON object with 'db'") from None
    db = memory.open(path)
    try:
        app = create_app(db, **options)
    except BaseException:
        db.close()
        raise
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(application: Any) -> AsyncIterator[Any]:
        try:
            async with inner(application) as state:
                yield state
        finally:
            db.close()  # the worker stops (a reload or a signal): save and close the store

    app.router.lifespan_context = lifespan
    return app
