"""Interactive search on the synthetic set: relevance feedback, re-identification, and
suggestions for vague descriptions, with the tiny model trained for 3 epochs.

A simulated operator searches each caption, marks the highest-ranked image of the right person
in the top 10 as "more like this" and the wrong ones above it as "not this person", and searches
again (one round, then a second one the same way). Scores are R1/R5/mAP of the images of that
person the operator has not marked yet, with every marked image left out of every ranking
compared, so text alone, the marked image alone (the "more like this" image as the only query,
no words) and feedback are judged on the same images. ``alpha`` and ``beta`` are chosen on the
validation split (best one-round mAP over a grid) and the test split is scored once with them,
and once with the service's defaults, which were fixed before. A noisy operator then marks, on
a stated share of the queries (seeded), the highest-ranked image of another person in the top 10
as "more like this" instead: the look-alike that fooled them (the right image stays unmarked, a
target). Then: search by one known image alone (cross-view re-identification), and, for the
vague captions only, a user who appends the first suggestion that is true of the person sought
(service/suggest.py) against one who appends a true attribute phrase picked at random.

The query vector is index/search/query_vector.py's, the ranking the built index's own search, the
suggestions the service's. JSON on stdout and in OUT/feedback.json.

    python -m bench.feedback            # the full set (about 30 minutes on 2 quiet cores)
    python -m bench.feedback --quick    # 240 identities, one epoch (minutes)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np

from bench.synthetic_truth import is_true, load_identities, vague_captions
from bundle.encoders import Bundle
from index.ingest.add import ingest
from index.ingest.sources import from_dataset
from index.search.cpu_features import detect
from index.search.query_vector import DEFAULT_ALPHA, DEFAULT_BETA, combine
from index.store import GalleryIndex
from service.suggest import SUGGEST_DEPTH, suggest, unsaid, with_phrase
from service.vocabulary import VOCABULARY
from support.builders import make_synthetic, make_trained_bundle

TOP = 10  # what the operator looks at
ALPHAS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)  # up to the service's MAX_WEIGHT (10)
BETAS = (0.0, 0.25, 0.5, 1.0)
SUGGESTIONS = 5
MISTAKE_RATES = (0.1, 0.25)  # shares of queries on which the noisy operator marks a look-alike


@dataclass(frozen=True)
class Gallery:
    store: GalleryIndex
    ids: list[str]
    person: dict[str, str]  # image id → person id
    by_person: dict[str, list[str]]

    def rank(self, queries: np.ndarray) -> list[list[str]]:
        """Every gallery image per query row, best first (the index's own exact search)."""
        return [[h.image_id for h in hits] for hits in self.store.search(queries, len(self.ids))]

    def vectors(self, ids: Sequence[str]) -> np.ndarray:
        found = self.store.vectors(list(ids))
        return np.stack([found[i] for i in ids]) if ids else np.zeros((0, self.store.dim), "f4")


def metrics(ranking: Sequence[str], targets: set[str]) -> tuple[float, float, float]:
    """(R1, R5, AP) of one ranked list against the images that count as right."""
    hits, precision = 0, []
    for rank, image in enumerate(ranking, start=1):
        if image in targets:
            hits += 1
            precision.append(hits / rank)
    first = next((n for n, image in enumerate(ranking) if image in targets), len(ranking))
    return float(first < 1), float(first < 5), float(np.mean(precision)) if precision else 0.0


def summary(rows: list[tuple[float, float, float]]) -> dict[str, float]:
    a = np.asarray(rows, dtype=np.float64).reshape(-1, 3) * 100
    means = a.mean(axis=0) if len(a) else np.zeros(3)
    return {"R1": round(float(means[0]), 2), "R5": round(float(means[1]), 2),
            "mAP": round(float(means[2]), 2)}  # fmt: skip


def without(ranking: Sequence[str], drop: set[str]) -> list[str]:
    return [i for i in ranking if i not in drop]


def mark(
    ranking: Sequence[str], person: str, gallery: Gallery, mistaken: bool = False
) -> tuple[str, list[str]] | None:
    """The operator's marks on the top results: (positive, negatives above the right image), or
    None when no image of the person is in the top. ``mistaken``: the positive is the
    highest-ranked image of another person in the top instead (the look-alike), and is not also
    a negative; the right image stays unmarked."""
    for n, image in enumerate(ranking[:TOP]):
        if gallery.person[image] == person:
            negatives = list(ranking[:n])
            if not mistaken:
                return image, negatives
            wrong = [i for i in ranking[:TOP] if gallery.person[i] != person]
            if not wrong:
                return image, negatives
            return wrong[0], [i for i in negatives if i != wrong[0]]
    return None


@dataclass
class Query:
    text: str
    person: str
    vector: np.ndarray


def feedback_rounds(
    gallery: Gallery,
    queries: list[Query],
    alpha: float,
    beta: float,
    rounds: int = 2,
    mistakes: frozenset[int] = frozenset(),
) -> dict:
    """Text, then ``rounds`` rounds of marking and searching again; beside each round the
    images marked "more like this" alone as the query. ``mistakes``: indices of the queries on
    which the operator's first "more like this" is a look-alike (see :func:`mark`); those are
    judged on the same images as without the mistake (the right image passed over is left out
    of every ranking too), so the rows of every mistake rate compare."""
    text_rank = gallery.rank(np.stack([q.vector for q in queries]))
    one: dict[str, list] = {"text": [], "images_only": [], "round1": []}
    two: dict[str, list] = {"text": [], "round1": [], "images_only": [], "round2": []}
    for n, (query, ranked) in enumerate(zip(queries, text_rank, strict=True)):
        right = mark(ranked, query.person, gallery)
        own = set(gallery.by_person[query.person])
        if right is None or len(own) < 2:
            continue
        marked = mark(ranked, query.person, gallery, mistaken=True) if n in mistakes else right
        assert marked is not None
        pos, neg = [marked[0]], marked[1]
        seen = {*pos, *neg, right[0], *right[1]}
        vector1 = combine(query.vector, gallery.vectors(pos), gallery.vectors(neg), alpha, beta)
        ranked1 = without(gallery.rank(vector1[None])[0], seen)
        targets = own - seen
        one["text"].append(metrics(without(ranked, seen), targets))
        one["images_only"].append(metrics(_images_only(gallery, pos, seen), targets))
        one["round1"].append(metrics(ranked1, targets))
        marked2 = mark(ranked1, query.person, gallery)
        if rounds < 2 or marked2 is None or len(targets) < 2:
            continue
        pos2, neg2 = [*pos, marked2[0]], [*neg, *marked2[1]]
        seen2 = {*pos2, *neg2}
        vector2 = combine(query.vector, gallery.vectors(pos2), gallery.vectors(neg2), alpha, beta)
        ranked2 = gallery.rank(vector2[None])[0]
        targets2 = own - seen2
        for name, ranking in (("text", ranked), ("round1", ranked1), ("round2", ranked2)):
            two[name].append(metrics(without(ranking, seen2), targets2))
        two["images_only"].append(metrics(_images_only(gallery, pos2, seen2), targets2))
    result = {
        "queries": len(queries),
        "one_round": {"queries": len(one["text"])} | {k: summary(v) for k, v in one.items()},
    }
    if rounds >= 2:
        result["two_rounds"] = {"queries": len(two["text"])} | {
            k: summary(v) for k, v in two.items()
        }
    return result


def _images_only(gallery: Gallery, positives: list[str], seen: set[str]) -> list[str]:
    """The ranking of the "more like this" images alone as the query (no words, no negatives)."""
    return without(gallery.rank(combine(None, gallery.vectors(positives))[None])[0], seen)


def noisy_operator(
    gallery: Gallery,
    queries: list[Query],
    alpha: float,
    beta: float,
    seed: int,
    rates: Sequence[float] = MISTAKE_RATES,
) -> list[dict]:
    """One round per mistake rate, on the same queries as the operator who never errs: that
    share of them (drawn with ``seed``) gets a look-alike as its "more like this"."""
    ranked = gallery.rank(np.stack([q.vector for q in queries]))
    markable = [
        n
        for n, (query, ranking) in enumerate(zip(queries, ranked, strict=True))
        if mark(ranking, query.person, gallery) is not None
        and len(gallery.by_person[query.person]) >= 2
    ]
    rows = []
    for rate in rates:
        mistakes = frozenset(random.Random(seed).sample(markable, round(rate * len(markable))))
        one = feedback_rounds(gallery, queries, alpha, beta, 1, mistakes)["one_round"]
        rows.append({"mistake_rate": rate, "mistaken_queries": len(mistakes), **one})
    return rows


def reidentification(gallery: Gallery) -> dict:
    """Search by one known image alone; the person's other images are the targets."""
    probes = [i for i in gallery.ids if len(gallery.by_person[gallery.person[i]]) >= 2]
    vectors = np.stack([combine(None, gallery.vectors([i])) for i in probes])
    rows = []
    for probe, ranked in zip(probes, gallery.rank(vectors), strict=True):
        targets = set(gallery.by_person[gallery.person[probe]]) - {probe}
        rows.append(metrics(without(ranked, {probe}), targets))
    per_person = np.mean([len(v) for v in gallery.by_person.values()])
    return {"probes": len(probes), **summary(rows),
            "R1_chance": round(100 * (per_person - 1) / (len(gallery.ids) - 1), 2)}  # fmt: skip


def scored(gallery: Gallery, queries: list[Query], rankings: list[list[str]]) -> list:
    """(R1, R5, AP) per query, every image of its person counting as right."""
    return [
        metrics(ranked, set(gallery.by_person[q.person]))
        for q, ranked in zip(queries, rankings, strict=True)
    ]


def suggestion_user(
    gallery: Gallery, bundle: Bundle, vague: list[Query], identities: dict, seed: int
) -> dict:
    """Vague captions: R1 (the top image shows the person) before and after appending the first
    true suggestion, and after appending a random true phrase instead; also over only the
    queries where some suggestion was true (the others are left as they were)."""
    rng = random.Random(seed)
    followed, randomised, offered_true = [], [], []
    ranked0 = gallery.rank(np.stack([q.vector for q in vague]))
    for query, ranked in zip(vague, ranked0, strict=True):
        who = identities[query.person]
        top = gallery.vectors(ranked[:SUGGEST_DEPTH])
        offered = suggest(bundle.encode_text, query.text, None, query.vector, top, SUGGESTIONS)
        chosen = next((s.query for s in offered if is_true(_phrase(s.phrase), who)), None)
        offered_true.append(chosen is not None)
        followed.append(chosen or query.text)
        true_phrases = [p for p in unsaid(query.text) if is_true(p, who)]
        pick = rng.choice(true_phrases).text if true_phrases else None
        randomised.append(with_phrase(query.text, pick) if pick else query.text)
    rows = {"text": scored(gallery, vague, ranked0)}
    for name, texts in (("suggested", followed), ("random_true_phrase", randomised)):
        rows[name] = scored(gallery, vague, gallery.rank(bundle.encode_text(texts)))
    subset = [n for n, offered in enumerate(offered_true) if offered]
    return {
        "vague_queries": len(vague),
        "suggestions_shown": SUGGESTIONS,
        "a_true_suggestion_offered": len(subset),
        **{name: summary(v) for name, v in rows.items()},
        "where_a_true_suggestion_was_offered": {
            name: summary([v[n] for n in subset]) for name, v in rows.items()
        },
    }


def _phrase(text: str):
    return next(p for p in VOCABULARY if p.text == text)


def build_gallery(bundle: Bundle, root: Path, out: Path, split: str = "test") -> Gallery:
    entries = from_dataset("cuhk-pedes", root, split)
    store = GalleryIndex.create(out, bundle.fingerprint, bundle.dim, "flat", "never")
    ingest(store, bundle, entries, workers=0, progress=False)
    person = {e.image_id: str(e.person_id) for e in entries}
    by_person: dict[str, list[str]] = {}
    for image, pid in person.items():
        by_person.setdefault(pid, []).append(image)
    return Gallery(store, [e.image_id for e in entries], person, by_person)


def split_queries(
    bundle: Bundle, root: Path, split: str = "test"
) -> tuple[list[Query], list[tuple[str, str]]]:
    entries = json.loads((root / "reid_raw.json").read_text())
    pairs = [(e["file_path"], c, str(e["id"])) for e in entries if e["split"] == split
             for c in e["captions"]]  # fmt: skip
    vectors = np.concatenate(
        [bundle.encode_text([c for _, c, _ in pairs[i : i + 64]]) for i in range(0, len(pairs), 64)]
    )
    queries = [Query(c, p, v) for (_, c, p), v in zip(pairs, vectors, strict=True)]
    return queries, [(f, c) for f, c, _ in pairs]


def sweep(
    gallery: Gallery,
    queries: list[Query],
    alphas: Sequence[float] = ALPHAS,
    betas: Sequence[float] = BETAS,
) -> list[dict]:
    table = []
    for alpha in alphas:
        for beta in betas:
            one = feedback_rounds(gallery, queries, alpha, beta, rounds=1)["one_round"]
            table.append({"alpha": alpha, "beta": beta, **one["round1"]})
    return table


def choose(table: list[dict]) -> dict:
    """The grid cell with the best one-round mAP (then R1, then the smaller weights)."""
    return max(table, key=lambda row: (row["mAP"], row["R1"], -row["alpha"], -row["beta"]))


def validation_choice(
    bundle: Bundle,
    data: Path,
    work: Path,
    alphas: Sequence[float] = ALPHAS,
    betas: Sequence[float] = BETAS,
) -> dict:
    """alpha and beta chosen on the validation split: the test split is not looked at."""
    gallery = build_gallery(bundle, data, work, "val")
    queries, _ = split_queries(bundle, data, "val")
    table = sweep(gallery, queries, alphas, betas)
    gallery.store.close()
    best = choose(table)
    return {
        "split": "val",
        "ids": len(gallery.by_person),
        "captions": len(queries),
        "chosen_by": "one-round mAP",
        "alpha": best["alpha"],
        "beta": best["beta"],
        "sweep_one_round": table,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="synthetic set (made when missing)")
    parser.add_argument("--runs", type=Path, help="training run folder (reused when present)")
    parser.add_argument("--out", type=Path, default=Path("out/bench"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="240 identities, 1 epoch")
    args = parser.parse_args(argv)
    size = (240, 4, 0.2, 1) if args.quick else (1000, 4, 0.1, 3)
    ids, per_id, held_out, epochs = size
    name = "feedback-quick" if args.quick else "feedback"
    data = args.data or Path("data") / f"synthetic-{name}"
    runs = args.runs or Path("runs") / name

    started = time.monotonic()
    make_synthetic(data, ids=ids, images_per_id=per_id, seed=args.seed, held_out=held_out)
    bundle_dir = make_trained_bundle(data, runs, epochs=epochs)
    bundle = Bundle(bundle_dir, device="cpu")
    trained_s = time.monotonic() - started
    identities = load_identities(data)
    with tempfile.TemporaryDirectory(prefix="feedback-index-") as tmp:
        chosen = validation_choice(bundle, data, Path(tmp) / "val")
        alpha, beta = chosen["alpha"], chosen["beta"]
        gallery = build_gallery(bundle, data, Path(tmp) / "test")
        queries, sources = split_queries(bundle, data)
        vague_set = vague_captions(data, args.seed)
        vague = [q for q, s in zip(queries, sources, strict=True) if s in vague_set]
        result = {
            "benchmark": "interactive_search",
            "data": {"root": str(data), "test_ids": len(gallery.by_person),
                     "gallery_images": len(gallery.ids), "captions": len(queries),
                     "vague_captions": len(vague)},
            "model": {"bundle": str(bundle_dir), "epochs": epochs,
                      "fingerprint": bundle.fingerprint[:12]},
            "cpu": f"{detect().model}, {detect().cores} cores",
            "validation": chosen,
            "alpha": alpha,
            "beta": beta,
            "feedback": feedback_rounds(gallery, queries, alpha, beta),
            "feedback_service_defaults": {
                "alpha": DEFAULT_ALPHA, "beta": DEFAULT_BETA,
                **feedback_rounds(gallery, queries, DEFAULT_ALPHA, DEFAULT_BETA, rounds=1)},
            "noisy_operator": noisy_operator(gallery, queries, alpha, beta, args.seed),
            "reidentification": reidentification(gallery),
            "suggestions": suggestion_user(gallery, bundle, vague, identities, args.seed),
        }  # fmt: skip
        gallery.store.close()
    result["seconds"] = round(time.monotonic() - started, 1)
    result["seconds_training_and_data"] = round(trained_s, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "feedback.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
