"""``/v1/tokens``: API tokens, for admins. A new token's secret is shown once; only its hash is kept."""

from __future__ import annotations

from fastapi import APIRouter, Response

from ringfence.api.deps import Admin, EngineDep
from ringfence.api.schemas import TokenCreate, TokenIssued, TokenList, TokenOut
from ringfence.core.clock import utc_now
from ringfence.service.tokens import issue_token, list_tokens, revoke_token
from ringfence.store.audit import append_audit
from ringfence.store.db import session_scope

router = APIRouter(prefix="/v1/tokens", tags=["tokens"])


def _audit(engine: EngineDep, *, actor: str, action: str, token_id: int, detail: dict[str, str | int | None]) -> None:
    # A second transaction after the token's own (the token use cases take no actor); see docs/api.md.
    with session_scope(engine) as session:
        append_audit(session, actor=actor, action=action, subject=f"token:{token_id}", detail=detail, at=utc_now())


@router.post("", response_model=TokenIssued, status_code=201, summary="Create a token")
def create_token(body: TokenCreate, caller: Admin, engine: EngineDep) -> TokenIssued:
    """A new token with a role (an agent token names its one asset). Keep ``token``: it is not shown again."""
    issued = issue_token(engine, name=body.name, role=body.role, asset_id=body.asset)
    _audit(
        engine,
        actor=caller.name,
        action="token.create",
        token_id=issued.id,
        detail={"name": issued.name, "role": issued.role.value, "asset": issued.asset_id},
    )
    return TokenIssued(id=issued.id, name=issued.name, role=issued.role, asset=issued.asset_id, token=issued.secret)


@router.get("", response_model=TokenList, summary="Tokens in use (never their secrets)")
def get_tokens(caller: Admin, engine: EngineDep) -> TokenList:
    return TokenList(
        tokens=[TokenOut(id=c.token_id, name=c.name, role=c.role, asset=c.asset_id) for c in list_tokens(engine)]
    )


@router.delete("/{token_id}", status_code=204, response_class=Response, summary="Revoke a token")
def delete_token(token_id: int, caller: Admin, engine: EngineDep) -> Response:
    """The token stops working at once (404 when there is no such token)."""
    revoke_token(engine, token_id)
    _audit(engine, actor=caller.name, action="token.revoke", token_id=token_id, detail={"id": token_id})
    return Response(status_code=204)
