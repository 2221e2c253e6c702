"""Request models: what is refused before a route runs."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from service.schemas import BatchSearchRequest, SearchRequest


def test_query_is_kept_as_sent_and_defaults_apply() -> None:
    # As sent: the length limit counts what the client sent; the tokenizer drops the spaces.
    req = SearchRequest(query="  a man in a green jacket  ")
    assert req.query == "  a man in a green jacket  "
    assert req.top_k == 10
    assert req.unique_persons is False


@pytest.mark.parametrize("query", ["", "   ", "\n\t"])
def test_empty_query_is_refused_with_a_message(query: str) -> None:
    with pytest.raises(ValidationError, match="the query is empty"):
        SearchRequest(query=query)


@pytest.mark.parametrize("top_k", [0, -3])
def test_top_k_must_be_positive(top_k: int) -> None:
    with pytest.raises(ValidationError):
        SearchRequest(query="a person", top_k=top_k)


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError):
        SearchRequest.model_validate({"query": "a person", "topk": 5})


def test_batch_needs_non_empty_queries() -> None:
    with pytest.raises(ValidationError):
        BatchSearchRequest(queries=[])
    with pytest.raises(ValidationError, match="the query is empty"):
        BatchSearchRequest(queries=["a red coat", " "])
    assert BatchSearchRequest(queries=[" x "]).queries == [" x "]


@pytest.mark.parametrize(
    "body",
    ['{"query": "a", "top_k": "5"}', '{"query": "a", "unique_persons": 0}', '{"query": 5}'],
)
def test_types_are_strict(body: str) -> None:
    """What the OpenAPI document calls invalid is refused, not coerced."""
    with pytest.raises(ValidationError):
        SearchRequest.model_validate_json(body)
