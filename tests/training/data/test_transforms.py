from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from training.data.transforms import build_eval_transform, build_train_transform


def _left_right_image() -> Image.Image:
    """Red left half, blue right half: a flip is unmistakable."""
    array = np.zeros((96, 32, 3), dtype=np.uint8)
    array[:, :16] = (255, 0, 0)
    array[:, 16:] = (0, 0, 255)
    return Image.fromarray(array)


def test_train_transform_shape_and_dtype() -> None:
    out = build_train_transform(random_erasing=0.5)(_left_right_image())
    assert out.shape == (3, 384, 128) and out.dtype == torch.float32


def test_eval_transform_shape_and_custom_size() -> None:
    out = build_eval_transform((64, 32))(_left_right_image())
    assert out.shape == (3, 64, 32) and out.dtype == torch.float32


def test_default_normalisation_is_clip() -> None:
    mean = (0.48145466, 0.4578275, 0.40821073)
    grey = Image.new("RGB", (8, 8), tuple(round(m * 255) for m in mean))
    out = build_eval_transform((16, 8))(grey)
    assert out.abs().max() < 0.01  # CLIP's mean colour normalises to zero


def test_flip_with_probability_one_flips() -> None:
    image = _left_right_image()
    flipped = build_train_transform((64, 32), flip=1.0, pad=0)(image)
    reference = build_eval_transform((64, 32))(image.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    assert torch.allclose(flipped, reference)
    unflipped = build_train_transform((64, 32), flip=False, pad=0)(image)
    assert torch.allclose(unflipped, build_eval_transform((64, 32))(image))
    assert not torch.allclose(flipped, unflipped)


def test_pad_crop_keeps_size_and_shifts_content() -> None:
    torch.manual_seed(0)
    transform = build_train_transform((64, 32), flip=False, pad=10)
    outputs = [transform(_left_right_image()) for _ in range(8)]
    assert all(o.shape == (3, 64, 32) for o in outputs)
    assert any(not torch.allclose(outputs[0], o) for o in outputs[1:])


def test_random_erasing_fills_with_mean_colour() -> None:
    torch.manual_seed(0)
    white = Image.new("RGB", (32, 96), (255, 255, 255))
    out = build_train_transform((64, 32), flip=False, pad=0, random_erasing=1.0)(white)
    erased = (out == 0).all(dim=0)
    assert 0 < erased.float().mean() <= 0.4 + 1e-6


def test_reference_erasing_writes_the_means_numbers_after_normalising() -> None:
    # T.RandomErasing(value=mean) after T.Normalize, as the reference code's train transform.
    from bundle.openclip_import import import_open_clip

    mean = torch.tensor(import_open_clip().OPENAI_DATASET_MEAN)
    torch.manual_seed(0)
    white = Image.new("RGB", (32, 96), (255, 255, 255))
    transform = build_train_transform(
        (64, 32), flip=False, pad=0, random_erasing=1.0, erasing_fill="mean"
    )
    out = transform(white)
    erased = (out == mean.view(3, 1, 1)).all(dim=0)
    assert 0 < erased.float().mean() <= 0.4 + 1e-6
    # Everything else is the normalised white, nowhere near the fill.
    assert torch.allclose(out[:, ~erased].amin(dim=1), out[:, ~erased].amax(dim=1))
    assert (out[:, ~erased][:, 0] > 1.5).all()
    with pytest.raises(ValueError, match="erasing fill"):
        build_train_transform((64, 32), random_erasing=1.0, erasing_fill="noise")


@pytest.mark.parametrize("build", [build_train_transform, build_eval_transform])
def test_bilinear_resize_is_pils_bilinear(build) -> None:
    import torchvision.transforms.functional as TF

    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (100, 40, 3), dtype=np.uint8))
    kwargs = {"flip": False, "pad": 0} if build is build_train_transform else {}
    out = build((64, 32), mean=(0, 0, 0), std=(1, 1, 1), interpolation="bilinear", **kwargs)(image)
    assert torch.equal(out, TF.to_tensor(image.resize((32, 64), Image.BILINEAR)))
    bicubic = build((64, 32), mean=(0, 0, 0), std=(1, 1, 1), **kwargs)(image)
    assert not torch.equal(out, bicubic)
    with pytest.raises(ValueError, match="interpolation"):
        build((64, 32), interpolation="nearest")


@pytest.mark.parametrize("build", [build_train_transform, build_eval_transform])
def test_custom_mean_std(build) -> None:
    out = build((16, 8), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))(Image.new("RGB", (8, 16)))
    assert torch.allclose(out, torch.full_like(out, -1.0))


def test_transform_pickles_as_its_recipe() -> None:
    # DataLoader workers started with "spawn" receive the transform pickled.
    transform = build_eval_transform((64, 32))
    clone = pickle.loads(pickle.dumps(transform))
    assert torch.equal(clone(_left_right_image()), transform(_left_right_image()))
    train = pickle.loads(pickle.dumps(build_train_transform((64, 32), random_erasing=0.3)))
    assert "RandomErasing" in repr(train)
