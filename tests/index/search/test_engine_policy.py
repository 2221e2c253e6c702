"""The engine choice: forced by a setting, detected from the CPU, or calibrated by a trial that
is cached per machine and size class. Trials here are injected tables, never real timings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from index.search import engine_calibration
from index.search.cpu_features import CpuFeatures, parse_cpuinfo
from index.search.engine_policy import (
    BF16_RESCORE,
    CACHED,
    CALIBRATE_MIN_ROWS,
    CALIBRATED,
    DETECTED,
    FAISS_FLAT,
    FORCED,
    NUMPY_FP32,
    EngineChoice,
    EnginePolicy,
    pick,
)
from index.search.exact_search import ExactSearch
from tests.index.conftest import random_unit
from tests.index.search.test_bf16_engine import flat_master

ZEN4 = CpuFeatures("x86_64", "AMD EPYC 9R14", 2, frozenset({"avx2", "avx512f", "avx512_bf16"}))
ZEN3 = CpuFeatures("x86_64", "AMD EPYC 7R13", 2, frozenset({"avx2", "fma", "f16c"}))
GRAVITON2 = CpuFeatures("aarch64", "arm64 0xd0c", 2, frozenset({"asimd", "asimddp"}))
GRAVITON3 = CpuFeatures("aarch64", "arm64 0xd40", 2, frozenset({"asimd", "bf16", "sve"}))


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path: Path) -> Path:
    engine_calibration.forget_in_memory()
    yield tmp_path / "cache"
    engine_calibration.forget_in_memory()


class Trial:
    """A stand-in for the timed trial: a fixed table of ms per call, and what it was asked."""

    def __init__(self, table: dict[str, dict[int, float]]) -> None:
        self.table, self.calls, self.plans = table, 0, []

    def __call__(self, engines, queries, plan, budget_s):
        self.calls += 1
        self.plans.append(dict(plan))
        assert all(len(queries) >= b for b in plan)
        assert {n for names in plan.values() for n in names} <= set(engines)
        timings: dict[str, dict[int, float]] = {}
        for batch, names in plan.items():
            for name in names:
                timings.setdefault(name, {})[batch] = self.table[name][batch]
        return timings


def test_native_bf16_is_read_from_the_kernels_flags() -> None:
    x86 = parse_cpuinfo(
        "model name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512f avx512_bf16\n", "x86_64", 2
    )
    assert x86.native_bf16 and x86.avx512 and not x86.amx and x86.model == "AMD EPYC"
    zen3 = parse_cpuinfo("model name\t: AMD EPYC 7R13\nflags\t\t: fpu avx2 fma\n", "x86_64", 2)
    assert not zen3.native_bf16 and not zen3.avx512
    arm = parse_cpuinfo("Features\t: fp asimd bf16 sve\nCPU part\t: 0xd40\n", "aarch64", 4)
    assert arm.native_bf16 and arm.model == "arm64 0xd40"
    assert not GRAVITON2.native_bf16 and GRAVITON2.vnni
    assert ZEN4.key() != ZEN3.key() and ZEN4.key() == CpuFeatures(*vars(ZEN4).values()).key()


def test_emulated_bf16_is_a_candidate_only_for_small_batches() -> None:
    policy = EnginePolicy()
    rows = 100_000
    for cpu in (ZEN4, GRAVITON3):  # native: every batch size
        assert all(BF16_RESCORE in policy.candidates(rows, b, cpu) for b in (1, 8, 64))
    for cpu in (ZEN3, GRAVITON2):  # emulated: memory-bound batches only
        assert [BF16_RESCORE in policy.candidates(rows, b, cpu) for b in (1, 8, 9, 64)] == [
            True, True, False, False,
        ]  # fmt: skip
    assert BF16_RESCORE not in EnginePolicy(bf16=False).candidates(rows, 1, ZEN4)
    assert policy.candidates(CALIBRATE_MIN_ROWS - 1, 1, ZEN4) == (FAISS_FLAT, NUMPY_FP32)


@pytest.mark.parametrize("batch", [1, 8, 64])
def test_the_detected_rule_never_serves_emulated_bf16(batch: int) -> None:
    policy = EnginePolicy()
    assert policy.detected(batch, 10**6, ZEN4) == BF16_RESCORE
    assert policy.detected(batch, 10**6, ZEN3) == (NUMPY_FP32 if batch == 1 else FAISS_FLAT)
    assert policy.detected(batch, 1000, ZEN4) == FAISS_FLAT


def test_pick_takes_the_fastest_per_batch() -> None:
    table = {FAISS_FLAT: {1: 40.0, 64: 500.0}, NUMPY_FP32: {1: 12.0, 64: 560.0}}
    assert pick(table) == {1: NUMPY_FP32, 64: FAISS_FLAT}


def test_engine_for_uses_the_nearest_timed_batch() -> None:
    choice = EngineChoice({1: NUMPY_FP32, 8: FAISS_FLAT, 64: BF16_RESCORE}, CALIBRATED, "x")
    assert [choice.engine_for(b) for b in (1, 2, 3, 8, 20, 23, 64, 2048)] == [
        NUMPY_FP32, NUMPY_FP32, FAISS_FLAT, FAISS_FLAT, FAISS_FLAT, BF16_RESCORE, BF16_RESCORE,
        BF16_RESCORE,
    ]  # fmt: skip
    with pytest.raises(ValueError):
        choice.engine_for(0)


def test_a_bad_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown engine"):
        EnginePolicy(forced="warp-drive")
    with pytest.raises(ValueError, match="batch"):
        EnginePolicy(batches=(0, 8))


ZEN3_TABLE = {  # what the issue measured at 1M × 512 on an AVX2 EPYC, as ms per call
    FAISS_FLAT: {1: 212.0, 8: 300.0, 64: 547.0},
    NUMPY_FP32: {1: 90.0, 8: 320.0, 64: 598.0},
    BF16_RESCORE: {1: 75.0, 8: 900.0, 64: 3657.0},
}


def test_a_calibration_serves_the_fastest_engine_and_frees_the_unused_bf16_copy(
    fresh_cache: Path,
) -> None:
    vectors = random_unit(CALIBRATE_MIN_ROWS + 100, 16, 0)
    trial = Trial(ZEN3_TABLE)
    policy = EnginePolicy(cache_dir=fresh_cache)
    exact = ExactSearch(flat_master(vectors), policy, cpu=ZEN4, trial=trial)
    everything = (FAISS_FLAT, NUMPY_FP32, BF16_RESCORE)
    assert trial.calls == 1 and trial.plans == [dict.fromkeys((1, 8, 64), everything)]
    # bf16 was fastest at batch 1 only: it is kept for that.
    assert exact.choice.engines == {1: BF16_RESCORE, 8: FAISS_FLAT, 64: FAISS_FLAT}
    assert exact.choice.reason == CALIBRATED and exact.bf16 is not None
    described = exact.describe()
    assert described["engine"] == {
        "batch_1": BF16_RESCORE,
        "batch_8": FAISS_FLAT,
        "batch_64": FAISS_FLAT,
    }
    assert described["reason"] == CALIBRATED and described["cpu"]["model"] == ZEN4.model
    assert described["trial_ms"][NUMPY_FP32]["batch_64"] == 598.0

    slower_bf16 = {**ZEN3_TABLE, BF16_RESCORE: {1: 500.0, 8: 900.0, 64: 3657.0}}
    engine_calibration.forget_in_memory()
    other = ExactSearch(
        flat_master(vectors), EnginePolicy(cache_dir=fresh_cache / "2"), ZEN4, Trial(slower_bf16)
    )
    assert other.choice.engines == {1: NUMPY_FP32, 8: FAISS_FLAT, 64: FAISS_FLAT}
    assert other.bf16 is None and BF16_RESCORE not in other.engines  # the copy was freed


def test_without_native_bf16_the_trial_never_times_a_bf16_batch(fresh_cache: Path) -> None:
    """The issue's AVX2 EPYC at 1M × 512: emulated bf16 still wins one query (memory-bound) and
    is never even timed at 64, where it ran 6.7× slower than FAISS."""
    vectors = random_unit(CALIBRATE_MIN_ROWS, 16, 1)
    trial = Trial(ZEN3_TABLE)
    exact = ExactSearch(flat_master(vectors), EnginePolicy(cache_dir=fresh_cache), ZEN3, trial)
    fp32, everything = (FAISS_FLAT, NUMPY_FP32), (FAISS_FLAT, NUMPY_FP32, BF16_RESCORE)
    assert trial.plans == [{1: everything, 8: everything, 64: fp32}]
    assert exact.choice.engines == {1: BF16_RESCORE, 8: FAISS_FLAT, 64: FAISS_FLAT}
    assert exact.bf16 is not None
    slow_one = {**ZEN3_TABLE, BF16_RESCORE: {1: 95.0, 8: 900.0}}
    engine_calibration.forget_in_memory()
    other = ExactSearch(
        flat_master(vectors), EnginePolicy(cache_dir=fresh_cache / "2"), ZEN3, Trial(slow_one)
    )
    assert other.choice.engines == {1: NUMPY_FP32, 8: FAISS_FLAT, 64: FAISS_FLAT}
    assert other.bf16 is None


def test_the_calibration_is_cached_per_machine_and_size_class(fresh_cache: Path) -> None:
    policy = EnginePolicy(cache_dir=fresh_cache)
    trial = Trial(ZEN3_TABLE)
    small, larger = random_unit(10_000, 16, 2), random_unit(12_000, 16, 3)
    first = ExactSearch(flat_master(small), policy, ZEN3, trial)
    # Same class (8k-50k), same machine: from the cache, in memory and on disk.
    again = ExactSearch(flat_master(larger), policy, ZEN3, trial)
    engine_calibration.forget_in_memory()
    from_disk = ExactSearch(flat_master(larger), policy, ZEN3, trial)
    assert trial.calls == 1
    assert first.choice.reason == CALIBRATED
    assert again.choice.reason == from_disk.choice.reason == CACHED
    assert from_disk.choice.engines == first.choice.engines
    stored = json.loads((fresh_cache / engine_calibration.CACHE_FILE).read_text())
    assert len(stored) == 1 and next(iter(stored.values()))["size_class"] == "8k-50k"
    # Another machine, or a gallery that grew into the next class: a new trial.
    ExactSearch(flat_master(larger), policy, ZEN4, trial)
    ExactSearch(flat_master(random_unit(50_000, 16, 4)), policy, ZEN3, trial)
    assert trial.calls == 3


def test_an_unwritable_cache_costs_only_a_new_trial(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    trial = Trial(ZEN3_TABLE)
    exact = ExactSearch(
        flat_master(random_unit(9000, 16, 5)), EnginePolicy(cache_dir=blocked), ZEN3, trial
    )
    assert exact.choice.reason == CALIBRATED and trial.calls == 1


def test_forced_and_small_galleries_run_no_trial(fresh_cache: Path) -> None:
    trial = Trial(ZEN3_TABLE)
    vectors = random_unit(CALIBRATE_MIN_ROWS + 1, 16, 6)
    forced = ExactSearch(flat_master(vectors), EnginePolicy(forced=BF16_RESCORE), ZEN3, trial)
    assert forced.choice.reason == FORCED and forced.bf16 is not None
    assert set(forced.choice.engines.values()) == {BF16_RESCORE}
    small = ExactSearch(flat_master(random_unit(500, 16, 7)), EnginePolicy(), ZEN4, trial)
    assert small.choice.reason == DETECTED and small.bf16 is None
    off = ExactSearch(flat_master(vectors), EnginePolicy(calibrate=False), ZEN3, trial)
    assert off.choice.reason == DETECTED
    assert trial.calls == 0


def test_the_real_trial_times_every_candidate_and_answers_exactly(fresh_cache: Path) -> None:
    """The timed trial itself (tiny budget): every engine gets a time per batch size, and the
    chosen engines still give the float64 ranking."""
    vectors = random_unit(CALIBRATE_MIN_ROWS + 500, 32, 8)
    policy = EnginePolicy(cache_dir=fresh_cache, trial_seconds=0.01, batches=(1, 4))
    exact = ExactSearch(flat_master(vectors), policy, ZEN4)
    timings = exact.choice.trial_ms
    assert set(timings) == {FAISS_FLAT, NUMPY_FP32, BF16_RESCORE}
    assert all(set(t) == {1, 4} and min(t.values()) > 0 for t in timings.values())
    queries = random_unit(4, 32, 9)
    for batch in (1, 4):
        _, ids = exact.search(queries[:batch], 10)
        want = np.argsort(
            -(queries[:batch].astype(np.float64) @ vectors.T.astype(np.float64)), axis=1
        )
        np.testing.assert_array_equal(ids, want[:, :10])
