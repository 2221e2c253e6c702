"""Export a bundle's towers to ONNX graphs inside the bundle folder, checked before recorded.

The text graph takes token ids with dynamic batch and sequence-length axes (length ≤ the
context), so a runtime can feed it a batch cut to its longest caption; the image graph has a
dynamic batch axis. Both end in the L2 normalisation, as the torch runtime does.

Before a graph is recorded, ONNX Runtime runs it on probe inputs (captions of many lengths,
the full context and a truncated one among them; random images) and its vectors must agree with
open_clip's own full-context ``encode_text``/``encode_image`` to a cosine of
``MIN_COSINE``; otherwise nothing is recorded and the export fails. The graph files are replaced
atomically, then ``bundle.json`` is: a crash in between leaves a graph whose sha256 does not
match the record, which is refused at load (re-export to repair).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bundle.format import BundleError, read_meta, sha256_file, verify_fingerprint
from bundle.fsio import replace_atomic
from bundle.onnx_files import GRAPH_FILES, OnnxRecord, read_record, write_record
from bundle.openclip_import import import_open_clip
from bundle.towers import ImageTower, TextTower, trimmed_length

log = logging.getLogger(__name__)

OPSET = 18
MIN_COSINE = 0.9999
PROBE_CAPTIONS = (
    "",
    "a man",
    "a woman in a red coat carrying a white bag",
    "the pedestrian wears a grey hoodie, dark blue jeans and white sneakers; he carries a black "
    "backpack on his right shoulder and looks at his phone while walking",
    " ".join(["a tall person in a long black coat with a red scarf and brown boots"] * 12),
)


def _export(module: nn.Module, example: torch.Tensor, path: Path, dims: dict[int, Any]) -> None:
    """torch.onnx's dynamo exporter, its progress prints kept off stdout (commands print JSON)."""
    with (
        contextlib.redirect_stdout(io.StringIO()) as chatter,
        warnings.catch_warnings(),
        torch.no_grad(),
    ):
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                module,
                (example,),
                str(path),
                input_names=["input"],
                output_names=["features"],
                opset_version=OPSET,
                dynamo=True,
                external_data=False,
                dynamic_shapes=(dims,),
            )
        except Exception as err:  # the exporter raises many types; say which graph failed
            raise BundleError(f"ONNX export of {path.name} failed: {err}") from err
    log.debug("%s", chatter.getvalue())


def _session(path: Path) -> Any:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _check(name: str, got: np.ndarray, want: np.ndarray) -> float:
    cosine = float(np.min(np.sum(got * want, axis=1)))
    if not cosine >= MIN_COSINE:
        raise BundleError(
            f"the exported {name} graph disagrees with the torch tower (cosine {cosine:.6f} < "
            f"{MIN_COSINE}): not recorded"
        )
    return cosine


def _text_probe(text: TextTower, clip: nn.Module, tokenizer: Any, session: Any) -> float:
    """Every probe caption alone (each trimmed to its own length) and all together."""
    full = tokenizer(list(PROBE_CAPTIONS))
    with torch.inference_mode():
        want = torch.nn.functional.normalize(clip.encode_text(full).float(), dim=-1).numpy()
    tokens = full.numpy().astype(np.int64)
    worst = 1.0
    batches = [tokens[i : i + 1] for i in range(len(tokens))] + [tokens]
    rows = [want[i : i + 1] for i in range(len(tokens))] + [want]
    for batch, expected in zip(batches, rows, strict=True):
        cut = batch[:, : trimmed_length(batch, text.pool_type, text.eos_id)]
        if not text.trimmable:
            cut = batch
        got = session.run(None, {"input": cut})[0]
        worst = min(worst, _check("text", got, expected))
    return worst


def _image_probe(clip: nn.Module, size: tuple[int, int], session: Any) -> float:
    images = torch.from_numpy(
        np.random.default_rng(0).standard_normal((3, 3, *size)).astype(np.float32)
    )
    with torch.inference_mode():
        want = torch.nn.functional.normalize(clip.encode_image(images).float(), dim=-1).numpy()
    worst = 1.0
    for batch in (images[:1], images):
        got = session.run(None, {"input": batch.numpy()})[0]
        worst = min(worst, _check("image", got, want[: len(batch)]))
    return worst


def export_onnx(bundle_dir: Path) -> OnnxRecord:
    """Write ``text.onnx`` and ``image.onnx`` into the bundle and record them in bundle.json.

    Replaces an earlier export (and drops its INT8 graph, which was quantised from it).
    """
    import onnx
    import onnxruntime

    from bundle.torch_runtime import load_clip

    bundle_dir = Path(bundle_dir)
    meta = read_meta(bundle_dir)
    verify_fingerprint(bundle_dir, meta)
    open_clip = import_open_clip()
    clip = load_clip(bundle_dir, torch.device("cpu"))
    tokenizer = open_clip.get_tokenizer(f"local-dir:{bundle_dir}")
    text, image = TextTower(clip).eval(), ImageTower(clip).eval()
    context = meta.context_length
    size = tuple(int(s) for s in clip.visual.image_size)
    batch = torch.export.Dim("batch", min=1, max=4096)
    length = torch.export.Dim("length", min=1, max=context)
    example_tokens = tokenizer(["a person", "a person in a red coat"])[:, : max(2, context // 2)]
    example_images = torch.zeros(2, 3, *size)

    checks: dict[str, float] = {}

    def write_text(tmp: Path) -> None:
        _export(text, example_tokens, tmp, {0: batch, 1: length})
        checks["text"] = _text_probe(text, clip, tokenizer, _session(tmp))

    def write_image(tmp: Path) -> None:
        _export(image, example_images, tmp, {0: batch})
        checks["image"] = _image_probe(clip, size, _session(tmp))

    replace_atomic(bundle_dir / GRAPH_FILES["text"], write_text)
    replace_atomic(bundle_dir / GRAPH_FILES["image"], write_image)
    previous = read_record(meta)
    if previous is not None and "text_int8" in previous.graphs:
        (bundle_dir / GRAPH_FILES["text_int8"]).unlink(missing_ok=True)
    record = OnnxRecord(
        exported_from=meta.fingerprint,
        graphs={name: sha256_file(bundle_dir / GRAPH_FILES[name]) for name in ("text", "image")},
        text_pool=text.pool_type,
        text_eos_id=text.eos_id,
        text_trimmable=text.trimmable,
        extra={
            "opset": OPSET,
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
            "check": {"min_cosine": MIN_COSINE, "worst_cosine": checks},
        },
    )
    write_record(bundle_dir, record)
    sizes = {n: os.path.getsize(bundle_dir / GRAPH_FILES[n]) for n in record.graphs}
    log.info("exported ONNX graphs to %s: %s (worst cosine %s)", bundle_dir, sizes, checks)
    return record
