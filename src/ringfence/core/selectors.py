"""Selectors: which assets a ``where`` group, an update's targets or a fault means.

A selector is comma-separated terms that must all hold; a term is ``key=value`` or ``key!=value`` and a
value may list alternatives with ``|``. Keys: ``id``, ``kind``, ``site``, ``supplier``, ``attrs.NAME`` and
``software`` (``software=vendor/name`` or ``software=vendor/name@version``).

``supplier=`` matches the asset's own ``supplier`` field (who operates or hosts it); to select the assets
that run a vendor's software, use ``software=``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ringfence.core.estate import Asset

SCALAR_KEYS = ("id", "kind", "site", "supplier")
_ATTR_KEY = re.compile(r"^attrs\.[A-Za-z0-9_.-]+$")
_FORBIDDEN_IN_VALUE = re.compile(r"[,=!]")


@dataclass(frozen=True)
class Term:
    """``key`` equals (or, negated, differs from) one of ``values``."""

    key: str
    values: frozenset[str]
    negated: bool = False

    def __str__(self) -> str:
        op = "!=" if self.negated else "="
        return f"{self.key}{op}{'|'.join(sorted(self.values))}"


@dataclass(frozen=True)
class Selector:
    """All ``terms`` must hold. ``text`` is what the user wrote, kept for messages and caching."""

    text: str
    terms: tuple[Term, ...]

    def matches(self, asset: Asset) -> bool:
        """Reference semantics, asset by asset. The compiled graph answers the same question with indexes."""
        return all(_term_holds(term, asset) for term in self.terms)

    def __str__(self) -> str:
        return self.text


def is_selector_key(key: str) -> bool:
    return key in SCALAR_KEYS or key == "software" or bool(_ATTR_KEY.match(key))


def parse_selector(text: str) -> Selector:
    """Parse ``"kind=host,attrs.cluster=prod-a"``; raises ``ValueError`` with a sentence on a bad selector."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("a selector cannot be empty; write terms like kind=host,site=city")
    return _parse_selector(text)


@lru_cache(maxsize=4096)
def _parse_selector(text: str) -> Selector:
    # Cached: a large estate repeats a few hundred distinct `where` selectors across many thousands of groups,
    # and a Selector is immutable, so every group can share one.
    terms: list[Term] = []
    for raw in text.split(","):
        part = raw.strip()
        if not part:
            raise ValueError(f"selector '{text}' has an empty term (two commas in a row, or a trailing comma)")
        negated = "!=" in part
        key, sep, value = part.partition("!=" if negated else "=")
        key = key.strip()
        if not sep:
            raise ValueError(f"selector term '{part}' needs key=value or key!=value")
        if not is_selector_key(key):
            raise ValueError(
                f"selector term '{part}' uses unknown key '{key}'; keys are id, kind, site, supplier, "
                "attrs.NAME and software"
            )
        values = [v.strip() for v in value.split("|")]
        if any(not v for v in values):
            raise ValueError(f"selector term '{part}' has an empty value")
        for v in values:
            if _FORBIDDEN_IN_VALUE.search(v):
                raise ValueError(f"selector term '{part}' has value '{v}' containing ',', '=' or '!'")
            if key == "software" and not _is_software_ref(v):
                raise ValueError(
                    f"selector term '{part}': '{v}' is not a product; write vendor/name or vendor/name@version"
                )
        terms.append(Term(key=key, values=frozenset(values), negated=negated))
    return Selector(text=text.strip(), terms=tuple(terms))


def _is_software_ref(value: str) -> bool:
    product, _, version = value.partition("@")
    vendor, slash, name = product.partition("/")
    return bool(vendor and slash and name) and ("@" not in value or bool(version))


def scalar_value(asset: Asset, key: str) -> str | None:
    """The value an asset has for a scalar selector or strata key; None when it has none."""
    if key == "id":
        return asset.id
    if key == "kind":
        return str(asset.kind)
    if key == "site":
        return asset.site
    if key == "supplier":
        return asset.supplier
    if key.startswith("attrs."):
        return asset.attrs.get(key[6:])
    raise ValueError(f"'{key}' is not a scalar key")


def scalar_column(assets: Sequence[Asset], key: str) -> list[str | None]:
    """:func:`scalar_value` of every asset, in order: one list comprehension per key rather than a call per asset."""
    if key == "id":
        return [asset.id for asset in assets]
    if key == "kind":
        return [asset.kind for asset in assets]
    if key == "site":
        return [asset.site for asset in assets]
    if key == "supplier":
        return [asset.supplier for asset in assets]
    if key.startswith("attrs."):
        name = key[6:]
        return [asset.attrs.get(name) for asset in assets]
    raise ValueError(f"'{key}' is not a scalar key")


def _term_holds(term: Term, asset: Asset) -> bool:
    if term.key == "software":
        runs = {item.product for item in asset.software} | {f"{item.product}@{item.version}" for item in asset.software}
        hit = bool(runs & term.values)
    else:
        hit = scalar_value(asset, term.key) in term.values
    return hit != term.negated
