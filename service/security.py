"""API-key checks: writes always need the key, reads only when ``read_requires_key`` is set."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader

from service.settings import Settings

API_KEY_HEADER = "X-API-Key"

api_key_header = APIKeyHeader(
    name=API_KEY_HEADER,
    auto_error=False,
    description="The key set in TPS_API_KEY on the server. Required for uploads and deletes.",
)
# The same header under its own scheme name, so the OpenAPI document can mark it optional on
# reads when they are open (service/openapi.py) while writes keep requiring it.
READ_KEY_SCHEME = "APIKeyHeaderForReads"
read_key_header = APIKeyHeader(
    name=API_KEY_HEADER,
    scheme_name=READ_KEY_SCHEME,
    auto_error=False,
    description="The same key, for reads: needed only when the server sets TPS_READ_REQUIRES_KEY.",
)


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, message, headers={"WWW-Authenticate": API_KEY_HEADER}
    )


def _check_key(settings: Settings, supplied: str | None) -> None:
    if settings.api_key is None:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "writes are disabled: no API key is configured on the server (set TPS_API_KEY)",
        )
    if not supplied:
        raise _unauthorized(f"this request needs an API key in the {API_KEY_HEADER} header")
    expected = settings.api_key.get_secret_value().encode()
    if not hmac.compare_digest(supplied.encode(), expected):
        raise _unauthorized("the API key is not valid")


async def require_write_key(
    request: Request, supplied: Annotated[str | None, Security(api_key_header)]
) -> None:
    _check_key(request.app.state.settings, supplied)


async def require_read_key(
    request: Request, supplied: Annotated[str | None, Security(read_key_header)]
) -> None:
    settings: Settings = request.app.state.settings
    if settings.read_requires_key:
        _check_key(settings, supplied)
