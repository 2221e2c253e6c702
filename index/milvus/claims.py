"""Claims on image ids, so replicas on different hosts never overwrite each other's uploads.

Milvus has no unique keys and no transactions: two replicas adding different bytes under one new
image_id would both pass the "is the id free?" check and both write, the later upsert silently
replacing the earlier acknowledged one. A shared ``flock`` serialises replicas on one host only.
So ``add`` claims its new ids in the store itself, in a side collection ``<gallery>_claims``
(one row per claim: image_id, sha256, a random token, the time):

1. insert a claim for each new id;
2. read every claim on those ids (strong consistency: every claim inserted before the read is
   seen). Another live claim on an id with *other* bytes and a smaller token: this writer
   yields; it removes its claims and the upload is answered 409 (ItemExistsError). Only larger
   tokens: it waits (up to ``WAIT_S``) until they are gone, reading again;
3. look at the gallery again: an id a finished writer took meanwhile is a 409 too;
4. write the rows, then remove the claims.

Of two racing writers at least one sees the other's claim (each inserts before it reads). If
both do, the larger token yields and the smaller one goes on once it is gone. If only one does,
the other saw nothing and writes: the one that saw waits for that claim to go, which happens
only after the rows are written, and then finds the id taken (step 3): 409. Never two writes.
A writer that finished removed its claim only after writing its rows, so a later one sees the
row. Same bytes under one id are no conflict (same row either way). A claim older than
``CLAIM_TTL_S`` is a writer that died mid-way: ignored, and removed by whoever finds it; one
waited on for longer than ``WAIT_S`` makes the waiter yield (409, retry later).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Sequence

from pymilvus import DataType, MilvusClient

from index.errors import ItemExistsError
from index.items import ItemMeta
from index.milvus.connection import MilvusCollection
from index.milvus.paging import PAGE, chunks, query_in
from index.milvus.quoting import in_list
from index.milvus.schema import MAX_ID_BYTES, MAX_SHA_BYTES, STRONG

log = logging.getLogger("index.milvus_store")

SUFFIX = "_claims"
CLAIM_TTL_S = 300.0  # far longer than any write holds a claim; clocks of hosts may differ a bit
TOKEN_BYTES = 16
WAIT_S = 10.0  # the longest a writer waits for a claim with a larger token to go
POLL_S = 0.1


def claims_name(collection: str) -> str:
    return collection + SUFFIX


def ensure_claims(client: MilvusClient, collection: str) -> None:
    """Create (if missing) and load the claims collection; replicas may race to create it."""
    name = claims_name(collection)
    if not client.has_collection(name):
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("token", DataType.VARCHAR, is_primary=True, max_length=64)
        schema.add_field("image_id", DataType.VARCHAR, max_length=MAX_ID_BYTES)
        schema.add_field("sha256", DataType.VARCHAR, max_length=MAX_SHA_BYTES)
        schema.add_field("claimed_at", DataType.DOUBLE)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=2)  # Milvus needs one
        try:
            client.create_collection(name, schema=schema, **STRONG)
            params = client.prepare_index_params()
            params.add_index("vector", index_type="FLAT", metric_type="IP")
            client.create_index(name, params, sync=False)
        except Exception:
            if not client.has_collection(name):  # not a lost race: a real failure
                raise
    client.load_collection(name)


class Claims:
    """The claims of one gallery collection (``col``: a handle on the claims collection)."""

    def __init__(self, col: MilvusCollection) -> None:
        self._col = col

    def claim(self, items: Sequence[ItemMeta]) -> list[str]:
        """Claim the items' ids; ItemExistsError (nothing left claimed) when another live
        writer claims one with other bytes. Returns the tokens to :meth:`release`."""
        now = time.time()
        tokens = [secrets.token_hex(TOKEN_BYTES) for _ in items]
        rows = [
            {
                "token": token,
                "image_id": item.image_id,
                "sha256": item.sha256,
                "claimed_at": now,
                "vector": [1.0, 0.0],
            }
            for token, item in zip(tokens, items, strict=True)
        ]
        for chunk in chunks(rows, PAGE):
            self._col.call("claim ids", lambda c, chunk=chunk: c.insert(self._col.name, chunk))
        try:
            self._settle(items, tokens, now)
        except BaseException:
            self.release(tokens)
            raise
        return tokens

    def _settle(self, items: Sequence[ItemMeta], tokens: list[str], now: float) -> None:
        """Return once no other live claim with other bytes stands on our ids; raise
        ItemExistsError when one with a smaller token does, or one outlives ``WAIT_S``."""
        mine = {i.image_id: (i.sha256, t) for i, t in zip(items, tokens, strict=True)}
        fields = ["token", "image_id", "sha256", "claimed_at"]
        deadline = time.monotonic() + WAIT_S
        while True:
            found = query_in(self._col, "image_id", list(mine), fields)
            stale = [r["token"] for r in found if r["claimed_at"] < now - CLAIM_TTL_S]
            if stale:
                log.warning("removing %d claims of writers that died mid-way", len(stale))
                self.release(stale)
            rivals = [
                r
                for r in found
                if r["token"] not in stale
                and r["token"] != mine[r["image_id"]][1]
                and r["sha256"] != mine[r["image_id"]][0]
            ]
            if not rivals:
                return
            first = next((r for r in rivals if r["token"] < mine[r["image_id"]][1]), None)
            if first is not None or time.monotonic() > deadline:
                image_id = (first or rivals[0])["image_id"]
                raise ItemExistsError(
                    f"image_id {image_id!r} is being added with different content by another "
                    "writer; choose another id or retry (nothing was added)"
                )
            time.sleep(POLL_S)

    def release(self, tokens: Sequence[str]) -> None:
        for chunk in chunks(list(tokens), PAGE):
            expr = in_list("token", chunk)
            self._col.call("release claims", lambda c, e=expr: c.delete(self._col.name, filter=e))
