"""FastAPI dependencies: the process state, one DB session per request, the caller's identity."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from sqlalchemy.ext.asyncio import AsyncSession

from app.api import tokens
from app.api.render import AssetLinks
from app.api.state import AppState
from app.core import logs
from app.core.errors import Unauthorized
from app.core.ids import parse_id
from billing import service as billing_service
from billing.service import Principal

_bearer = HTTPBearer(auto_error=False, description="Your API key: `Authorization: Bearer msy_...`")
# ComfyUI's Meshy nodes send the key in this header when it is configured as an API key (not an auth token).
_api_key_header = APIKeyHeader(name="X-API-KEY", auto_error=False, description="Your API key, as ComfyUI sends it")


def _token(credentials: HTTPAuthorizationCredentials | None, api_key: str | None) -> str | None:
    if credentials is not None and credentials.scheme.lower() == "bearer":
        return credentials.credentials
    return api_key or None


async def get_state(request: Request) -> AppState:
    return request.app.state.mf  # type: ignore[no-any-return]


State = Annotated[AppState, Depends(get_state)]


async def get_session(state: State) -> AsyncIterator[AsyncSession]:
    session = state.sessionmaker()
    try:
        yield session
    finally:
        # Closed only when it holds a connection (an open transaction): SQLAlchemy closes a session in a task of its
        # own, shielded from cancellation, which cost every create a task for a session it never used.
        if session.in_transaction():
            async with session:
                pass


DbSession = Annotated[AsyncSession, Depends(get_session)]


async def get_read_session(state: State) -> AsyncIterator[AsyncSession]:
    async with state.reader() as session:
        yield session


ReadSession = Annotated[AsyncSession, Depends(get_read_session)]


async def get_principal(
    state: State,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key_header)] = None,
) -> Principal:
    """Authenticate the bearer key, or `X-API-KEY` (one prepared SELECT), then count it against the rate."""
    return await _authenticate(state, _token(credentials, api_key), cached=False)


async def _authenticate(state: AppState, token: str | None, *, cached: bool) -> Principal:
    """With `cached`, this process's principal cache first: the caller's statement must then check the key."""
    if token is None:
        raise Unauthorized()
    principal = await state.auth.authenticate(token, cached=cached)
    logs.set_account(principal.account_id)
    if state.settings.rate_limits:
        await state.limiter.hit(principal.account_id, principal.requests_per_second)
    return principal


ApiKeyAuth = Annotated[Principal, Depends(get_principal)]


async def get_cached_principal(
    state: State,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key_header)] = None,
) -> Principal:
    """As `get_principal`, from this process's cache when it can: only for routes whose statements check the key
    again (create does, in the statement that locks the account)."""
    return await _authenticate(state, _token(credentials, api_key), cached=True)


CachedAuth = Annotated[Principal, Depends(get_cached_principal)]


@dataclass(frozen=True)
class Reader:
    """What a hot read route needs, from one dependency (each one FastAPI solves costs a few microseconds): the
    authenticated principal, the process state and the asset links of this request's base URL."""

    principal: Principal
    state: AppState
    links: AssetLinks

    async def check_key(self, valid: bool | None) -> None:
        """Unauthorized unless the key was valid in the route's statement (`valid`: its `key_valid` column, or None
        when the statement found no row to carry it: then one more statement asks)."""
        if valid is None:
            valid = await self.state.auth.still_valid(self.principal)
        if not valid:
            self.state.auth.forget(self.principal.key_id)
            raise Unauthorized()


async def get_reader(request: Request) -> Reader:
    """The principal from this process's cache when it has it: the route's own statement checks the key is still
    valid (`billing.auth.key_valid`) and calls `Reader.check_key`. The headers are read here, not through the two
    security dependencies (each one FastAPI solves costs CPU on the hottest routes); the routes declare the same
    security requirement in OpenAPI (`READER_SECURITY`)."""
    state: AppState = request.app.state.mf
    headers = request.headers
    scheme, bearer = get_authorization_scheme_param(headers.get("authorization"))  # as HTTPBearer reads it
    token = bearer if scheme.lower() == "bearer" and bearer else headers.get("x-api-key") or None
    principal = await _authenticate(state, token, cached=True)
    return Reader(principal, state, _links(state, request))


# What `get_reader`'s routes declare in OpenAPI: the same schemes as every other authenticated route.
READER_SECURITY = {"security": [{"HTTPBearer": []}, {"APIKeyHeader": []}]}


ReaderAuth = Annotated[Reader, Depends(get_reader)]


@dataclass(frozen=True)
class StreamCaller:
    """Who follows a stream: a principal, or why their stream token was refused (sent as an error event)."""

    principal: Principal | None
    error: str | None = None


async def get_stream_caller(
    request: Request,
    state: State,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key_header)] = None,
    token: Annotated[
        str | None,
        Query(max_length=4096, description="A stream token from POST /openapi/v1/stream-tokens (for EventSource)."),
    ] = None,
) -> StreamCaller:
    """A key as everywhere (bearer or X-API-KEY), or, on stream routes only, a short-lived `?token=`."""
    if credentials is not None or api_key or token is None:
        return StreamCaller(await _authenticate(state, _token(credentials, api_key), cached=False))
    task_id = parse_id(request.path_params.get("task_id", "")) or uuid.UUID(int=0)
    try:
        grant = tokens.verify(state.secret, token, task_id=task_id)
    except tokens.StreamTokenInvalid as exc:
        return StreamCaller(None, str(exc))
    async with state.reader() as session:  # closed before the stream starts: it runs for minutes
        principal = await billing_service.principal_for_account(
            session, account_id=grant.account_id, key_id=grant.key_id
        )
    if principal is None:
        return StreamCaller(None, "Invalid stream token")
    logs.set_account(principal.account_id)
    if state.settings.rate_limits:
        await state.limiter.hit(principal.account_id, principal.requests_per_second)
    return StreamCaller(principal)


StreamAuth = Annotated[StreamCaller, Depends(get_stream_caller)]


async def get_links(state: State, request: Request) -> AssetLinks:
    return _links(state, request)


def _links(state: AppState, request: Request) -> AssetLinks:
    base = state.settings.public_url or str(request.base_url)
    return AssetLinks(signer=state.signer, base_url=base)


Links = Annotated[AssetLinks, Depends(get_links)]
