import itertools

from training.schedule import warmup_cosine


def test_warmup_then_cosine_to_the_floor() -> None:
    values = [warmup_cosine(s, total=100, warmup=10, min_ratio=0.1) for s in range(100)]
    assert values[0] == 0.1 and values[9] == 1.0  # linear warm-up over 10 steps
    assert all(a >= b for a, b in itertools.pairwise(values[9:]))
    assert abs(warmup_cosine(100, 100, 10, 0.1) - 0.1) < 1e-9
    assert abs(warmup_cosine(55, 100, 10, 0.0) - 0.5) < 1e-9  # half-way through the cosine
