"""Import open_clip, working around a CPU torch paired with a CUDA torchvision wheel.

The only torchvision release that accepts the pinned torch is a CUDA build; on the CPU torch its
compiled ops fail to load and ``import torchvision`` raises ``operator torchvision::nms does not
exist``. Declaring the two missing op schemas lets ``torchvision.transforms`` (and so open_clip)
import; ``torchvision.ops`` stays unusable, and nothing here uses it. A normal install never hits
the error, so the shim never runs there.
"""

from __future__ import annotations

import sys
from types import ModuleType

_KNOWN_ERROR = "operator torchvision::nms does not exist"
_shim_applied = False


def _declare_missing_torchvision_ops() -> None:
    import torch

    global _shim_applied
    if _shim_applied:
        return
    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    # The library object must outlive this call or the definitions are dropped again.
    sys.modules[__name__].__dict__["_torchvision_lib"] = lib
    _shim_applied = True


def _forget(prefixes: tuple[str, ...]) -> None:
    for name in [m for m in sys.modules if m.split(".")[0] in prefixes]:
        del sys.modules[name]


def import_open_clip() -> ModuleType:
    """Return the ``open_clip`` module, applying the torchvision shim only on its known error."""
    try:
        import open_clip
    except RuntimeError as err:
        if _KNOWN_ERROR not in str(err):
            raise
        _forget(("torchvision", "open_clip", "timm"))
        _declare_missing_torchvision_ops()
        import open_clip
    return open_clip


def shim_applied() -> bool:
    """Whether this process needed the shim (reported in logs and bundle metadata)."""
    return _shim_applied
