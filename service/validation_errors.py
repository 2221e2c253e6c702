"""422 replies for bodies FastAPI could parse but not validate, whatever values they held.

FastAPI's own handler echoes the offending value back in ``input``, and two kinds of value
made that echo fail with a 500: ``NaN``/``Infinity`` (Python's JSON parser accepts them; a JSON
reply cannot carry them) and raw bytes that are not UTF-8 (an image posted as multipart to a
JSON route). Those are echoed as their names and byte counts; everything else is FastAPI's reply.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse


def _echoable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # 'nan', 'inf', '-inf'
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes that are not a JSON body>"
    if isinstance(value, dict):
        return {k: _echoable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_echoable(v) for v in value]
    return value


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": jsonable_encoder(_echoable(exc.errors()))}, status_code=422)
