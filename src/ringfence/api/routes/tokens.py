"""``/v1/tokens``: API tokens, for admins. A new token's secret is shown once; only its hash is kept."""

from __future__ import annotations

from fastapi import APIRouter, Response

from ringfence.api.deps import Admin, EngineDep
from ringfence.api.schemas import RecordId, TokenCreate, TokenIssued, TokenList, TokenOut
from ringfence.service.tokens import (
    API_WORDS,
    Role,
    estate_holding,
    issue_token_audited,
    list_tokens,
    revoke_token_audited,
    stored_estates,
)

router = APIRouter(prefix="/v1/tokens", tags=["tokens"])


@router.post("", response_model=TokenIssued, status_code=201, summary="Create a token")
def create_token(body: TokenCreate, caller: Admin, engine: EngineDep) -> TokenIssued:
    """A new token with a role (an agent token names its one asset). Keep ``token``: it is not shown again.

    An agent token's asset must be in a stored estate (422 naming the asset otherwise), unless ``force``."""
    if body.role is Role.AGENT and body.asset is not None and not body.force:
        estate_holding(body.asset, stored_estates(engine), API_WORDS)
    # The same use case as `ringfence token create`: issued and audited in one piece of code.
    issued = issue_token_audited(
        engine, actor=caller.name, name=body.name, role=body.role, asset_id=body.asset, issued_by=caller.token_id
    )
    return TokenIssued(id=issued.id, name=issued.name, role=issued.role, asset=issued.asset_id, token=issued.secret)


@router.get("", response_model=TokenList, summary="Tokens in use (never their secrets)")
def get_tokens(caller: Admin, engine: EngineDep) -> TokenList:
    return TokenList(
        tokens=[TokenOut(id=c.token_id, name=c.name, role=c.role, asset=c.asset_id) for c in list_tokens(engine)]
    )


@router.delete("/{token_id}", status_code=204, response_class=Response, summary="Revoke a token")
def delete_token(token_id: RecordId, caller: Admin, engine: EngineDep) -> Response:
    """The token stops working at once (404 when there is no such token)."""
    revoke_token_audited(engine, token_id, actor=caller.name)
    return Response(status_code=204)
