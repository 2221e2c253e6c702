"""The ONNX graphs inside a bundle folder and their record in ``bundle.json``.

An export adds up to three files beside the weights, and one ``onnx`` entry to ``bundle.json``:

    BUNDLE/text.onnx        text tower, dynamic batch and sequence-length axes
    BUNDLE/image.onnx       image tower, dynamic batch axis
    BUNDLE/text.int8.onnx   text tower with INT8 weights and per-token INT8 activations (optional)

    "onnx": {"exported_from": <weights fingerprint>, "graphs": {"text": {"file", "sha256"}, ...},
             "text_pool": "argmax", "text_eos_id": null, "text_trimmable": true, "int8": {...}}

The weights fingerprint already names the model; ``exported_from`` ties the graphs to it, and each
graph's own sha256 ties the file to the record. A graph is served only when both hold, so graphs
copied in from another bundle, graphs of older weights, or a file changed after export are
refused with :class:`~bundle.format.BundleError` instead of silently serving other vectors.
The format version does not change: a bundle without the entry is the bundle it always was.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bundle.format import META_FILE, BundleError, BundleMeta, sha256_file
from bundle.fsio import write_json_atomic

ONNX_KEY = "onnx"
GRAPH_FILES = {"text": "text.onnx", "image": "image.onnx", "text_int8": "text.int8.onnx"}
EXPORT_HINT = "export them with `python -m bundle export-onnx BUNDLE`"
INT8_HINT = (
    "export it with `python -m training export --bundle BUNDLE --onnx-int8` (or `python -m "
    "bundle export-onnx BUNDLE --int8 ...`); it is written only if its rankings agree with fp32's"
)


@dataclass(frozen=True)
class OnnxRecord:
    exported_from: str
    graphs: dict[str, str]  # graph name → sha256 of its file
    text_pool: str
    text_eos_id: int | None
    text_trimmable: bool
    extra: dict[str, Any] = field(default_factory=dict)  # opset, versions, the INT8 check

    def to_json(self) -> dict[str, Any]:
        return {
            "exported_from": self.exported_from,
            "graphs": {
                name: {"file": GRAPH_FILES[name], "sha256": sha}
                for name, sha in sorted(self.graphs.items())
            },
            "text_pool": self.text_pool,
            "text_eos_id": self.text_eos_id,
            "text_trimmable": self.text_trimmable,
            **self.extra,
        }


def read_record(meta: BundleMeta) -> OnnxRecord | None:
    """The bundle's ONNX entry as recorded, or None when it has none (nothing checked yet)."""
    raw = meta.extra.get(ONNX_KEY)
    if raw is None:
        return None
    try:
        graphs = {name: str(entry["sha256"]) for name, entry in raw["graphs"].items()}
        for name, entry in raw["graphs"].items():
            if GRAPH_FILES.get(name) != entry["file"]:
                raise BundleError(f"unknown ONNX graph {name!r} ({entry['file']})")
        known = {"exported_from", "graphs", "text_pool", "text_eos_id", "text_trimmable"}
        return OnnxRecord(
            exported_from=str(raw["exported_from"]),
            graphs=graphs,
            text_pool=str(raw["text_pool"]),
            text_eos_id=raw.get("text_eos_id"),
            text_trimmable=bool(raw["text_trimmable"]),
            extra={k: v for k, v in raw.items() if k not in known},
        )
    except (KeyError, TypeError, AttributeError) as err:
        raise BundleError(f"the {ONNX_KEY!r} entry of {META_FILE} is malformed: {err}") from None


def verified_graph(bundle_dir: Path, meta: BundleMeta, name: str) -> tuple[Path, OnnxRecord]:
    """The path of graph ``name`` once its record and file are checked against the weights."""
    record = read_record(meta)
    if record is None:
        raise BundleError(f"{bundle_dir} has no ONNX graphs: {EXPORT_HINT}")
    if record.exported_from != meta.fingerprint:
        raise BundleError(
            f"{bundle_dir}: the ONNX graphs were exported from weights "
            f"{record.exported_from[:12]}, not from this bundle's {meta.fingerprint[:12]}: "
            f"re-{EXPORT_HINT}"
        )
    if name not in record.graphs:
        hint = INT8_HINT if name == "text_int8" else f"re-{EXPORT_HINT}"
        raise BundleError(f"{bundle_dir} has no {GRAPH_FILES[name]}: {hint}")
    if name == "text_int8" and not record.extra.get("int8", {}).get("batch_invariant", False):
        raise BundleError(
            f"{bundle_dir}: its {GRAPH_FILES[name]} quantises activations per batch, so a "
            f"query's vector depends on the other queries encoded with it: re-{INT8_HINT}"
        )
    path = Path(bundle_dir) / GRAPH_FILES[name]
    if not path.is_file():
        raise BundleError(f"{bundle_dir}: {GRAPH_FILES[name]} is missing: re-{EXPORT_HINT}")
    if sha256_file(path) != record.graphs[name]:
        raise BundleError(
            f"{bundle_dir}: {GRAPH_FILES[name]} does not match the sha256 recorded in "
            f"{META_FILE}: re-{EXPORT_HINT}"
        )
    return path, record


def write_record(bundle_dir: Path, record: OnnxRecord) -> None:
    """Replace the ``onnx`` entry of ``bundle.json`` atomically, keeping every other key."""
    path = Path(bundle_dir) / META_FILE
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise BundleError(f"cannot read {path}: {err}") from err
    meta[ONNX_KEY] = record.to_json()
    write_json_atomic(path, meta)
