"""The multipart form of POST /v1/search/image: one photo plus the fields of /v1/search as text.

A photo cannot travel in JSON without base64 (a third larger, and no streaming size check), so
this route takes multipart like the gallery upload does, and every other field of
:class:`~service.schemas.SearchRequest` as a form field: numbers and booleans spelled as in
JSON (``10``, ``0.5``, ``true``), the id lists by repeating the field, and ``filters`` as a JSON
object in one field. Values are stripped and a blank one counts as not sent, as in the upload
form. The parsed values then go through the same model as a JSON search, so both routes accept
and refuse the same things with the same messages. Nothing is stored.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.schemas import (
    EXAMPLE_ID_REGEX,
    MAX_EXAMPLES,
    MAX_SUGGESTIONS,
    SearchRequest,
    padded,
)

INTEGER = r"[0-9]{1,9}"
NUMBER = r"[0-9]{1,6}(?:\.[0-9]{1,9})?"
BOOLEAN = r"true|false"
SCALARS = {
    "top_k": INTEGER,
    "unique_persons": BOOLEAN,
    "alpha": NUMBER,
    "beta": NUMBER,
    "exclude_examples": BOOLEAN,
    "suggest": BOOLEAN,
    "suggest_count": INTEGER,
}
SCALAR_PATTERNS = {name: re.compile(regex) for name, regex in SCALARS.items()}
TEXTS = ("query", "filters", "weights")
JSON_TEXTS = {
    "filters": 'filters must be a JSON object, e.g. {"camera_ids": ["lobby-1"]}',
    "weights": 'weights must be a JSON object, e.g. {"global": 1, "coarse": 0.5, "fine": 2}',
}
LISTS = ("positive_ids", "negative_ids")
IMAGE_FIELD = "image"
FIELDS = (IMAGE_FIELD, *TEXTS, *SCALARS, *LISTS)
MAX_TEXT_FIELDS = 2 * MAX_EXAMPLES + len(SCALARS) + len(TEXTS)
MAX_FIELD_BYTES = 64 * 1024  # filters may list 256 camera ids


@dataclass(frozen=True)
class ImageSearch:
    body: SearchRequest
    name: str  # the client's file name, for messages only
    data: bytes


def _invalid(field: str, message: str) -> RequestValidationError:
    return RequestValidationError(
        [{"type": "value_error", "loc": ("body", field), "msg": message, "input": None}]
    )


def _text(form: FormData, name: str) -> list[str]:
    values = form.getlist(name)
    if not all(isinstance(v, str) for v in values):
        raise _invalid(name, f"the form field '{name}' must be text, not a file")
    return [str(v).strip() for v in values if str(v).strip()]


def _scalar(name: str, text: str) -> Any:
    if not SCALAR_PATTERNS[name].fullmatch(text):
        kind = {INTEGER: "a whole number", NUMBER: "a number like 0.5", BOOLEAN: "true or false"}
        raise _invalid(name, f"the form field '{name}' must be {kind[SCALARS[name]]}")
    if SCALARS[name] == BOOLEAN:
        return text == "true"
    return int(text) if SCALARS[name] == INTEGER else float(text)


def _json_field(name: str, text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise _invalid(name, JSON_TEXTS[name]) from None


def form_values(form: FormData) -> dict[str, Any]:
    """The form's search fields as the JSON route would receive them (image excluded)."""
    unknown = sorted({k for k in form if k not in FIELDS})
    if unknown:
        raise _invalid(unknown[0], f"unknown form field(s): {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for name in (*TEXTS, *SCALARS):
        given = _text(form, name)
        if len(given) > 1:
            raise _invalid(name, f"send the form field '{name}' once")
        if not given:
            continue
        if name in JSON_TEXTS:
            values[name] = _json_field(name, given[0])
        else:
            values[name] = given[0] if name in TEXTS else _scalar(name, given[0])
    for name in LISTS:
        ids = _text(form, name)
        if ids:
            values[name] = ids
    return values


async def _parse(request: Request) -> FormData:
    try:
        return await request.form(
            max_files=1, max_fields=MAX_TEXT_FIELDS, max_part_size=MAX_FIELD_BYTES
        )
    except StarletteHTTPException as err:
        if err.status_code != 400:
            raise
        detail = str(err.detail)
        if detail.startswith("Too many files"):
            raise _invalid(
                IMAGE_FIELD, "send exactly one image, in the form field 'image'"
            ) from None
        if "exceeded maximum size" in detail:
            raise HTTPException(
                413, f"a form field is over the limit of {MAX_FIELD_BYTES} bytes"
            ) from None
        if detail.startswith("Too many fields"):
            raise _invalid("form", f"at most {MAX_TEXT_FIELDS} text form fields") from None
        raise HTTPException(400, f"the multipart body cannot be parsed: {detail}") from None


async def read_image_search(request: Request) -> ImageSearch:
    """The checked request: 415 for a body that is not multipart, 422 (shaped like FastAPI's
    own) for a bad or missing field, 413 for an over-long field. The image's bytes are not
    looked at here (service/images.py checks them)."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            "send the image as multipart/form-data, in the field 'image'",
        )
    form = await _parse(request)
    try:
        values = form_values(form)
        parts = form.getlist(IMAGE_FIELD)
        if len(parts) != 1 or not isinstance(parts[0], UploadFile):
            raise _invalid(IMAGE_FIELD, "send exactly one image, in the form field 'image'")
        try:
            body = SearchRequest.model_validate(values)
        except ValidationError as err:
            raise RequestValidationError(
                [{**e, "loc": ("body", *e["loc"])} for e in err.errors(include_url=False)]
            ) from None
        name = (parts[0].filename or "image")[:100]
        return ImageSearch(body=body, name=name, data=await parts[0].read())
    finally:
        await form.close()


def _field(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {**schema, "description": description}


def _scalar_field(name: str) -> dict[str, Any]:
    return {"type": "string", "pattern": padded(SCALARS[name])}


IMAGE_SEARCH_REQUEST_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": [IMAGE_FIELD],
                "additionalProperties": False,
                "properties": {
                    IMAGE_FIELD: _field(
                        {"type": "string", "format": "binary"},
                        "A photo of the person: JPEG, PNG, WebP or BMP, checked like an upload "
                        "and encoded by the image tower; it joins the positive examples. Not "
                        "stored.",
                    ),
                    "query": _field(
                        {"type": "string"},
                        "A description to combine with the photo (optional; blank counts as "
                        "not sent).",
                    ),
                    "top_k": _field(_scalar_field("top_k"), "As in /v1/search (default 10)."),
                    "unique_persons": _field(_scalar_field("unique_persons"), "true or false."),
                    "filters": _field(
                        {"type": "string"},
                        "The filters of /v1/search as one JSON object, e.g. "
                        '{"camera_ids": ["lobby-1"]}.',
                    ),
                    "weights": _field(
                        {"type": "string"},
                        "A parts index only: the part weights of /v1/search as one JSON object, "
                        'e.g. {"global": 1, "fine": 2}.',
                    ),
                    "positive_ids": _field(
                        {
                            "type": "array",
                            "maxItems": MAX_EXAMPLES,
                            "items": {"type": "string", "pattern": padded(EXAMPLE_ID_REGEX)},
                        },
                        "Gallery ids of further positive examples (repeat the field).",
                    ),
                    "negative_ids": _field(
                        {
                            "type": "array",
                            "maxItems": MAX_EXAMPLES,
                            "items": {"type": "string", "pattern": padded(EXAMPLE_ID_REGEX)},
                        },
                        "Gallery ids of negative examples (repeat the field).",
                    ),
                    "alpha": _field(_scalar_field("alpha"), "As in /v1/search."),
                    "beta": _field(_scalar_field("beta"), "As in /v1/search."),
                    "exclude_examples": _field(
                        _scalar_field("exclude_examples"), "true (default) or false."
                    ),
                    "suggest": _field(_scalar_field("suggest"), "true or false (default)."),
                    "suggest_count": _field(
                        _scalar_field("suggest_count"),
                        f"1 to {MAX_SUGGESTIONS} (default 5).",
                    ),
                },
            }
        }
    },
}
