import itertools

from training.schedule import warmup_cosine


def test_warmup_then_cosine_to_the_floor() -> None:
    values = [warmup_cosine(s, total=100, warmup=10, min_ratio=0.1) for s in range(100)]
    assert values[0] == 0.1 and values[9] == 1.0  # linear warm-up over 10 steps
    assert all(a >= b for a, b in itertools.pairwise(values[9:]))
    assert abs(warmup_cosine(100, 100, 10, 0.1) - 0.1) < 1e-9
    assert abs(warmup_cosine(55, 100, 10, 0.0) - 0.5) < 1e-9  # half-way through the cosine


def test_reference_warmup_starts_at_a_fraction_per_epoch() -> None:
    # The reference code: 5 warm-up epochs rising linearly from 0.1×, cosine to 0 over 60.
    values = [warmup_cosine(e, total=60, warmup=5, start=0.1) for e in range(60)]
    assert values[0] == 0.1 and abs(values[1] - 0.28) < 1e-9 and values[5] == 1.0
    assert all(a < b for a, b in itertools.pairwise(values[:6]))
    assert all(a >= b for a, b in itertools.pairwise(values[5:])) and values[-1] > 0
