"""Request dependencies shared by the routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from service.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    """The loaded runtime, or 503 while the model and index are still loading."""
    runtime: Runtime | None = request.app.state.runtime
    if runtime is None:
        loader = request.app.state.loader
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"the service is not ready: {loader.describe()}",
            headers={"Retry-After": "5"},
        )
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
