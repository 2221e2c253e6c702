"""Gallery metadata as the API reads it: times, camera ids, tags, and search filters."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from index.filters import GalleryFilter
from service.ingest import UploadError, check_fields
from service.metadata import MetadataError, as_utc, parse_time, split_tags
from service.schemas import SearchFilters, SearchRequest

NOON = datetime(2024, 5, 1, 12, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    "text",
    [
        "2024-05-01T12:00:00Z",
        "2024-05-01t12:00:00z",
        "2024-05-01T12:00:00+00:00",
        "2024-05-01T14:00:00+02:00",
        "2024-05-01T12:00:00",  # no zone: UTC
        "2024-05-01 12:00",
        " 2024-05-01T12:00:00.000Z ",
    ],
)
def test_times_are_iso_8601_and_naive_means_utc(text: str) -> None:
    assert parse_time(text) == NOON
    assert as_utc(parse_time(text)) == datetime(2024, 5, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    ["", "yesterday", "2024-13-01", "2024-01-01T12:99:00Z", "1714564800", "0001-01-01T00:00+01:00"],
)
def test_bad_times_name_the_field(text: str) -> None:
    with pytest.raises(MetadataError, match=r"^captured_at "):
        parse_time(text, "captured_at")


def test_tags_are_comma_separated_or_repeated() -> None:
    assert split_tags(["a, b", "c", " ,b,, ", ""]) == ("a", "b", "c")
    assert split_tags([]) == ()
    with pytest.raises(MetadataError, match="tags must each be"):
        split_tags(["ok, not ok"])
    with pytest.raises(MetadataError, match="at most 16 tags"):
        split_tags([",".join(f"t{i}" for i in range(17))])


def test_upload_fields_are_checked_and_name_the_bad_one() -> None:
    fields = check_fields(
        2, person_id="p1", camera_id="lobby/1", captured_at="2024-05-01T12:00Z", tags=["x,y"]
    )
    assert (fields.camera_id, fields.captured_at, fields.tags) == ("lobby/1", NOON, ("x", "y"))
    for kwargs, needle in [
        ({"camera_id": "lobby 1"}, "camera_id must be"),
        ({"captured_at": "soon"}, "captured_at must be"),
        ({"tags": ["a b"]}, "tags must each be"),
    ]:
        with pytest.raises(UploadError, match=needle) as err:
            check_fields(1, **kwargs)
        assert err.value.status == 422


def test_a_search_filter_becomes_the_stores_filter() -> None:
    body = SearchRequest.model_validate(
        {
            "query": "a person",
            "filters": {
                "camera_ids": ["lobby"],
                "captured_after": "2024-05-01T12:00:00Z",
                "captured_before": "2024-05-01T13:00:00",
                "person_ids": ["p 1"],
                "tags": ["red"],
            },
        }
    )
    assert body.filters is not None
    assert body.filters.gallery_filter() == GalleryFilter(
        camera_ids=("lobby",),
        captured_after=NOON,
        captured_before=NOON + 3600,
        person_ids=("p 1",),
        tags=("red",),
    )
    assert SearchFilters.model_validate({}).gallery_filter() is None
    assert SearchFilters.model_validate({"tags": None}).gallery_filter() is None


@pytest.mark.parametrize(
    ("filters", "needle"),
    [
        ({"cameras": ["x"]}, "filters.cameras is not a filter"),
        ({"camera_ids": "lobby"}, "filters.camera_ids must be a list of strings"),
        ({"camera_ids": [1]}, "filters.camera_ids must be a list of strings"),
        ({"camera_ids": []}, "filters.camera_ids is empty"),
        ({"camera_ids": ["no spaces"]}, r"filters.camera_ids\[0\] must be"),
        ({"person_ids": ["ok", "\x00"]}, r"filters.person_ids\[1\] must be"),
        ({"tags": ["a,b"]}, r"filters.tags\[0\] must each be"),
        ({"tags": [f"t{i}" for i in range(17)]}, "filters.tags: at most 16"),
        ({"captured_after": 1714564800}, "filters.captured_after must be a string"),
        ({"captured_before": "noon"}, "filters.captured_before must be an ISO 8601 time"),
        (
            {"captured_after": "2024-05-02", "captured_before": "2024-05-01"},
            "filters.captured_after .* is later than filters.captured_before",
        ),
        ([], "filters must be an object"),
    ],
)
def test_bad_filters_are_refused_with_the_field_named(filters: object, needle: str) -> None:
    with pytest.raises(ValidationError, match=needle):
        SearchRequest.model_validate({"query": "a person", "filters": filters})
