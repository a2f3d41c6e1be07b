"""What each dashboard page shows, built from the service layer: frozen view models, no HTML.

The route handlers call these; the templates only lay the models out. Every number and sentence here comes
from the same use cases the JSON API and the CLI call (rollout status and log, the audit chain, the impact
analyses, the drill runner), so the dashboard can never tell a different story from ``ringfence rollout
status``.

One module per page family: :mod:`.estate`, :mod:`.rollouts`, :mod:`.incidents`, :mod:`.drills`,
:mod:`.audit`; :mod:`.shared` holds what they all show alike (timestamps, tiers) and a small cache.
"""
