"""The OpenAPI document says exactly what the server accepts.

The live fuzz (api_tests/reliability/test_fuzz.py) samples this; here the edges are checked
directly: the limits that come from the settings are in the document, reads are documented as
open or keyed as configured, and for any string the JSON Schema engine schemathesis validates
with (jsonschema_rs) agrees with the server's own validators on the patterns.
"""

from __future__ import annotations

import jsonschema_rs
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from service.app import create_app
from service.ingest import UploadError, validate_ids
from service.schemas import PERSON_ID_REGEX, SearchRequest
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
