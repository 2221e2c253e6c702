"""The ONNX Runtime runtime: the bundle's exported graphs, without loading the torch model.

Each tower is its own session, created on first use (the index never needs the text graph, a
text-only query tool never the image one) under a lock, so concurrent first calls build it
once. Sessions are safe to share across threads. Spinning worker threads are turned off: the
service shares its CPUs with uvicorn's event loop, where spinning only steals time (the same
reason ``python -m service`` sets ``OMP_WAIT_POLICY=PASSIVE`` for torch).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bundle.format import BundleError, BundleMeta
from bundle.onnx_files import OnnxRecord, verified_graph
from bundle.onnx_providers import CPU, Provider, choose_providers

log = logging.getLogger(__name__)


def session_options(spinning: bool = False) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: no per-node provider-assignment chatter
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


class _LazySession:
    """One graph's InferenceSession, created on first use."""

    def __init__(self, path: Path, providers: list[Provider]) -> None:
        self.path = path
        self.providers = providers
        self._session: Any = None
        self._lock = threading.Lock()

    def get(self) -> Any:
        if self._session is None:
            with self._lock:
                if self._session is None:
                    self._session = self._create()
        return self._session

    def _create(self) -> Any:
        import onnxruntime as ort

        try:
            session = ort.InferenceSession(
                str(self.path), sess_options=session_options(), providers=self.providers
            )
        except Exception as err:  # onnxruntime raises its own Fail/InvalidGraph types
            raise BundleError(f"ONNX Runtime cannot load {self.path}: {err}") from err
        log.debug("%s on %s", self.path.name, session.get_providers())
        return session

    def run(self, array: np.ndarray) -> np.ndarray:
        session = self.get()
        name = session.get_inputs()[0].name
        return np.asarray(session.run(None, {name: array})[0], dtype=np.float32)


def trt_profiles(
    context: int, image_size: tuple[int, int], max_batch: int = 64
) -> tuple[dict[str, str], dict[str, str]]:
    """TensorRT optimisation profiles (text, image) spanning the dynamic axes, so TensorRT builds
    one engine per graph instead of one per batch shape it meets."""
    h, w = image_size

    def profile(low: str, typical: str, high: str) -> dict[str, str]:
        return {
            "trt_profile_min_shapes": f"input:{low}",
            "trt_profile_opt_shapes": f"input:{typical}",
            "trt_profile_max_shapes": f"input:{high}",
        }

    text = profile("1x1", f"8x{min(32, context)}", f"{max_batch}x{context}")
    image = profile(f"1x3x{h}x{w}", f"32x3x{h}x{w}", f"{max_batch}x3x{h}x{w}")
    return text, image


class OnnxRuntime:
    def __init__(
        self,
        text: Path | None,
        image: Path | None,
        record: OnnxRecord,
        device: str = "cpu",
        int8: bool = False,
        shapes: tuple[int, tuple[int, int]] | None = None,
    ) -> None:
        """``shapes``: (context length, image H×W), for TensorRT's optimisation profiles."""
        self.name = "onnx-int8" if int8 else "onnx"
        self.text_pool = record.text_pool
        self.text_eos_id = record.text_eos_id
        self.text_trimmable = record.text_trimmable
        if int8 and device.startswith("cuda"):
            raise BundleError(
                "--runtime onnx-int8 is for CPU serving (its INT8 kernels are CPU kernels): "
                "use --runtime onnx on a GPU"
            )
        text_shapes, image_shapes = trt_profiles(*shapes) if shapes else (None, None)
        providers, self.device = choose_providers(device, trt_shapes=image_shapes)
        text_providers = [CPU] if int8 else choose_providers(device, trt_shapes=text_shapes)[0]
        self._text = _LazySession(text, text_providers) if text is not None else None
        self._image = _LazySession(image, providers) if image is not None else None

    @classmethod
    def from_bundle(
        cls, bundle_dir: Path, meta: BundleMeta, int8: bool = False, device: str = "cpu"
    ) -> OnnxRuntime:
        """Both graphs of a bundle, checked against its weights before anything is loaded."""
        text, record = verified_graph(bundle_dir, meta, "text_int8" if int8 else "text")
        image, _ = verified_graph(bundle_dir, meta, "image")
        size = (int(meta.image_size[0]), int(meta.image_size[1]))
        return cls(text, image, record, device, int8, (meta.context_length, size))

    def encode_tokens(self, tokens: np.ndarray) -> np.ndarray:
        if self._text is None:
            raise BundleError("this runtime was opened without a text graph")
        return self._text.run(np.ascontiguousarray(tokens, dtype=np.int64))

    def encode_images(self, images: torch.Tensor) -> np.ndarray:
        if self._image is None:
            raise BundleError("this runtime was opened without an image graph")
        array = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else images
        return self._image.run(np.ascontiguousarray(array, dtype=np.float32))
