"""The OpenAPI document says exactly what the server accepts.

The live fuzz (api_tests/reliability/test_fuzz.py) samples this; here the edges are checked
directly: the limits that come from the settings are in the document, reads are documented as
open or keyed as configured, and for any string the JSON Schema engine schemathesis validates
with (jsonschema_rs) agrees with the server's own validators on the patterns (ids, camera ids,
tags, search filters, example ids, the photo search's form fields).
"""

from __future__ import annotations

import jsonschema_rs
from fastapi.exceptions import RequestValidationError
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.datastructures import FormData

from index.search.query_vector import DEFAULT_ALPHA, DEFAULT_BETA, MAX_WEIGHT
from service.app import create_app
from service.image_search_form import form_values
from service.ingest import UploadError, check_fields, validate_ids
from service.metadata import MetadataError, parse_time
from service.schemas import (
    MAX_EXAMPLES,
    MAX_SUGGESTIONS,
    PERSON_ID_REGEX,
    SearchFilters,
    SearchRequest,
)
from service.settings import Settings

# Every whitespace character either dialect knows, and their neighbours, mixed into the text.
EDGES = "\t\n\x0b\x0c\r\x1b\x1c\x1f \x7f\x85\xa0\u1680\u180e\u200a\u200b\u2028\u202f\u3000\ufeff"
TEXT = st.text(alphabet=st.sampled_from(EDGES) | st.characters(codec="utf-8"), max_size=12)
ID_TEXT = st.text(alphabet=st.sampled_from(EDGES + "aZ09._-/%\x00"), max_size=10)


def document(**overrides: object) -> dict:
    # No `with`: the lifespan (model loading) does not run; the document needs none of it.
    app = create_app(Settings(bundle="b", index_dir="i", **overrides))
    return TestClient(app).get("/openapi.json").json()


def test_limits_from_the_settings_are_documented() -> None:
    doc = document(max_query_chars=300, max_top_k=77, max_batch_queries=5, max_files=3)
    models = doc["components"]["schemas"]
    assert models["SearchRequest"]["properties"]["query"]["maxLength"] == 300
    assert models["SearchRequest"]["properties"]["top_k"]["maximum"] == 77
    batch = models["BatchSearchRequest"]["properties"]
    assert batch["queries"]["maxItems"] == 5 and batch["queries"]["items"]["maxLength"] == 300
    form = doc["paths"]["/v1/gallery"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert form["schema"]["properties"]["files"]["maxItems"] == 3


def test_reads_are_documented_open_or_keyed_as_configured() -> None:
    for read_requires_key in (False, True):
        doc = document(read_requires_key=read_requires_key)
        search = doc["paths"]["/v1/search"]["post"]
        assert ({} in search["security"]) is not read_requires_key
        assert ("401" in search["responses"]) is read_requires_key
        upload = doc["paths"]["/v1/gallery"]["post"]
        assert upload["security"] == [{"APIKeyHeader": []}]  # writes always need the key


def test_405_names_every_method_of_the_resource() -> None:
    client = TestClient(create_app(Settings(bundle="b", index_dir="i")))
    reply = client.put("/v1/gallery/some-id")
    assert reply.status_code == 405 and reply.headers["allow"] == "DELETE, GET"


def schema_of(doc: dict, *path: str) -> jsonschema_rs.Validator:
    node = doc
    for key in path:
        node = node[key]
    return jsonschema_rs.validator_for(node)


DOC = document()


@settings(max_examples=400, deadline=None, database=None)
@given(TEXT)
def test_query_pattern_matches_the_validator(text: str) -> None:
    documented = schema_of(DOC, "components", "schemas", "SearchRequest", "properties", "query")
    try:
        SearchRequest(query=text)
        accepted = True
    except ValueError:
        accepted = False
    assert documented.is_valid(text) == accepted


FORM = ("paths", "/v1/gallery", "post", "requestBody", "content", "multipart/form-data", "schema")


def form_accepts(image_id: str | None, person_id: str | None) -> bool:
    """What the upload route does with the raw fields: strip, blank is absent, then validate."""
    try:
        validate_ids(1, (image_id or "").strip() or None, (person_id or "").strip() or None)
    except UploadError:
        return False
    return True


@settings(max_examples=400, deadline=None, database=None)
@given(ID_TEXT)
def test_image_id_pattern_matches_the_validator(text: str) -> None:
    documented = schema_of(DOC, *FORM, "properties", "image_id")
    assert documented.is_valid(text) == form_accepts(text, None)


@settings(max_examples=400, deadline=None, database=None)
@given(TEXT | st.text(alphabet="p ", min_size=120, max_size=140))
def test_person_id_pattern_matches_the_validator(text: str) -> None:
    documented = schema_of(DOC, *FORM, "properties", "person_id")
    assert documented.is_valid(text) == form_accepts(None, text), PERSON_ID_REGEX


def form_field_accepts(name: str, text: str) -> bool:
    """What the upload route does with one metadata field: strip, blank is absent, check."""
    value = text.strip() or None
    try:
        if name == "tags":
            check_fields(1, tags=[text])
        else:
            check_fields(1, **{name: value})
    except UploadError:
        return False
    return True


TAG_TEXT = st.text(alphabet=st.sampled_from(EDGES + "aZ09._-:/,%"), max_size=12)


@settings(max_examples=400, deadline=None, database=None)
@given(ID_TEXT | TAG_TEXT)
def test_camera_id_pattern_matches_the_validator(text: str) -> None:
    documented = schema_of(DOC, *FORM, "properties", "camera_id")
    assert documented.is_valid(text) == form_field_accepts("camera_id", text)


@settings(max_examples=400, deadline=None, database=None)
@given(TAG_TEXT)
def test_tags_pattern_matches_the_validator(text: str) -> None:
    """One tags field; the count limit (16) is beyond a pattern and answered 422."""
    documented = schema_of(DOC, *FORM, "properties", "tags")
    assert documented.is_valid(text) == form_field_accepts("tags", text)


RFC3339 = st.builds(
    "{}T{:02d}:{:02d}:{:02d}{}{}".format,
    st.dates().map(str),
    st.integers(0, 23),
    st.integers(0, 59),
    st.integers(0, 59),
    st.just("") | st.text("0123456789", min_size=1, max_size=6).map(".".__add__),
    st.just("Z")
    | st.builds(
        "{}{:02d}:{:02d}".format, st.sampled_from("+-"), st.integers(0, 23), st.integers(0, 59)
    ),
)


@settings(max_examples=400, deadline=None, database=None)
@given(RFC3339)
def test_every_rfc_3339_time_is_accepted(text: str) -> None:
    """The document says `format: date-time`: any such time is taken, unless it falls outside
    the years 1-9999 once in UTC (a 422 the fuzz configuration expects)."""
    try:
        parse_time(text)
    except MetadataError as err:
        assert "outside the years" in str(err), text


FILTERS = ("components", "schemas", "SearchFilters", "properties")


def filter_accepts(name: str, value: object) -> bool:
    try:
        SearchFilters.model_validate({name: value})
    except ValueError:
        return False
    return True


@settings(max_examples=300, deadline=None, database=None)
@given(
    st.sampled_from(["camera_ids", "person_ids", "tags"]),
    st.lists(ID_TEXT | TAG_TEXT | TEXT, max_size=3),
)
def test_filter_lists_match_the_validator(name: str, values: list[str]) -> None:
    documented = schema_of(DOC, *FILTERS, name)
    assert documented.is_valid(values) == filter_accepts(name, values), values


def test_filters_are_documented_on_both_search_routes() -> None:
    models = DOC["components"]["schemas"]
    for request in ("SearchRequest", "BatchSearchRequest"):
        ref = models[request]["properties"]["filters"]["anyOf"][0]["$ref"]
        assert ref == "#/components/schemas/SearchFilters"
    props = models["SearchFilters"]["properties"]
    assert set(props) == {"camera_ids", "captured_after", "captured_before", "person_ids", "tags"}
    assert models["SearchFilters"]["additionalProperties"] is False
    assert props["captured_after"]["anyOf"][0]["format"] == "date-time"
    hit = models["SearchHit"]["properties"]
    assert {"camera_id", "captured_at"} <= set(hit)
    item = models["GalleryItemDetail"]["properties"]
    assert {"camera_id", "captured_at", "tags"} <= set(item)
    form = schema_of(DOC, *FORM)
    assert form.is_valid({"files": ["x"], "tags": "a,b, c", "captured_at": "2024-05-01T12:00:00Z"})


def test_search_by_example_is_documented() -> None:
    models = DOC["components"]["schemas"]
    props = models["SearchRequest"]["properties"]
    assert "query" not in models["SearchRequest"].get("required", [])
    for name in ("positive_ids", "negative_ids"):
        assert props[name]["type"] == "array" and props[name]["maxItems"] == MAX_EXAMPLES
    for name in ("alpha", "beta"):
        assert props[name]["minimum"] == 0 and props[name]["maximum"] == MAX_WEIGHT
    assert props["alpha"]["default"] == DEFAULT_ALPHA and props["beta"]["default"] == DEFAULT_BETA
    assert props["exclude_examples"]["default"] is True and props["suggest"]["default"] is False
    assert props["suggest_count"]["maximum"] == MAX_SUGGESTIONS
    reply = models["SearchResponse"]["properties"]["suggestions"]["anyOf"][0]
    assert reply["items"]["$ref"] == "#/components/schemas/SuggestedPhrase"
    image = DOC["paths"]["/v1/search/image"]["post"]
    body = image["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["required"] == ["image"] and body["additionalProperties"] is False
    assert set(body["properties"]) == {"image", *props}
    assert {"404", "413", "415", "422"} <= set(image["responses"])
    assert "404" in DOC["paths"]["/v1/search"]["post"]["responses"]


def example_ids_accepted(values: list[str]) -> bool:
    try:
        SearchRequest(query="x", positive_ids=values)
    except ValueError:
        return False
    return True


@settings(max_examples=300, deadline=None, database=None)
@given(st.lists(ID_TEXT | TEXT | st.text(alphabet="ab", min_size=500, max_size=520), max_size=2))
def test_example_id_pattern_matches_the_validator(values: list[str]) -> None:
    documented = schema_of(
        DOC, "components", "schemas", "SearchRequest", "properties", "positive_ids"
    )
    assert documented.is_valid(values) == example_ids_accepted(values), values


IMAGE_FORM = ("paths", "/v1/search/image", "post", "requestBody", "content",
              "multipart/form-data", "schema", "properties")  # fmt: skip
NUMBERS = st.text(alphabet=st.sampled_from(EDGES + "0123456789.-+e"), max_size=14)


def image_form_accepts(name: str, text: str) -> bool:
    try:
        form_values(FormData([(name, text)]))
    except RequestValidationError:
        return False
    return True


@settings(max_examples=300, deadline=None, database=None)
@given(
    st.sampled_from(["top_k", "alpha", "beta", "unique_persons", "suggest", "suggest_count"]),
    NUMBERS | st.sampled_from(["true", "false", " true ", "True", "1"]),
)
def test_image_form_patterns_match_the_parser(name: str, text: str) -> None:
    """Each form field's documented pattern accepts exactly what the form parser reads (the
    range checks after it are 422s the fuzz configuration expects)."""
    documented = schema_of(DOC, *IMAGE_FORM, name)
    assert documented.is_valid(text) == image_form_accepts(name, text), text


@settings(max_examples=300, deadline=None, database=None)
@given(ID_TEXT | TEXT | st.text(alphabet="ab ", min_size=505, max_size=520))
def test_image_form_ids_match_the_parser(text: str) -> None:
    documented = schema_of(DOC, *IMAGE_FORM, "positive_ids")
    values = form_values(FormData([("positive_ids", text)])).get("positive_ids", [])
    assert documented.is_valid([text]) == example_ids_accepted(values), text
