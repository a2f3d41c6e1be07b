"""Optional features and the extra that installs each: a feature used without its extra says which to install.

The base install (``pip install ringfence``) is the analysis and the server; a feature that needs a large
library of its own lives in an extra, so that reading an estate does not pull a full Ansible:

===========  ==================================  ============================================================
extra        installs                            for
===========  ==================================  ============================================================
``ansible``  ansible-core, ansible-runner        ``ringfence import ansible`` and the ``ansible`` driver
``postgres`` psycopg                             a PostgreSQL database (``RINGFENCE_DATABASE_URL``)
``oidc``     joserfc                             sign-in at an OpenID Connect provider (``--oidc-config``)
``vsphere``  pyvmomi                             ``ringfence import vsphere`` (docs/vsphere.md)
``notify``   apprise                             mail, Teams, Slack, webhooks (``--notifications``)
===========  ==================================  ============================================================

Each feature imports its library inside the function that uses it, after :func:`require_extra`, so the
base install never imports it (tests/cli/test_extras.py proves it for the analysis commands).
"""

from __future__ import annotations

import importlib.util

from ringfence.core.errors import InputError

EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "ansible": ("ansible", "ansible_runner"),
    "postgres": ("psycopg",),
    "oidc": ("joserfc",),
    "notify": ("apprise",),
    "vsphere": ("pyVmomi",),
}
"""The top-level modules each extra installs: all present means the extra is installed."""


class MissingExtraError(InputError):
    """A feature was asked for whose extra is not installed: a fix the user makes (exit 2, HTTP 422)."""


def extra_installed(extra: str) -> bool:
    """Whether every module of ``extra`` can be imported, found without importing any of them."""
    return all(importlib.util.find_spec(module) is not None for module in EXTRA_MODULES[extra])


def require_extra(extra: str, feature: str) -> None:
    """Raise :class:`MissingExtraError` naming the ``pip install`` that adds ``feature``, unless installed."""
    if not extra_installed(extra):
        raise MissingExtraError(
            f"{feature} needs the '{extra}' extra, which is not installed: pip install 'ringfence[{extra}]'"
        )


__all__ = ["EXTRA_MODULES", "MissingExtraError", "extra_installed", "require_extra"]
