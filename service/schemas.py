"""Request and response models of the HTTP API (they are also its OpenAPI documentation).

Limits that come from the settings (longest query, largest top_k) are checked in the routes and
written into the OpenAPI document by service/openapi.py, so the models only hold the limits that
never change. Requests are validated strictly (no "5" for 5, no 0 for false): what the document
calls invalid is refused, and what it calls valid is accepted.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from bundle.parts_layout import MAX_WEIGHT as MAX_PART_WEIGHT
from index.filters import GalleryFilter
from index.metadata_fields import normalise_id
from index.search.query_vector import DEFAULT_ALPHA, DEFAULT_BETA, MAX_WEIGHT
from service.metadata import (
    CAMERA_ID_REGEX,
    MAX_FILTER_VALUES,
    MAX_TAGS,
    TAG_REGEX,
    TIME_RULE,
    MetadataError,
    check_camera_id,
    check_tag,
    parse_time,
)

# Python's whitespace (str.isspace, str.strip), spelled out so that JSON Schema's regex dialect
# and Python's agree on what a blank query or a padded form field is.
WHITESPACE = (
    r"\u0009-\u000d\u001c-\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
)
NOT_BLANK = f"[^{WHITESPACE}]"
IMAGE_ID_REGEX = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
PERSON_ID_REGEX = r"[^\x00-\x1f\x7f]{1,128}"
PERSON_ID_PATTERN = re.compile(PERSON_ID_REGEX)
# Gallery ids as the stores hold them: uploads' ids, and the index CLI's relative file paths
# (which may hold '/' and spaces); never a control character, at most a Milvus key's length.
EXAMPLE_ID_REGEX = r"[^\x00-\x1f\x7f]{1,512}"
EXAMPLE_ID_PATTERN = re.compile(EXAMPLE_ID_REGEX)
MAX_EXAMPLES = 64  # per list: more examples than this no longer change the mean
MAX_SUGGESTIONS = 10
DEFAULT_SUGGESTIONS = 5

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


def _documented(schema: dict[str, Any]) -> Any:
    """Schema keywords for the OpenAPI document only: the validators below check the values, so
    that each refusal names its field in words."""
    return Field(json_schema_extra=schema)


def _anchored(regex: str) -> str:
    return f"^(?:{regex})$"


def _padded(regex: str) -> str:
    """A filter value: white space around it is dropped (``normalise_id``), as uploads drop it."""
    pad = "[ \\t\\n\\r\\x0b\\x0c]*"
    return f"^{pad}(?:{regex}){pad}$"


CameraIdText = Annotated[str, _documented({"pattern": _padded(CAMERA_ID_REGEX)})]
PersonIdText = Annotated[str, _documented({"pattern": _padded(PERSON_ID_REGEX)})]
TagText = Annotated[str, _documented({"pattern": _padded(TAG_REGEX)})]
TimeText = Annotated[str, _documented({"format": "date-time"})]


def _values_of(item: Any, most: int) -> Any:
    return Annotated[list[item], _documented({"minItems": 1, "maxItems": most})]


FILTER_LISTS = {"camera_ids": check_camera_id, "person_ids": None, "tags": check_tag}
FILTER_TIMES = ("captured_after", "captured_before")


def _filter_error(message: str) -> PydanticCustomError:
    return PydanticCustomError("invalid_filter", message)


class SearchFilters(BaseModel):
    """Which gallery images a search may return; every condition given must hold, and the
    search returns the top k among the images that pass. An image without a camera, capture
    time or tags never passes a condition on it."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "camera_ids": ["lobby-1", "gate-2"],
                    "captured_after": "2024-05-01T08:00:00Z",
                    "captured_before": "2024-05-01T18:00:00Z",
                    "tags": ["entrance"],
                }
            ]
        },
    )

    camera_ids: _values_of(CameraIdText, MAX_FILTER_VALUES) | None = Field(
        default=None, description="Images from any of these cameras."
    )
    captured_after: TimeText | None = Field(
        default=None,
        description="Images captured at or after this ISO 8601 time (no zone: UTC).",
    )
    captured_before: TimeText | None = Field(
        default=None,
        description="Images captured at or before this ISO 8601 time (no zone: UTC).",
    )
    person_ids: _values_of(PersonIdText, MAX_FILTER_VALUES) | None = Field(
        default=None, description="Images of any of these persons."
    )
    tags: _values_of(TagText, MAX_TAGS) | None = Field(
        default=None, description="Images carrying every one of these tags."
    )

    @model_validator(mode="before")
    @classmethod
    def _check_shape(cls, data: Any) -> Any:
        """Unknown keys and wrong types, refused with a message that names the field (the
        schema refuses them too; pydantic's own words would not say which filter)."""
        if not isinstance(data, dict):
            raise _filter_error('filters must be an object, e.g. {"camera_ids": ["lobby-1"]}')
        known = [*FILTER_LISTS, *FILTER_TIMES]
        for key, value in data.items():
            if key not in known:
                raise _filter_error(f"filters.{key} is not a filter; use {', '.join(known)}")
            if value is None:
                continue
            if key in FILTER_TIMES and not isinstance(value, str):
                raise _filter_error(f"filters.{key} must be a string holding {TIME_RULE}")
            if key in FILTER_LISTS and not (
                isinstance(value, list) and all(isinstance(v, str) for v in value)
            ):
                raise _filter_error(f"filters.{key} must be a list of strings")
        return data

    @field_validator(*FILTER_LISTS)
    @classmethod
    def _check_list(cls, values: list[str] | None, info: ValidationInfo) -> list[str] | None:
        if values is None:
            return None
        name = f"filters.{info.field_name}"
        most = MAX_TAGS if info.field_name == "tags" else MAX_FILTER_VALUES
        if not values:
            raise _filter_error(f"{name} is empty: leave it out, or list at least one value")
        values = [normalise_id(v) for v in values]  # as uploads store them
        if len(values) > most:
            raise _filter_error(f"{name}: at most {most} values, got {len(values)}")
        for i, value in enumerate(values):
            try:
                _check_filter_value(info.field_name, value, f"{name}[{i}]")
            except MetadataError as err:
                raise _filter_error(str(err)) from None
        return values

    @field_validator(*FILTER_TIMES)
    @classmethod
    def _check_time(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            try:
                parse_time(value, f"filters.{info.field_name}")
            except MetadataError as err:
                raise _filter_error(str(err)) from None
        return value

    @model_validator(mode="after")
    def _check_window(self) -> SearchFilters:
        after, before = self.captured_after, self.captured_before
        if after is not None and before is not None and parse_time(after) > parse_time(before):
            raise _filter_error(
                f"filters.captured_after ({after}) is later than filters.captured_before "
                f"({before}): no image could pass"
            )
        return self

    def gallery_filter(self) -> GalleryFilter | None:
        """The store's filter, or None when no condition is given."""
        found = GalleryFilter(
            camera_ids=_tuple(self.camera_ids),
            captured_after=_seconds(self.captured_after),
            captured_before=_seconds(self.captured_before),
            person_ids=_tuple(self.person_ids),
            tags=_tuple(self.tags),
        )
        return None if found.is_empty else found


def _check_filter_value(field: str, value: str, name: str) -> None:
    check = FILTER_LISTS[field]
    if check is not None:
        check(value, name)
    elif not PERSON_ID_PATTERN.fullmatch(value):
        raise MetadataError(f"{name} must be 1-128 printable characters")


def _tuple(values: list[str] | None) -> tuple[str, ...] | None:
    return None if values is None else tuple(values)


def _seconds(value: str | None) -> float | None:
    return None if value is None else parse_time(value)


FILTERS_FIELD = Field(
    default=None,
    description="Search only among the gallery images that pass these conditions.",
)


ExampleIdText = Annotated[str, _documented({"pattern": _anchored(EXAMPLE_ID_REGEX)})]
ExampleIds = Annotated[list[ExampleIdText], _documented({"maxItems": MAX_EXAMPLES})]


def _examples_error(message: str) -> PydanticCustomError:
    return PydanticCustomError("invalid_examples", message)


def _part_weight(name: str, alias: str | None = None) -> Any:
    return Field(
        default=None,
        alias=alias,
        ge=0.0,
        le=MAX_PART_WEIGHT,
        allow_inf_nan=False,
        description=f"Weight of the {name} score (default: the bundle's, 1).",
    )


class PartWeights(BaseModel):
    """Per-query weights of the part-level score S = w_g cos(g) + (w_c/M) Σ cos(c) +
    (w_f/K) Σ cos(f) (a parts index only): names left out keep the bundle's defaults."""

    # Only the alias: ``global_`` is this class's name for it, not the API's.
    model_config = ConfigDict(extra="forbid", strict=True)

    global_: float | None = _part_weight("global embedding's", alias="global")
    coarse: float | None = _part_weight("coarse parts' mean")
    fine: float | None = _part_weight("fine parts' (stripes') mean")

    @model_validator(mode="after")
    def _not_all_zero(self) -> PartWeights:
        given = [v for v in (self.global_, self.coarse, self.fine) if v is not None]
        if len(given) == 3 and not any(given):
            raise PydanticCustomError(
                "invalid_weights", "weights: at least one of global, coarse, fine must be > 0"
            )
        return self

    def as_dict(self) -> dict[str, float]:
        values = {"global": self.global_, "coarse": self.coarse, "fine": self.fine}
        return {k: v for k, v in values.items() if v is not None}


class SearchRequest(BaseModel):
    """A search by description, by example images, or both; /v1/search/image takes the same
    fields as form fields, next to an uploaded image (docs/searching.md, "Interactive search")."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {"query": "a woman in a red coat carrying a white bag", "top_k": 10},
                {
                    "query": "a woman in a red coat",
                    "positive_ids": ["cam3/000123.jpg"],
                    "negative_ids": ["cam1/000045.jpg"],
                    "suggest": True,
                },
            ]
        },
    )

    query: QueryText | None = Field(
        default=None,
        description="What the person looks like, in plain words (not only whitespace). "
        "Optional when positive_ids (or, on /v1/search/image, an image) say whom to find.",
    )
    top_k: int = Field(default=10, ge=1, description="How many results to return.")
    unique_persons: bool = Field(
        default=False, description="Keep only the best-scoring image of each person."
    )
    filters: SearchFilters | None = FILTERS_FIELD
    positive_ids: ExampleIds = Field(
        default_factory=list,
        description='Gallery images of the person sought ("more like this"): the query moves '
        "towards the mean of their vectors.",
    )
    negative_ids: ExampleIds = Field(
        default_factory=list,
        description='Gallery images of someone else ("not this person"): the query moves away '
        "from the mean of their vectors.",
    )
    alpha: float = Field(
        default=DEFAULT_ALPHA,
        ge=0.0,
        le=MAX_WEIGHT,
        description="Weight of the positive examples' mean: query = text + alpha * mean(positives) "
        "- beta * mean(negatives), normalised.",
    )
    beta: float = Field(
        default=DEFAULT_BETA,
        ge=0.0,
        le=MAX_WEIGHT,
        description="Weight of the negative examples' mean.",
    )
    exclude_examples: bool = Field(
        default=True,
        description="Leave the example images out of the results (k results still come back).",
    )
    weights: PartWeights | None = Field(
        default=None,
        description="A parts index only (TPS_PARTS): the weights of the global, coarse and fine "
        "scores for this query; scores are then S = <G, Q>. 422 on a global index.",
    )
    suggest: bool = Field(
        default=False,
        description="Also return attribute phrases that would reorder the top results most "
        "(one extra text-encoder batch).",
    )
    suggest_count: int = Field(
        default=DEFAULT_SUGGESTIONS,
        ge=1,
        le=MAX_SUGGESTIONS,
        description="How many suggestions at most.",
    )

    @field_validator("positive_ids", "negative_ids")
    @classmethod
    def _check_ids(cls, values: list[str], info: ValidationInfo) -> list[str]:
        name = info.field_name
        if len(values) > MAX_EXAMPLES:
            raise _examples_error(f"{name}: at most {MAX_EXAMPLES} images, got {len(values)}")
        for i, value in enumerate(values):
            if not EXAMPLE_ID_PATTERN.fullmatch(value):
                raise _examples_error(
                    f"{name}[{i}] must be a gallery image id: 1-512 characters, no control "
                    "characters"
                )
        return values

    @field_validator("query")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        return None if value is None else _require_text(value)


class BatchSearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    queries: list[QueryText] = Field(
        min_length=1, description="Several descriptions, searched at once."
    )
    top_k: int = Field(default=10, ge=1)
    unique_persons: bool = False
    filters: SearchFilters | None = Field(
        default=None, description="Conditions every query's results must pass."
    )
    weights: PartWeights | None = Field(
        default=None,
        description="A parts index only (TPS_PARTS): the weights of the global, coarse and fine "
        "scores for every query of the batch. 422 on a global index.",
    )

    @field_validator("queries")
    @classmethod
    def _none_blank(cls, values: list[str]) -> list[str]:
        return [_require_text(v) for v in values]


class SearchHit(BaseModel):
    image_id: str
    person_id: str | None
    camera_id: str | None = Field(description="The camera that took the image, if known.")
    captured_at: datetime | None = Field(description="When it was taken (UTC), if known.")
    track_start: datetime | None = Field(
        default=None,
        description="For a crop of a recording's track (person_id = the track): when the "
        "track was first seen (UTC).",
    )
    track_end: datetime | None = Field(default=None, description="When the track was last seen.")
    score: float = Field(description="Cosine similarity of query and image, in [-1, 1].")
    rank: int = Field(ge=1, description="1 for the best match.")


class SuggestedPhrase(BaseModel):
    phrase: str = Field(description="A short attribute phrase, e.g. 'red bag'.")
    query: str = Field(description="The query with the phrase appended, as it was scored.")
    score: float = Field(
        description="How much the phrase would reorder the top results (the fraction of their "
        "pairs it swaps) times how evenly it splits them; in [0, 1], higher first."
    )


class SearchResponse(BaseModel):
    results: list[SearchHit]
    model: str = Field(description="Fingerprint of the model that encoded query and gallery.")
    took_ms: float
    truncated: bool = Field(
        description="The query was longer than the text encoder's context and was cut."
    )
    suggestions: list[SuggestedPhrase] | None = Field(
        default=None,
        description="With suggest: true, the phrases that would split the top results most, "
        "best first (empty when nothing splits them); otherwise null.",
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
    camera_id: str | None = Field(description="The camera that took the image, if known.")
    captured_at: datetime | None = Field(description="When it was taken (UTC), if known.")
    tags: list[str] = Field(description="Labels given at upload; filters can require them.")


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
    status: str = Field(
        description="ready, loading, failed, or unavailable (the Milvus server does not answer)."
    )
    detail: str | None = None


class ServiceInfo(BaseModel):
    model: str
    embed_dim: int
    context_length: int
    index: dict = Field(
        description="Gallery statistics: count, kind, store (faiss, milvus or milvus-lite), "
        "and for a folder store version, generation, gpu."
    )
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
def padded(regex: str) -> str:
    """A form field matching ``regex`` once stripped, or blank (which counts as not sent)."""
    return f"^[{WHITESPACE}]*({regex})?[{WHITESPACE}]*$"


def _tag_list() -> str:
    """One tags form field: tags separated by commas, blanks and padding allowed."""
    space, gap = f"[{WHITESPACE}]", f"[{WHITESPACE},]"
    return f"^{gap}*(?:{TAG_REGEX}(?:{space}*,{gap}*{TAG_REGEX})*)?{gap}*$"


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
                        "pattern": padded(PERSON_ID_REGEX),
                        "description": "Identity the images show (optional, same for all files): "
                        "1-128 printable characters.",
                    },
                    "image_id": {
                        "type": "string",
                        "pattern": padded(IMAGE_ID_REGEX),
                        "description": "Id for the image; only with exactly one file: 1-128 "
                        "letters, digits, '.', '_' or '-', starting with a letter or digit. "
                        "Default: derived from the file's SHA-256.",
                    },
                    "camera_id": {
                        "type": "string",
                        "pattern": padded(CAMERA_ID_REGEX),
                        "description": "The camera that took the images (optional, same for all "
                        "files): 1-128 letters, digits, '.', '_', ':', '/' or '-', starting with "
                        "a letter or digit.",
                    },
                    "captured_at": {
                        # Blank, like every form field here, counts as not sent.
                        "anyOf": [
                            {"type": "string", "format": "date-time"},
                            {"type": "string", "pattern": f"^[{WHITESPACE}]*$"},
                        ],
                        "description": "When the images were taken (optional, same for all "
                        "files): an ISO 8601 time; one without a zone is UTC.",
                    },
                    # One text field here: multipart cannot tell a one-element array from a
                    # string. Sending the field several times adds up (documented in words).
                    "tags": {
                        "type": "string",
                        "pattern": _tag_list(),
                        "description": "Labels for every file (optional): comma-separated (the "
                        f"field may also be repeated); at most {MAX_TAGS}, each 1-64 letters, "
                        "digits, '.', '_', ':' or '-', starting with a letter or digit.",
                    },
                },
            }
        }
    },
}


FOOTAGE_REQUEST_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file", "camera_id", "start"],
                "additionalProperties": False,
                "properties": {
                    "file": {
                        "type": "string",
                        "format": "binary",
                        "description": "The recording: a video file in one of the formats the "
                        "server accepts (TPS_FOOTAGE_FORMATS), at most TPS_FOOTAGE_MAX_BYTES.",
                    },
                    "camera_id": {
                        "type": "string",
                        "pattern": padded(CAMERA_ID_REGEX),
                        "description": "The camera that recorded it: 1-128 letters, digits, '.', "
                        "'_', ':', '/' or '-', starting with a letter or digit.",
                    },
                    "start": {
                        "type": "string",
                        "format": "date-time",
                        "description": "When its first frame was taken: an ISO 8601 time; one "
                        "without a zone is UTC.",
                    },
                },
            }
        }
    },
}
