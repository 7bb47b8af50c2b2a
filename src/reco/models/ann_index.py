"""Inner-product nearest-neighbour search over item vectors, with FAISS.

Small catalogues are searched exactly (``IndexFlatIP``); past ``exact_below`` vectors
an approximate index takes over: IVF (inverted lists over k-means cells) or HNSW
(a navigable small-world graph). Every kind is built deterministically from the
vectors alone, so an index rebuilt from saved vectors answers like the original
(bit-exact for ``exact`` and ``ivf``; ``hnsw`` is built on one thread for the same
reason).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar

import faiss
import numpy as np

from reco.errors import ConfigurationError

# FAISS pads missing results with this distance for inner-product indexes.
_FAISS_MISSING = np.float32(-np.finfo(np.float32).max)
# k-means wants at least this many training points per cell (FAISS warns below 39).
_POINTS_PER_CELL = 39
# Training points per cell beyond which k-means gains nothing (FAISS's own cap).
_MAX_POINTS_PER_CELL = 256


class AnnIndex:
    """A search index over fixed vectors: ``search(queries, k)`` -> best ``k`` by inner product.

    Build it with :meth:`build`. ``kind`` is the resolved kind (``"exact"``, ``"ivf"``
    or ``"hnsw"``), ``size`` the number of vectors and ``dim`` their length. Results
    are (ids int64, scores float32), best first; slots beyond the vectors found are
    id -1 and score -inf.
    """

    KINDS: ClassVar[tuple[str, ...]] = ("auto", "exact", "ivf", "hnsw")

    def __init__(self, index: faiss.Index, kind: str, size: int, dim: int) -> None:
        self._index = index
        self.kind = kind
        self.size = size
        self.dim = dim

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        *,
        kind: str = "auto",
        exact_below: int = 50_000,
        nlist: int | None = None,
        nprobe: int | None = None,
        hnsw_m: int = 32,
        ef_construction: int = 80,
        ef_search: int = 128,
        seed: int = 42,
    ) -> AnnIndex:
        """Index ``vectors`` (rows x dim, finite floats) for inner-product search.

        ``kind="auto"`` searches exactly below ``exact_below`` vectors and uses IVF at
        or above it. IVF gets ``nlist`` cells (default about ``4 * sqrt(n)``, bounded
        so every cell has enough training points) and visits ``nprobe`` of them per
        query (default an eighth, at least 8). HNSW links each vector to ``hnsw_m``
        neighbours and explores ``ef_search`` (at least ``k``) while searching.
        """
        if kind not in cls.KINDS:
            raise ConfigurationError(
                f"unknown index kind {kind!r}; choose from: {', '.join(cls.KINDS)}"
            )
        if isinstance(exact_below, bool) or not isinstance(exact_below, int) or exact_below < 0:
            raise ConfigurationError(
                f"exact_below must be a non-negative integer, got {exact_below!r}"
            )
        data = _as_matrix(vectors, "vectors")
        if data.shape[0] == 0:
            raise ValueError("cannot index an empty set of vectors: at least one row is needed")
        n, dim = data.shape
        resolved = kind if kind != "auto" else ("exact" if n < exact_below else "ivf")
        if resolved == "exact":
            index: faiss.Index = faiss.IndexFlatIP(dim)
            index.add(data)
        elif resolved == "ivf":
            index = _build_ivf(data, nlist=nlist, nprobe=nprobe, seed=seed)
        else:
            index = _build_hnsw(data, m=hnsw_m, ef_construction=ef_construction)
            index.hnsw.efSearch = int(ef_search)
        return cls(index, resolved, n, dim)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` vectors with the highest inner product for each query row.

        Returns (ids, scores) of shape (rows, k), best first; ties keep FAISS's order.
        Missing slots (``k`` beyond the vectors, or fewer found by an approximate
        index) hold id -1 and score -inf.
        """
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        data = _as_matrix(queries, "queries")
        if data.shape[1] != self.dim:
            raise ValueError(
                f"queries have {data.shape[1]} columns but the index holds vectors of "
                f"length {self.dim}; embed the queries with the same model"
            )
        if data.shape[0] == 0:
            return np.empty((0, int(k)), np.int64), np.empty((0, int(k)), np.float32)
        if self.kind == "hnsw":
            # efSearch below k would return fewer than k results.
            self._index.hnsw.efSearch = max(int(self._index.hnsw.efSearch), int(k))
        scores, ids = self._index.search(data, int(k))
        ids = ids.astype(np.int64, copy=False)
        scores = scores.astype(np.float32, copy=False)
        missing = (ids < 0) | (scores <= _FAISS_MISSING)
        ids[missing] = -1
        scores[missing] = -np.inf
        return ids, scores

    def __repr__(self) -> str:
        return f"AnnIndex(kind={self.kind!r}, size={self.size}, dim={self.dim})"


def default_nlist(n: int) -> int:
    """IVF cells for ``n`` vectors: about 4 * sqrt(n), with enough points per cell."""
    return max(1, min(int(4 * math.sqrt(n)), n // _POINTS_PER_CELL))


def _build_ivf(
    data: np.ndarray, *, nlist: int | None, nprobe: int | None, seed: int
) -> faiss.IndexIVFFlat:
    n, dim = data.shape
    cells = default_nlist(n) if nlist is None else int(nlist)
    if cells < 1 or cells > n:
        raise ConfigurationError(f"nlist must be between 1 and the {n} vectors, got {nlist!r}")
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, cells, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = int(seed)
    index.cp.max_points_per_centroid = _MAX_POINTS_PER_CELL
    # FAISS would subsample itself with its own seed; doing it here keeps it explicit.
    limit = cells * _MAX_POINTS_PER_CELL
    sample = data
    if n > limit:
        rows = np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))
        sample = np.ascontiguousarray(data[rows])
    index.cp.verbose = False
    index.train(sample)
    index.add(data)
    probes = max(min(8, cells), cells // 8) if nprobe is None else int(nprobe)
    if probes < 1:
        raise ConfigurationError(f"nprobe must be at least 1, got {nprobe!r}")
    index.nprobe = min(probes, cells)
    return index


def _build_hnsw(data: np.ndarray, *, m: int, ef_construction: int) -> faiss.IndexHNSWFlat:
    if m < 2:
        raise ConfigurationError(f"hnsw_m must be at least 2, got {m!r}")
    index = faiss.IndexHNSWFlat(data.shape[1], int(m), faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = int(ef_construction)
    # Parallel insertion links vectors in a thread-dependent order; one thread makes
    # the graph (and so every answer) the same on every build.
    with _faiss_threads(1):
        index.add(data)
    return index


@contextmanager
def _faiss_threads(count: int) -> Iterator[None]:
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(count)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _as_matrix(values: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array (rows x dim), got shape {array.shape}")
    if array.dtype.kind not in "fiu":
        raise ValueError(f"{what} must hold numbers, got dtype {array.dtype}")
    array = np.ascontiguousarray(array, dtype=np.float32)
    if array.size and not np.isfinite(array).all():
        raise ValueError(f"{what} hold NaN or infinite values; only finite vectors can be indexed")
    return array
