"""The synthetic pedestrian generator: CUHK-PEDES layout, splits, images, determinism, captions."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from training.synthetic import generate, main
from training.synthetic.attributes import COLOURS, HAIR_COLOURS, Identity, sample_identities
from training.synthetic.captions import make_captions

IDS, PER_ID, SEED = 12, 3, 7
REPO = Path(__file__).resolve().parents[3]

# Written out here rather than imported, so the test does not share the generator's tables.
COLOUR_WORDS = {name: name for name in [*COLOURS, *HAIR_COLOURS]} | {
    "gray": "grey",
    "blonde": "blond",
}
HEAD_NOUNS = {
    "upper": {
        "t-shirt",
        "tee",
        "shirt",
        "jacket",
        "coat",
        "overcoat",
        "hoodie",
        "sweatshirt",
        "top",
        "sweater",
        "jumper",
        "pullover",
        "stripes",
        "checks",
    },
    "lower": {"trousers", "pants", "slacks", "jeans", "shorts", "skirt"},
    "shoes": {"shoes", "sneakers", "trainers"},
    "hair": {"hair"},
    "bag": {"backpack", "rucksack", "handbag", "purse", "bag"},
    "hat": {"cap", "beanie", "hat"},
}
NOUN_ITEM = {noun: item for item, nouns in HEAD_NOUNS.items() for noun in nouns}
FEMALE_WORDS = {"woman", "lady", "girl", "female", "she", "her"}
MALE_WORDS = {"man", "guy", "male", "gentleman", "he", "his"}
GLASSES_WORDS = {"glasses", "eyeglasses", "spectacles"}
ENTRY_KEYS = {"split", "captions", "file_path", "id", "processed_tokens"}


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+(?:-[a-z]+)*", text.lower())


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _item_colours(person: dict) -> dict[str, set[str]]:
    colours = {
        "upper": {person["upper_colour"], person["pattern_colour"]} - {None},
        "lower": {person["lower_colour"]},
        "shoes": {person["shoes_colour"]},
        "hair": {person["hair_colour"]} - {None},
        "bag": {person["bag_colour"]} - {None},
        "hat": {person["hat_colour"]} - {None},
    }
    return {item: c for item, c in colours.items() if c}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("synth")
    return root, generate(root, IDS, PER_ID, SEED)


@pytest.fixture(scope="module")
def entries(dataset: tuple[Path, dict]) -> list[dict]:
    return json.loads((dataset[0] / "reid_raw.json").read_text())


@pytest.fixture(scope="module")
def people(dataset: tuple[Path, dict]) -> dict[str, dict]:
    return json.loads((dataset[0] / "attributes.json").read_text())


def _views(people: dict[str, dict]) -> dict[str, dict]:
    return {img["file_path"]: img for p in people.values() for img in p["images"]}


def test_annotations_follow_the_cuhk_pedes_schema(dataset, entries):
    root, summary = dataset
    assert isinstance(entries, list)
    assert len(entries) == IDS * PER_ID == summary["images"]
    for e in entries:
        assert set(e) == ENTRY_KEYS
        assert e["split"] in {"train", "val", "test"}
        assert isinstance(e["id"], int) and not isinstance(e["id"], bool) and e["id"] >= 1
        assert isinstance(e["captions"], list) and len(e["captions"]) == 2
        assert all(isinstance(c, str) and len(_words(c)) >= 2 for c in e["captions"])
        assert e["processed_tokens"] == []
        path = e["file_path"]
        assert isinstance(path, str) and not Path(path).is_absolute() and path.endswith(".jpg")
        assert (root / "imgs" / path).is_file()
    assert len({e["file_path"] for e in entries}) == len(entries)
    assert entries[0]["file_path"] == "p0001/p0001_01.jpg"
    assert summary["captions"] == 2 * len(entries)


def test_splits_are_disjoint_by_identity(dataset, entries):
    _, summary = dataset
    split_of: dict[int, set[str]] = {}
    for e in entries:
        split_of.setdefault(e["id"], set()).add(e["split"])
    assert all(len(s) == 1 for s in split_of.values())
    assert set(split_of) == set(range(1, IDS + 1))
    ids_per_split = {s: {i for i, v in split_of.items() if v == {s}} for s in summary["splits"]}
    assert all(ids_per_split[s] for s in ("train", "val", "test"))
    for split, counts in summary["splits"].items():
        assert counts["ids"] == len(ids_per_split[split])
        assert counts["images"] == sum(e["split"] == split for e in entries)


def test_images_are_jpegs_of_the_requested_size(dataset, entries):
    root, _ = dataset
    for e in entries:
        with Image.open(root / "imgs" / e["file_path"]) as img:
            assert img.format == "JPEG"
            assert img.mode == "RGB"
            assert img.size == (128, 384)  # PIL reports width, height


def test_cli_writes_a_non_default_size_and_prints_a_summary(tmp_path, capsys):
    out = tmp_path / "small"
    args = ["--out", str(out), "--ids", "4", "--images-per-id", "2", "--seed", "1"]
    assert main([*args, "--size", "96x48"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"ids", "images", "captions", "splits", "seconds", "images_per_s"} <= set(summary)
    assert summary["ids"] == 4 and summary["images"] == 8 and summary["captions"] == 16
    images = sorted((out / "imgs").rglob("*.jpg"))
    assert len(images) == 8
    for path in images:
        with Image.open(path) as img:
            assert img.size == (48, 96)


def test_same_seed_gives_identical_bytes_with_any_worker_count(dataset, tmp_path):
    root, _ = dataset
    again = tmp_path / "again"
    generate(again, IDS, PER_ID, SEED, workers=2)
    reference = _hashes(root)
    assert len(reference) == IDS * PER_ID + 2
    assert _hashes(again) == reference


def test_a_different_seed_gives_a_different_data_set(dataset, tmp_path):
    root, _ = dataset
    other = tmp_path / "other"
    generate(other, IDS, PER_ID, SEED + 1)
    a, b = _hashes(root), _hashes(other)
    assert a.keys() == b.keys()
    assert a["reid_raw.json"] != b["reid_raw.json"]
    differing = [k for k in a if k.endswith(".jpg") and a[k] != b[k]]
    assert len(differing) == IDS * PER_ID


def test_captions_only_name_colours_of_the_item_they_describe(entries, people):
    views = _views(people)
    checked = 0
    for e in entries:
        person = people[str(e["id"])]
        item_colours = _item_colours(person)
        allowed = set().union(*item_colours.values())
        for caption in e["captions"]:
            words = _words(caption)
            for i, word in enumerate(words):
                colour = COLOUR_WORDS.get(word)
                if colour is None:
                    continue
                assert colour in allowed, (caption, sorted(allowed))
                noun = next((w for w in words[i + 1 :] if w in NOUN_ITEM), None)
                assert noun is not None, caption
                assert colour in item_colours.get(NOUN_ITEM[noun], set()), (caption, noun)
                checked += 1
            if views[e["file_path"]]["view"] == "back":
                assert not GLASSES_WORDS & set(words), caption
            if "shoes" in views[e["file_path"]]["hidden"]:
                assert not HEAD_NOUNS["shoes"] & set(words), caption
    assert checked > len(entries)


def test_captions_use_the_right_gender(entries, people):
    for e in entries:
        wrong = MALE_WORDS if people[str(e["id"])]["gender"] == "woman" else FEMALE_WORDS
        for caption in e["captions"]:
            assert not wrong & set(_words(caption)), caption


def test_front_view_captions_mostly_name_the_upper_garment_colour(entries, people):
    views = _views(people)
    hits = total = 0
    for e in entries:
        if views[e["file_path"]]["view"] != "front":
            continue
        colour = people[str(e["id"])]["upper_colour"]
        forms = {w for w, c in COLOUR_WORDS.items() if c == colour}
        for caption in e["captions"]:
            total += 1
            hits += bool(forms & set(_words(caption)))
    assert total >= 6
    assert hits / total >= 0.5


def test_caption_statistics_over_many_identities():
    rng = random.Random(0)
    people = sample_identities(rng, 300)
    upper = vague = 0
    captions = []
    for person in people:
        pair = make_captions(person, "front", rng)
        assert len(pair) == 2 and pair[0] != pair[1]
        captions.extend(pair)
        for caption in pair:
            words = set(_words(caption))
            upper += bool({w for w, c in COLOUR_WORDS.items() if c == person.upper_colour} & words)
            vague += len(words) <= 10
    assert upper / len(captions) >= 0.6
    assert 0.1 <= vague / len(captions) <= 0.5  # some captions are terse, as real queries are
    assert len(set(captions)) >= 0.95 * len(captions)
    synonyms = {"pants", "trousers", "tee", "t-shirt", "rucksack", "backpack", "gray", "grey"}
    used = set().union(*(set(_words(c)) for c in captions))
    assert synonyms <= used


def test_identities_come_in_groups_of_near_duplicates():
    people = sample_identities(random.Random(3), 60)
    assert [p.pid for p in people] == list(range(1, 61))
    assert len({p.appearance() for p in people}) == 60
    groups: dict[int, list[Identity]] = {}
    for p in people:
        groups.setdefault(p.group, []).append(p)
    assert all(1 <= len(g) <= 5 for g in groups.values())
    assert sum(len(g) >= 3 for g in groups.values()) >= len(groups) - 1
    for members in groups.values():
        base = members[0].appearance()
        for other in members[1:]:
            differing = sum(a != b for a, b in zip(base, other.appearance(), strict=True))
            assert 1 <= differing <= 5


def test_a_given_cast_is_drawn_instead_of_sampled_people(tmp_path):
    cast = sample_identities(random.Random(99), 2, group_sizes=(1, 1))
    generate(
        tmp_path / "cast",
        ids=2,
        images_per_id=2,
        seed=SEED,
        val_fraction=0.0,
        test_fraction=0.0,
        cast=cast,
    )
    attributes = json.loads((tmp_path / "cast" / "attributes.json").read_text())
    for who in cast:
        drawn = attributes[str(who.pid)]
        assert (drawn["upper_colour"], drawn["lower_type"]) == (who.upper_colour, who.lower_type)
    with pytest.raises(ValueError, match=r"pids 1\.\.3"):
        generate(tmp_path / "bad", ids=3, images_per_id=1, seed=SEED, cast=cast)


def test_attributes_file_lists_every_identity_with_its_images(people, entries):
    assert set(people) == {str(i) for i in range(1, IDS + 1)}
    by_id: dict[int, list[str]] = {}
    for e in entries:
        by_id.setdefault(e["id"], []).append(e["file_path"])
    for pid, person in people.items():
        assert person["pid"] == int(pid)
        assert [img["file_path"] for img in person["images"]] == by_id[int(pid)]
        assert {img["view"] for img in person["images"]} <= {"front", "back", "side"}
        assert set(person["colours"]) == set().union(*_item_colours(person).values())


@pytest.mark.parametrize(
    "bad",
    [
        ["--ids", "0"],
        ["--ids", "two"],
        ["--size", "384"],
        ["--size", "0x128"],
        ["--size", "axb"],
        ["--images-per-id", "-1"],
        ["--test-fraction", "1.5"],
        ["--val-fraction", "0.5", "--test-fraction", "0.5"],
    ],
)
def test_cli_rejects_bad_input_in_one_line(tmp_path, capsys, bad):
    args = {"--out": str(tmp_path / "x"), "--ids": "3", "--images-per-id": "1", "--seed": "0"}
    args.update(dict(zip(bad[::2], bad[1::2], strict=True)))
    try:  # a bad flag stops in argparse, a bad value in the command: both one line, exit 2
        code = main([part for pair in args.items() for part in pair])
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert not (tmp_path / "x" / "reid_raw.json").exists()


def test_cli_rejects_an_output_path_that_is_a_file(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("")
    assert main(["--out", str(target), "--ids", "3", "--images-per-id", "1", "--seed", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a directory" in err[0]


def test_separate_processes_write_identical_bytes(tmp_path):
    # Each run gets its own string hash seed, as two separate invocations would.
    outs = []
    for hash_seed in ("1", "2"):
        out = tmp_path / f"run{hash_seed}"
        cmd = [sys.executable, "-m", "training.synthetic", "--out", str(out), "--ids", "9"]
        cmd += ["--images-per-id", "2", "--seed", "4"]
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
        assert done.returncode == 0, done.stderr
        outs.append(_hashes(out))
    assert outs[0] == outs[1]


def test_module_runs_as_a_script(tmp_path):
    cmd = [sys.executable, "-m", "training.synthetic", "--out", str(tmp_path / "d")]
    ok = subprocess.run(
        [*cmd, "--ids", "3", "--images-per-id", "1", "--seed", "0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout.strip().splitlines()[-1])["images"] == 3
    bad = subprocess.run(
        [*cmd, "--ids", "0", "--images-per-id", "1", "--seed", "0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode != 0
    assert len(bad.stderr.strip().splitlines()) == 1
