"""The gallery collection's schema, and what the gallery is, kept in the collection's properties.

================  =========================  =============================================
field             type                       notes
================  =========================  =============================================
image_id          VARCHAR(512), primary key  the gallery's id
vector            FLOAT_VECTOR(dim)          L2-normalised; metric IP
person_id         VARCHAR(512), nullable     null: unknown person
camera_id         VARCHAR(512), nullable     null: unknown camera
captured_at       DOUBLE                     seconds since the epoch, UTC; 0 when unknown
has_captured_at   BOOL                       false: no capture time (fails any time bound)
tags              ARRAY<VARCHAR(256)>[64]    an image must carry every tag a filter lists
sha256            VARCHAR(128)               the bytes' digest; ``add`` dedupes on it
source_path       VARCHAR(4096)
added_at          DOUBLE
================  =========================  =============================================

What the gallery is (bundle fingerprint, dim, index kind, format version, encoding) lives in the
collection's *properties* (``tps.*`` keys), written in the same request that creates the
collection, so a collection is never without them, and read back by ``describe_collection`` on
milvus-lite and on a Milvus server alike. The vector field's own dim must agree.

Every read asks for strong consistency (the collection is also created with it): whatever a
write acknowledged before the call is seen, whichever replica wrote it.
"""

from __future__ import annotations

from typing import Any

from pymilvus import DataType, MilvusClient

from index.encoding import Encoding
from index.errors import IndexCorruptError, IndexStoreError
from index.milvus.indexes import INDEX_TYPES

FORMAT = "tps-gallery-milvus"
VERSION = 1
STORE = "milvus"

MAX_ID_BYTES = 512
MAX_NAME_BYTES = 512  # person_id, camera_id
MAX_SHA_BYTES = 128
MAX_PATH_BYTES = 4096
MAX_TAGS = 64
MAX_TAG_BYTES = 256

PROP = "tps."
META_FIELDS = [
    "image_id",
    "person_id",
    "camera_id",
    "captured_at",
    "has_captured_at",
    "tags",
    "sha256",
    "source_path",
    "added_at",
]
STRONG = {"consistency_level": "Strong"}
# What a search may ask for instead (writes, claims and duplicate checks always read Strong):
# Session sees this client's own writes at once and others' within about a time tick, without
# waiting for one; Bounded may lag a few seconds.
SEARCH_CONSISTENCY = ("Strong", "Session", "Bounded")


def collection_schema(dim: int, nullable: bool = True) -> Any:
    """The gallery's fields; ``nullable`` False for a server that keeps no nulls (before
    Milvus 2.5), where an unknown person or camera is stored as "" (never a valid id)."""
    schema = MilvusClient.create_schema(
        auto_id=False,
        enable_dynamic_field=False,
        description=f"text-to-person search gallery ({FORMAT} v{VERSION})",
    )
    schema.add_field("image_id", DataType.VARCHAR, is_primary=True, max_length=MAX_ID_BYTES)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    for name in ("person_id", "camera_id"):
        extra = {"nullable": True} if nullable else {}
        schema.add_field(name, DataType.VARCHAR, max_length=MAX_NAME_BYTES, **extra)
    schema.add_field("captured_at", DataType.DOUBLE)
    schema.add_field("has_captured_at", DataType.BOOL)
    schema.add_field(
        "tags",
        DataType.ARRAY,
        element_type=DataType.VARCHAR,
        max_capacity=MAX_TAGS,
        max_length=MAX_TAG_BYTES,
    )
    schema.add_field("sha256", DataType.VARCHAR, max_length=MAX_SHA_BYTES)
    schema.add_field("source_path", DataType.VARCHAR, max_length=MAX_PATH_BYTES)
    schema.add_field("added_at", DataType.DOUBLE)
    return schema


def properties(meta: dict[str, Any]) -> dict[str, str]:
    """The collection properties that say what the gallery is (``meta`` plus the format)."""
    return {PROP + k: str(v) for k, v in (meta | {"format": FORMAT}).items()}


def creator_of(described: dict[str, Any]) -> str | None:
    """The token the process that created the collection wrote into it (``create``)."""
    return (described.get("properties") or {}).get(PROP + "creator")


def read_meta(described: dict[str, Any], location: str) -> dict[str, Any]:
    props = described.get("properties") or {}
    meta = {k[len(PROP) :]: v for k, v in props.items() if k.startswith(PROP)}
    if meta.get("format") != FORMAT:
        raise IndexStoreError(
            f"{location} is not a gallery: the collection has no {PROP}format={FORMAT} property"
        )
    try:
        version, dim = int(meta["version"]), int(meta["dim"])
        fingerprint, kind = str(meta["fingerprint"]), str(meta["kind"])
    except (KeyError, ValueError) as exc:
        raise IndexCorruptError(f"{location}: gallery properties are incomplete: {meta}") from exc
    if version > VERSION:
        raise IndexStoreError(
            f"{location} has format version {version}; this code reads up to {VERSION}: upgrade"
        )
    if kind not in INDEX_TYPES:
        raise IndexCorruptError(f"{location}: unknown index kind {kind!r} in its properties")
    vector = next((f for f in described.get("fields", []) if f.get("name") == "vector"), None)
    if vector is None or int(vector.get("params", {}).get("dim", -1)) != dim:
        raise IndexCorruptError(f"{location}: the vector field disagrees with dim={dim}")
    # Galleries made before the encoding was recorded: unknown precision, global layout.
    encoding = Encoding.from_meta(meta)
    return {
        "version": version,
        "fingerprint": fingerprint,
        "dim": dim,
        "kind": kind,
        "encoding": encoding,
    }
