"""Who is a person: the rule the two-person rule compares people by (rollouts and estate proposals alike).

A token's name is free-form, so people are compared by :func:`person_of` (the name normalised) and by who issued
whose token (``api_tokens.issued_by``): see :func:`refuse_same_person`. Tokens made on the CLI have no issuer:
access to the database on the command line is the root of trust.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from sqlalchemy.orm import Session

from ringfence.core.errors import PermissionDeniedError
from ringfence.store import tokens as stored


def person_of(name: str) -> str:
    """Who a name stands for, as people are compared: NFKC, case-folded, format characters (zero-width
    spaces, joiners) removed, stripped. "Admin-1", "admin-1 " and "ＡＤＭＩＮ-1" are one person."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())
    return "".join(c for c in folded if unicodedata.category(c) != "Cf").strip()


@dataclass(frozen=True)
class Actor:
    """Who does something that a second person must check: the name recorded, and the API token used (None on
    the CLI)."""

    name: str
    token_id: int | None = None


def refuse_same_person(session: Session, first: Actor, second: Actor, *, what: str) -> None:
    """PermissionDeniedError unless ``second`` is another person than ``first`` (who made ``what``).

    The same person: the same name once normalised (:func:`person_of`), or either one's token issued, directly or
    through a chain of tokens, by a token of the other's person. So an admin who mints an approver token for
    themselves under another name cannot approve their own change with it, nor approve a change made with a
    token they minted. Tokens made on the CLI have no issuer.
    """
    first_person, second_person = person_of(first.name), person_of(second.name)
    if first_person == second_person:
        raise PermissionDeniedError(
            f"{what} was made by {first.name!r}, who cannot also approve it ({second.name!r} is the same "
            "person); ask someone else"
        )
    for made, by, other in ((second, first_person, first), (first, second_person, second)):
        if made.token_id is None:
            continue
        for issuer in stored.issuer_chain(session, made.token_id):
            if (issuer.person or person_of(issuer.name)) == by:
                raise PermissionDeniedError(
                    f"{what} was made by {first.name!r}; {second.name!r} cannot approve it: the token of "
                    f"{made.name!r} was issued by {issuer.name!r} (token {issuer.id}), the same person as "
                    f"{other.name!r}; ask someone else"
                )


__all__ = ["Actor", "person_of", "refuse_same_person"]
