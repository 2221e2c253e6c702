"""Zero-copy numpy views of a flat master's vectors and ids, for engines other than FAISS.

The vectors of an ``IndexIDMap2(IndexFlatIP)`` live in FAISS's own buffer; copying them out
(``reconstruct_n``) would double a 2 GB gallery. The views point into that buffer instead, so
they are only valid while the index object lives and is not changed. Both hold here: a view
keeps a reference to its master, and masters are never changed after a snapshot holds them
(every write makes a new index, see ``faiss_backend``).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import faiss
import numpy as np

if TYPE_CHECKING:
    import torch


class FlatView:
    """``vectors`` (n × d float32, read-only), ``tensor`` (the same memory for torch, which has
    no read-only tensors: never write to it) and ``ids`` (n int64, the IDMap labels) of a flat
    master, in storage order, without copying."""

    def __init__(self, master: faiss.Index) -> None:
        if not isinstance(master, faiss.IndexIDMap2):
            raise TypeError(f"a flat view needs an IndexIDMap2, got {type(master).__name__}")
        flat = faiss.downcast_index(master.index)
        if not isinstance(flat, faiss.IndexFlat):
            raise TypeError(f"a flat view needs a flat index, got {type(flat).__name__}")
        self._master = master  # keeps the buffers alive as long as the views
        n, d = int(master.ntotal), int(master.d)
        self.n, self.dim = n, d
        if n == 0:
            raw = np.zeros((0, d), np.float32)
            self.ids = np.zeros(0, np.int64)
        else:
            raw = faiss.rev_swig_ptr(flat.get_xb(), n * d).reshape(n, d)
            self.ids = faiss.rev_swig_ptr(master.id_map.data(), n)
        self._raw = raw  # writable: torch warns about (and cannot honour) read-only arrays
        self.vectors = raw.view()
        self.vectors.flags.writeable = False
        self.ids.flags.writeable = False

    @functools.cached_property
    def tensor(self) -> torch.Tensor:
        import torch  # 1.7 s to import: only where an engine needs it, not on every index open

        return torch.from_numpy(self._raw)

    @property
    def nbytes(self) -> int:
        return int(self.vectors.nbytes)
