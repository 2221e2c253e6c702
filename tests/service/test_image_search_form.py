"""The multipart form of /v1/search/image read as the JSON route's fields."""

from __future__ import annotations

import pytest
from fastapi.exceptions import RequestValidationError
from starlette.datastructures import FormData

from service.image_search_form import form_values


def form(*pairs: tuple[str, str]) -> FormData:
    return FormData(list(pairs))


def test_values_are_spelled_as_in_json() -> None:
    values = form_values(
        form(
            ("query", "  a man in a grey coat "),
            ("top_k", "7"),
            ("unique_persons", "true"),
            ("alpha", "0.5"),
            ("beta", " 2 "),
            ("exclude_examples", "false"),
            ("suggest", "true"),
            ("suggest_count", "3"),
            ("positive_ids", "cam1/a.jpg"),
            ("positive_ids", "cam1/b.jpg"),
            ("negative_ids", "c"),
            ("filters", '{"camera_ids": ["lobby-1"]}'),
        )
    )
    assert values == {
        "query": "a man in a grey coat",
        "top_k": 7,
        "unique_persons": True,
        "alpha": 0.5,
        "beta": 2.0,
        "exclude_examples": False,
        "suggest": True,
        "suggest_count": 3,
        "positive_ids": ["cam1/a.jpg", "cam1/b.jpg"],
        "negative_ids": ["c"],
        "filters": {"camera_ids": ["lobby-1"]},
    }


def test_blank_fields_count_as_not_sent() -> None:
    assert form_values(form(("query", "  "), ("top_k", ""), ("positive_ids", " "))) == {}


@pytest.mark.parametrize(
    ("pairs", "says"),
    [
        ((("top_k", "ten"),), "top_k' must be a whole number"),
        ((("top_k", "-1"),), "top_k' must be a whole number"),
        ((("alpha", "1e3"),), "alpha' must be a number like 0.5"),
        ((("suggest", "yes"),), "suggest' must be true or false"),
        ((("top_k", "1"), ("top_k", "2")), "send the form field 'top_k' once"),
        ((("filters", "{not json"),), "filters must be a JSON object"),
        ((("colour", "red"),), "unknown form field(s): colour"),
    ],
)
def test_bad_fields_are_named(pairs: tuple[tuple[str, str], ...], says: str) -> None:
    with pytest.raises(RequestValidationError) as caught:
        form_values(form(*pairs))
    assert says in caught.value.errors()[0]["msg"]
