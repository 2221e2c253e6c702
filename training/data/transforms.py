"""Image transforms of the training recipe: 384×128 person crops, flip, pad-and-crop, erasing."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from PIL import Image
from torch import Tensor

from bundle.openclip_import import import_open_clip

DEFAULT_SIZE = (384, 128)  # (height, width): person crops are tall
# Erasing covers 2–40 % of the crop, the range the person-search codebases use.
ERASING_SCALE = (0.02, 0.4)
INTERPOLATIONS = ("bicubic", "bilinear")
ERASING_FILLS = ("zero", "mean")


class Pipeline:
    """A torchvision pipeline that pickles as its recipe.

    A spawned DataLoader worker unpickling a bare ``T.Compose`` would import torchvision
    directly, without the import shim; rebuilding from the recipe goes through the shim.
    """

    def __init__(self, build: Callable[..., Pipeline], kwargs: dict[str, Any], steps: Any) -> None:
        self._build, self._kwargs, self._steps = build, kwargs, steps

    def __call__(self, image: Image.Image) -> Tensor:
        return self._steps(image)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self._build, self._kwargs))

    def __repr__(self) -> str:
        return repr(self._steps)


def _rebuild(build: Callable[..., Pipeline], kwargs: dict[str, Any]) -> Pipeline:
    return build(**kwargs)


def _mean_std(
    mean: Sequence[float] | None, std: Sequence[float] | None
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    open_clip = import_open_clip()  # also makes torchvision importable on CPU-only torch
    return (
        tuple(open_clip.OPENAI_DATASET_MEAN if mean is None else mean),
        tuple(open_clip.OPENAI_DATASET_STD if std is None else std),
    )


def _mode(interpolation: str) -> Any:
    """torchvision's resize mode of ``bicubic`` (the paper config) or ``bilinear`` (reference)."""
    if interpolation not in INTERPOLATIONS:
        raise ValueError(
            f"interpolation {interpolation!r}: choose from {', '.join(INTERPOLATIONS)}"
        )
    import torchvision.transforms as T

    return T.InterpolationMode(interpolation)


def build_train_transform(
    size: Sequence[int] = DEFAULT_SIZE,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    flip: bool | float = True,
    pad: int = 10,
    random_erasing: float = 0.0,
    interpolation: str = "bicubic",
    erasing_fill: str = "zero",
) -> Pipeline:
    """Resize to ``size`` (H, W), flip, pad + random crop back, to tensor, normalise, erase.

    ``mean``/``std`` default to CLIP's (OpenAI) statistics. ``flip`` is ``True`` for probability
    0.5, or the probability itself. ``random_erasing`` is the probability of erasing one
    rectangle. ``erasing_fill`` ``zero`` fills it with 0, the mean colour after normalisation;
    ``mean`` writes the mean's numbers themselves into the normalised tensor, as the reference
    code does (``T.RandomErasing(value=mean)`` placed after ``T.Normalize``).
    """
    recipe = dict(
        size=size,
        mean=mean,
        std=std,
        flip=flip,
        pad=pad,
        random_erasing=random_erasing,
        interpolation=interpolation,
        erasing_fill=erasing_fill,
    )
    if erasing_fill not in ERASING_FILLS:
        raise ValueError(f"erasing fill {erasing_fill!r}: choose from {', '.join(ERASING_FILLS)}")
    mean, std = _mean_std(mean, std)
    import torchvision.transforms as T

    flip_p = (0.5 if flip else 0.0) if isinstance(flip, bool) else float(flip)
    hw = (int(size[0]), int(size[1]))
    steps: list[Callable] = [T.Resize(hw, interpolation=_mode(interpolation))]
    if flip_p > 0:
        steps.append(T.RandomHorizontalFlip(p=flip_p))
    if pad > 0:
        steps += [T.Pad(pad), T.RandomCrop(hw)]
    steps += [T.ToTensor(), T.Normalize(mean, std)]
    if random_erasing > 0:
        fill: float | list[float] = 0 if erasing_fill == "zero" else list(mean)
        steps.append(T.RandomErasing(p=random_erasing, scale=ERASING_SCALE, value=fill))
    return Pipeline(build_train_transform, recipe, T.Compose(steps))


def build_eval_transform(
    size: Sequence[int] = DEFAULT_SIZE,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    interpolation: str = "bicubic",
) -> Pipeline:
    """Resize to ``size`` (H, W), to tensor, normalise: the deterministic half of the recipe."""
    recipe = dict(size=size, mean=mean, std=std, interpolation=interpolation)
    mean, std = _mean_std(mean, std)
    import torchvision.transforms as T

    hw = (int(size[0]), int(size[1]))
    steps = [
        T.Resize(hw, interpolation=_mode(interpolation)),
        T.ToTensor(),
        T.Normalize(mean, std),
    ]
    return Pipeline(build_eval_transform, recipe, T.Compose(steps))
