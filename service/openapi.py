"""The OpenAPI document of one configured app.

FastAPI generates the document from the routes and models, which cannot know the limits and the
access rule that come from the settings (the longest query, the largest top_k, whether reads need
a key: they do unless TPS_OPEN_READS). Written into the document here, it describes what this
server accepts and answers, so a client (or a fuzzer) that follows it is never refused for
something it did not say.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from service.access.security import READ_KEY_SCHEME
from service.settings import Settings

_KEY_ERRORS = {
    "401": "Missing, unknown or revoked API key.",
    "403": "The key's role may not do this.",
}


def install_openapi(app: FastAPI, settings: Settings) -> None:
    """Make ``app.openapi()`` return the generated document with the settings written in."""
    generate = app.openapi  # FastAPI's own: generates once, then returns its cached document

    def openapi() -> dict[str, Any]:
        schema = generate()
        _document_limits(schema, settings)  # idempotent: the cached document may come again
        _document_read_access(schema, settings)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _document_limits(schema: dict[str, Any], s: Settings) -> None:
    models = schema["components"]["schemas"]
    single = models["SearchRequest"]["properties"]
    single["query"]["maxLength"] = s.max_query_chars
    single["top_k"]["maximum"] = s.max_top_k
    batch = models["BatchSearchRequest"]["properties"]
    batch["queries"]["maxItems"] = s.max_batch_queries
    batch["queries"]["items"]["maxLength"] = s.max_query_chars
    batch["top_k"]["maximum"] = s.max_top_k
    upload = schema["paths"]["/v1/gallery"]["post"]["requestBody"]["content"]
    upload["multipart/form-data"]["schema"]["properties"]["files"]["maxItems"] = s.max_files


def _document_read_access(schema: dict[str, Any], s: Settings) -> None:
    """Reads declare the key header (so clients know they may send it); it is optional unless
    ``read_requires_key`` is set."""
    for operations in schema["paths"].values():
        for operation in operations.values():
            if not any(READ_KEY_SCHEME in r for r in operation.get("security", [])):
                continue
            if s.read_requires_key:
                operation["security"] = [{READ_KEY_SCHEME: []}]
                for code, text in _KEY_ERRORS.items():
                    operation["responses"].setdefault(code, _error(text))
            else:
                operation["security"] = [{READ_KEY_SCHEME: []}, {}]  # {}: no key is fine too


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
    }
