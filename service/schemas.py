"""Request and response models of the HTTP API (they are also its OpenAPI documentation).

Limits that come from the settings (longest query, largest top_k) are checked in the routes and
written into the OpenAPI document by service/openapi.py, so the models only hold the limits that
never change. Requests are validated strictly (no "5" for 5, no 0 for false): what the document
calls invalid is refused, and what it calls valid is accepted.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

# Python's whitespace (str.isspace, str.strip), spelled out so that JSON Schema's regex dialect
# and Python's agree on what a blank query or a padded form field is.
WHITESPACE = (
    r"\u0009-\u000d\u001c-\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
)
NOT_BLANK = f"[^{WHITESPACE}]"
IMAGE_ID_REGEX = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
PERSON_ID_REGEX = r"[^\x00-\x1f\x7f]{1,128}"

QueryText = Annotated[
    str,
    Field(
        description="What the person looks like, in plain words (not only whitespace).",
        json_schema_extra={"pattern": NOT_BLANK},
    ),
]


def _require_text(value: str) -> str:
    if not value.strip():
        # A custom error keeps the message free of pydantic's "Value error, " prefix.
        raise PydanticCustomError("empty_query", "the query is empty; describe the person to find")
    return value  # as sent: its length is what the limit counts; the tokenizer drops the spaces


class SearchRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [{"query": "a woman in a red coat carrying a white bag", "top_k": 10}]
        },
    )

    query: QueryText
    top_k: int = Field(default=10, ge=1, description="How many results to return.")
    unique_persons: bool = Field(
        default=False, description="Keep only the best-scoring image of each person."
    )

    @field_validator("query")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        return _require_text(value)


class BatchSearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    queries: list[QueryText] = Field(
        min_length=1, description="Several descriptions, searched at once."
    )
    top_k: int = Field(default=10, ge=1)
    unique_persons: bool = False

    @field_validator("queries")
    @classmethod
    def _none_blank(cls, values: list[str]) -> list[str]:
        return [_require_text(v) for v in values]


class SearchHit(BaseModel):
    image_id: str
    person_id: str | None
    score: float = Field(description="Cosine similarity of query and image, in [-1, 1].")
    rank: int = Field(ge=1, description="1 for the best match.")


class SearchResponse(BaseModel):
    results: list[SearchHit]
    model: str = Field(description="Fingerprint of the model that encoded query and gallery.")
    took_ms: float
    truncated: bool = Field(
        description="The query was longer than the text encoder's context and was cut."
    )


class QueryResults(BaseModel):
    results: list[SearchHit]
    truncated: bool


class BatchSearchResponse(BaseModel):
    queries: list[QueryResults] = Field(description="One entry per query, in request order.")
    model: str
    took_ms: float


class GalleryItem(BaseModel):
    image_id: str
    person_id: str | None
    sha256: str


class GalleryItemDetail(GalleryItem):
    added_at: float = Field(description="Unix time the image entered the index.")
    image_url: str
    thumbnail_url: str


class Duplicate(BaseModel):
    image_id: str = Field(description="The id this upload asked for or would have had.")
    existing_image_id: str = Field(description="The gallery image with the same bytes.")
    sha256: str


class UploadResponse(BaseModel):
    added: list[GalleryItem]
    duplicates: list[Duplicate] = Field(
        description="Files whose exact bytes are already in the gallery; they were not re-added."
    )


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str = Field(description="ready, loading or failed.")
    detail: str | None = None


class ServiceInfo(BaseModel):
    model: str
    embed_dim: int
    context_length: int
    index: dict = Field(description="Index statistics: count, kind, generation, gpu.")
    device: str
    batching: bool
    writes_enabled: bool
    read_requires_key: bool
    max_top_k: int
    max_query_chars: int
    max_batch_queries: int
    max_upload_bytes: int
    max_files: int


class ErrorResponse(BaseModel):
    detail: str | list


# Multipart uploads are parsed by hand (after the API key check, under the byte limit), so their
# body is described here for the OpenAPI document instead of being inferred from parameters.
def _padded(regex: str) -> str:
    """A form field matching ``regex`` once stripped, or blank (which counts as not sent)."""
    return f"^[{WHITESPACE}]*({regex})?[{WHITESPACE}]*$"


UPLOAD_REQUEST_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["files"],
                "additionalProperties": False,
                "properties": {
                    "files": {
                        "type": "array",
                        "minItems": 1,
                        "items": {"type": "string", "format": "binary"},
                        "description": "One or more JPEG, PNG, WebP or BMP images.",
                    },
                    "person_id": {
                        "type": "string",
                        "pattern": _padded(PERSON_ID_REGEX),
                        "description": "Identity the images show (optional, same for all files): "
                        "1-128 printable characters.",
                    },
                    "image_id": {
                        "type": "string",
                        "pattern": _padded(IMAGE_ID_REGEX),
                        "description": "Id for the image; only with exactly one file: 1-128 "
                        "letters, digits, '.', '_' or '-', starting with a letter or digit. "
                        "Default: derived from the file's SHA-256.",
                    },
                },
            }
        }
    },
}
