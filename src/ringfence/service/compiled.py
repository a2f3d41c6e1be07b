"""The compiled-estate cache a server keeps, shared by the API's routes and the dashboard's pages.

One cache per app, kept on the app's state, never one per process: :class:`CompiledEstates` is keyed by
version id, and two apps in one process (the tests make many) each have their own database, where version 1
is a different estate. The API's dependency (``ringfence.api.deps.Compiled``) hands it to a request.
"""

from __future__ import annotations

from ringfence.service.estates import CompiledEstates

STATE_ATTRIBUTE = "compiled_estates"
"""Where the cache is kept on the app's state."""


def compiled_estates(app_state: object) -> CompiledEstates:
    """The cache kept on ``app_state`` (a FastAPI app's ``state``), made on first use."""
    cache: CompiledEstates | None = getattr(app_state, STATE_ATTRIBUTE, None)
    if cache is None:
        cache = CompiledEstates()
        setattr(app_state, STATE_ATTRIBUTE, cache)
    return cache


__all__ = ["STATE_ATTRIBUTE", "compiled_estates"]
