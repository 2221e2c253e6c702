"""bench.feedback's protocol without training a model: the operator's marks (right and
mistaken), the choice of alpha/beta on the validation split, and the noisy-operator rows (an
untrained bundle ranks poorly, but the protocol does not depend on how well it ranks)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.feedback import (
    ALPHAS,
    BETAS,
    Gallery,
    build_gallery,
    choose,
    feedback_rounds,
    mark,
    noisy_operator,
    split_queries,
    validation_choice,
)
from bundle.encoders import Bundle


def _people(ranking: list[str]) -> Gallery:
    person = {image: image[0] for image in ranking}
    by_person: dict[str, list[str]] = {}
    for image, who in person.items():
        by_person.setdefault(who, []).append(image)
    return Gallery(None, ranking, person, by_person)  # type: ignore[arg-type]  # marks only


def test_the_operator_marks_the_right_image_or_a_look_alike() -> None:
    ranking = ["b1", "c1", "a1", "b2", "a2"]
    gallery = _people(ranking)
    assert mark(ranking, "a", gallery) == ("a1", ["b1", "c1"])
    # Mistaken: the highest-ranked image of someone else is "more like this", not also "not
    # this person"; the right image is left unmarked.
    assert mark(ranking, "a", gallery, mistaken=True) == ("b1", ["c1"])
    assert mark(["a1", "b1"], "a", _people(["a1", "b1"]), mistaken=True) == ("b1", [])
    assert mark(ranking, "d", gallery) is None


def test_alpha_and_beta_are_the_best_validation_cell() -> None:
    table = [
        {"alpha": 1.0, "beta": 0.25, "R1": 10.0, "mAP": 20.0},
        {"alpha": 2.0, "beta": 0.0, "R1": 12.0, "mAP": 21.0},
        {"alpha": 4.0, "beta": 0.0, "R1": 12.0, "mAP": 21.0},
    ]
    assert choose(table) == table[1]  # a tie goes to the smaller weights


@pytest.fixture(scope="module")
def bundle(random_bundle: Path) -> Bundle:
    return Bundle(random_bundle, device="cpu")


def test_val_chooses_and_a_noisy_operator_errs_at_its_rate(
    bundle: Bundle, synthetic_root: Path, tmp_path: Path
) -> None:
    chosen = validation_choice(bundle, synthetic_root, tmp_path / "val", ALPHAS[1:3], BETAS[:2])
    assert chosen["split"] == "val" and len(chosen["sweep_one_round"]) == 4
    best = choose(chosen["sweep_one_round"])
    assert chosen["captions"] > 0 and (chosen["alpha"], chosen["beta"]) == (
        best["alpha"],
        best["beta"],
    )
    gallery = build_gallery(bundle, synthetic_root, tmp_path / "test")
    queries, _ = split_queries(bundle, synthetic_root)
    clean = feedback_rounds(gallery, queries, 1.0, 0.25)["one_round"]
    assert set(clean) == {"queries", "text", "images_only", "round1"} and clean["queries"] > 0
    never, always = noisy_operator(gallery, queries, 1.0, 0.25, seed=0, rates=(0.0, 1.0))
    assert never["mistaken_queries"] == 0 and {**never, "mistake_rate": None} == {
        **clean,
        "mistaken_queries": 0,
        "mistake_rate": None,
    }
    assert always["queries"] == always["mistaken_queries"] == clean["queries"]
    gallery.store.close()
