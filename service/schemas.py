"""Request and response models of the HTTP API (they are also its OpenAPI documentation).

Limits that come from the settings (longest query, largest top_k) are checked in the routes,
so the models only hold the limits that never change.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError


def _strip_query(value: str) -> str:
    stripped = value.strip()
    if not stripped:
        # A custom error keeps the message free of pydantic's "Value error, " prefix.
        raise PydanticCustomError("empty_query", "the query is empty; describe the person to find")
    return stripped


class SearchRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"query": "a woman in a red coat carrying a white bag", "top_k": 10}]
        },
    )

    query: str = Field(description="What the person looks like, in plain words.")
    top_k: int = Field(default=10, ge=1, description="How many results to return.")
    unique_persons: bool = Field(
        default=False, description="Keep only the best-scoring image of each person."
    )

    @field_validator("query")
    @classmethod
    def _strip(cls, value: str) -> str:
        return _strip_query(value)


class BatchSearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    queries: list[str] = Field(min_length=1, description="Several descriptions, searched at once.")
    top_k: int = Field(default=10, ge=1)
    unique_persons: bool = False

    @field_validator("queries")
    @classmethod
    def _strip_all(cls, values: list[str]) -> list[str]:
        return [_strip_query(v) for v in values]


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
UPLOAD_REQUEST_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["files"],
                "properties": {
                    "files": {
                        "type": "array",
                        "items": {"type": "string", "format": "binary"},
                        "description": "One or more JPEG, PNG, WebP or BMP images.",
                    },
                    "person_id": {
                        "type": "string",
                        "description": "Identity the images show (optional, same for all files).",
                    },
                    "image_id": {
                        "type": "string",
                        "description": "Id for the image; only with exactly one file. Default: "
                        "derived from the file's SHA-256.",
                    },
                },
            }
        }
    },
}
