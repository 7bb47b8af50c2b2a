"""Two-tower retrieval: a user tower over history and attributes, an item tower over
id, categories and words, trained with an in-batch softmax; items found with FAISS.

Training turns each user's time-ordered interactions into next-item examples (the
previous ``history_len`` items predict the next one). At serving time a history row
has no order, so the user tower pools all of the row's items by weight. Item vectors
are computed once after training and indexed (:class:`~reco.models.ann_index.AnnIndex`):
exact search for small catalogues, IVF or HNSW past ``exact_below`` items.

Items with no training interaction get no id embedding (it is masked to zero), so a
cold item with categories or text still gets a meaningful vector from its metadata
and can be retrieved.
"""

from __future__ import annotations

import json
import logging
import pickle
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix

from reco.data.dataset import Dataset
from reco.errors import ArtifactError, ConfigurationError, NotApplicableError
from reco.models.ann_index import AnnIndex
from reco.models.base import SCORE_BLOCK_CELLS, BaseRecommender, top_n
from reco.models.two_tower_features import (
    Attribute,
    ItemFeatureEncoder,
    encode_attributes,
    fit_attributes,
)

log = logging.getLogger(__name__)

WEIGHTS_FILE = "towers.pt"
FEATURES_FILE = "two_tower_features.json"
TEXT_BUCKETS = 2**13
MAX_TOKENS = 32
USER_KEY = "user_id"


class TwoTowerRecommender(BaseRecommender):
    """Two-tower neural retrieval (PyTorch) with FAISS search.

    Loss: in-batch sampled softmax over unit vectors scaled by ``1 / temperature``
    with the logQ correction (Yi et al., 2019), optimised with Adam for ``epochs``
    passes or ``max_seconds`` of training, whichever ends first (progress is logged
    at INFO per epoch). The same ``seed`` gives bit-identical weights on the same
    machine (``num_threads``: ``None`` trains on one CPU thread, or with PyTorch's
    setting on GPU; the tests find 1 and 2 threads bit-identical), as long as the time
    limit is not what stopped training.

    Defaults were tuned under the DESIGN protocol on ml-100k and ml-latest-small:
    temperature 0.1 beat 0.05, a 200-item training history beat 50 (serving pools a
    whole history row, so longer training windows match it better), and 5 epochs beat
    10 (more overfit). The default is 2 epochs all the same: as a pipeline source the
    model is fitted twice (on the validation split, then on all data), and 2 epochs
    keep full training on ml-latest-small under three minutes on 2 cores.

    ``index`` picks the search structure: ``"exact"``, ``"ivf"``, ``"hnsw"`` or
    ``"auto"`` (exact below ``exact_below`` items). ``recommend`` without candidates
    searches the index; with candidates (and ``score``) every item is scored exactly.
    ``users`` (training user indices, -1 unknown) brings in user attributes.
    """

    name: ClassVar[str] = "two_tower"

    def __init__(
        self,
        *,
        embedding_dim: int = 64,
        history_len: int = 200,
        epochs: int = 2,
        batch_size: int = 512,
        learning_rate: float = 0.003,
        temperature: float = 0.1,
        max_seconds: float = 120.0,
        index: str = "auto",
        exact_below: int = 50_000,
        seed: int = 42,
        num_threads: int | None = None,
    ) -> None:
        self.embedding_dim = embedding_dim
        self.history_len = history_len
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.temperature = temperature
        self.max_seconds = max_seconds
        self.index = index
        self.exact_below = exact_below
        self.seed = seed
        self.num_threads = num_threads

    # -- fitting -----------------------------------------------------------------------

    def _check_params(self) -> None:
        for name, low in (("embedding_dim", 1), ("history_len", 1), ("epochs", 1),
                          ("batch_size", 2), ("exact_below", 0)):  # fmt: skip
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
                raise ConfigurationError(
                    f"two_tower {name} must be an integer >= {low}, got {value!r}"
                )
        for name in ("learning_rate", "temperature", "max_seconds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ConfigurationError(f"two_tower {name} must be a number > 0, got {value!r}")
        if self.index not in AnnIndex.KINDS:
            raise ConfigurationError(
                f"two_tower index must be one of {', '.join(AnnIndex.KINDS)}, got {self.index!r}"
            )
        threads = self.num_threads
        if threads is not None and (
            isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
        ):
            raise ConfigurationError(
                f"two_tower num_threads must be a positive integer or None, got {threads!r}"
            )

    def _fit(self, data: Dataset) -> None:
        self._check_params()
        torch, net_module = _torch_modules()
        started = time.perf_counter()
        item_encoder = ItemFeatureEncoder.fit(
            data.item_features, text_buckets=TEXT_BUCKETS, max_tokens=MAX_TOKENS
        )
        user_specs = fit_attributes(data.user_features, exclude=(USER_KEY,))
        training = _training_set(data, item_encoder, user_specs, net_module)
        shape = net_module.NetShape(
            n_items=data.n_items,
            dim=int(self.embedding_dim),
            hidden=2 * int(self.embedding_dim),
            n_categories=len(item_encoder.categories),
            text_buckets=item_encoder.text_buckets,
            item_attribute_sizes=tuple(a.size for a in item_encoder.attributes),
            user_attribute_sizes=tuple(a.size for a in user_specs),
        )
        device = "cuda" if torch.cuda.is_available() else "cpu"
        log.info(
            "two_tower: %d examples, %d items (%d categories, %s words, %d item and %d user "
            "attributes) on %s",
            len(training.positions), data.n_items, shape.n_categories,
            "hashed" if shape.text_buckets else "no", len(item_encoder.attributes),
            len(user_specs), device,
        )  # fmt: skip
        # One CPU thread unless told otherwise: the towers' matrices are small, so a second
        # thread gains little, and OpenMP threads spinning on shared cores lost 3x here.
        threads = self.num_threads if self.num_threads is not None or device != "cpu" else 1
        with _torch_session(torch, int(self.seed), threads, device):
            net = net_module.TwoTowerNet(shape).to(device)
            report = net_module.train_net(
                net,
                training,
                epochs=int(self.epochs),
                batch_size=int(self.batch_size),
                learning_rate=float(self.learning_rate),
                temperature=float(self.temperature),
                history_len=int(self.history_len),
                max_seconds=float(self.max_seconds),
                seed=int(self.seed),
                device=device,
                log=lambda message: log.info("two_tower: %s", message),
            )
            embeddings = net_module.embed_catalogue(net, training, device)
        self.net_ = net.cpu()
        self._user_tower = net_module.UserTowerArrays.of(self.net_.users)
        self.item_encoder_ = item_encoder
        self.user_specs_ = user_specs
        self.item_embeddings_ = embeddings
        self.user_attributes_ = training.user_attributes.astype(np.int32)
        self.loss_history_ = np.asarray(report.losses, dtype=np.float32)
        self.epochs_run_ = float(report.epochs_done)
        self.stopped_early_ = bool(report.stopped_early)
        self.index_ = self._build_index(embeddings)
        self.training_seconds_ = time.perf_counter() - started

    def _build_index(self, embeddings: np.ndarray) -> AnnIndex:
        return AnnIndex.build(
            embeddings, kind=self.index, exact_below=int(self.exact_below), seed=int(self.seed)
        )

    # -- serving -----------------------------------------------------------------------

    def user_embeddings(self, histories: csr_matrix, users: np.ndarray | None = None) -> np.ndarray:
        """User-tower unit vectors (rows x dim, float32) for history rows.

        ``users`` gives each row's training user index (-1 for unknown) so the user's
        attributes count; without it every row is an unknown user. An empty row gets
        the vector of its attributes alone.
        """
        histories = self._check_histories(histories)
        return self._user_vectors(histories, self._check_users(users, histories.shape[0]))

    def embed_items(self, features: pd.DataFrame) -> np.ndarray:
        """Item-tower unit vectors for items described only by metadata (new items).

        ``features`` has the columns of the training items' metadata (``categories``,
        ``title``, ``text``, attributes); the item id plays no part, as for any item
        the model never saw interact.
        """
        self._check_fitted()
        if not isinstance(features, pd.DataFrame):
            raise TypeError(f"features must be a pandas DataFrame, got {type(features).__name__}")
        torch, _ = _torch_modules()
        frame = features.reset_index(drop=True)
        codes = self.item_encoder_.transform(frame, len(frame))
        n = len(frame)
        with torch.no_grad():
            vectors = self.net_.items(
                torch.zeros(n, dtype=torch.int64),
                torch.zeros(n, dtype=torch.float32),
                torch.from_numpy(codes["categories"]),
                torch.from_numpy(codes["tokens"]),
                torch.from_numpy(codes["attributes"]),
            )
        return vectors.numpy().astype(np.float32)

    def _check_users(self, users: np.ndarray | None, n_rows: int) -> np.ndarray | None:
        if users is None:
            return None
        users = np.asarray(users, dtype=np.int64)
        if users.shape != (n_rows,):
            raise ValueError(
                f"users must have one entry per history row ({n_rows}), got shape {users.shape}"
            )
        n_users = self.user_attributes_.shape[0]
        bad = (users < -1) | (users >= n_users)
        if bad.any():
            raise ValueError(
                f"users holds {int(users[bad][0])}, which is no training user index (0.."
                f"{n_users - 1}); pass -1 for a user the model was not trained with"
            )
        return users

    def _user_vectors(self, histories: csr_matrix, users: np.ndarray | None) -> np.ndarray:
        pooled = np.asarray(histories @ self.item_embeddings_, dtype=np.float32)
        mass = _row_abs_sums(histories).reshape(-1, 1)
        pooled /= np.maximum(mass, np.float32(1e-6))
        codes = np.zeros((histories.shape[0], self.user_attributes_.shape[1]), dtype=np.int64)
        if users is not None and codes.shape[1]:
            known = users >= 0
            codes[known] = self.user_attributes_[users[known]]
        return self._user_tower(pooled, codes)

    def _score_rows(self, histories: csr_matrix, users: np.ndarray | None) -> np.ndarray:
        return self._user_vectors(histories, users) @ self.item_embeddings_.T

    def recommend(
        self,
        histories: csr_matrix,
        n: int,
        *,
        candidates: np.ndarray | None = None,
        users: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` items per history row, as in :meth:`BaseRecommender.recommend`.

        Without ``candidates`` the FAISS index retrieves ``n`` plus the row's history
        length, the history is dropped, and a row left short by an approximate index
        is scored exactly instead. With ``candidates`` every candidate is scored.
        Empty rows get the popularity fallback.
        """
        histories = self._check_histories(histories)
        users = self._check_users(users, histories.shape[0])
        if candidates is not None:
            return super().recommend(histories, n, candidates=candidates, users=users)
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        n_rows = histories.shape[0]
        top_items = np.full((n_rows, n), -1, dtype=np.int64)
        top_scores = np.full((n_rows, n), -np.inf, dtype=np.float32)
        lengths = np.diff(histories.indptr)
        empty = lengths == 0
        if empty.any():
            items, scores = top_n(self.popularity_[None, :].astype(np.float32), n)
            top_items[empty], top_scores[empty] = items[0], scores[0]
        for rows in _row_chunks(np.flatnonzero(~empty), lengths, n, self.n_items_):
            block = histories[rows]
            vectors = self._user_vectors(block, None if users is None else users[rows])
            k = min(self.n_items_, n + int(lengths[rows].max()))
            found, scores = self.index_.search(vectors, k)
            scores[_in_history(block, found)] = -np.inf
            items, values = _best(found, scores, n)
            rankable = np.minimum(n, self.n_items_ - lengths[rows])
            short = (items >= 0).sum(axis=1) < rankable
            if short.any():  # an approximate index found too few: score those rows fully
                exact = vectors[short] @ self.item_embeddings_.T
                short_block = block[np.flatnonzero(short)]
                marks = np.repeat(np.arange(short_block.shape[0]), np.diff(short_block.indptr))
                exact[marks, short_block.indices] = -np.inf
                items[short], values[short] = top_n(exact, n)
            top_items[rows], top_scores[rows] = items, values
        return top_items, top_scores

    # -- persistence -------------------------------------------------------------------

    def _state(self) -> dict[str, np.ndarray]:
        return {
            "item_embeddings_": self.item_embeddings_,
            "user_attributes_": self.user_attributes_,
            "loss_history_": self.loss_history_,
            "epochs_run_": np.asarray(self.epochs_run_, dtype=np.float64),
            "stopped_early_": np.asarray(self.stopped_early_),
        }

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        embeddings = state["item_embeddings_"]
        if embeddings.ndim != 2 or embeddings.shape != (self.n_items_, self.embedding_dim):
            raise ValueError(
                f"item_embeddings_ has shape {embeddings.shape}, expected "
                f"({self.n_items_}, {self.embedding_dim})"
            )
        if embeddings.dtype != np.float32 or not np.isfinite(embeddings).all():
            raise ValueError("item_embeddings_ must be finite float32 values")
        attributes = state["user_attributes_"]
        if attributes.ndim != 2 or attributes.dtype != np.int32:
            raise ValueError(f"user_attributes_ must be a 2-D int32 array, got {attributes.dtype}")
        self.item_embeddings_ = embeddings
        self.user_attributes_ = attributes
        self.loss_history_ = state["loss_history_"].astype(np.float32)
        self.epochs_run_ = float(state["epochs_run_"])
        self.stopped_early_ = bool(state["stopped_early_"])
        self.index_ = self._build_index(embeddings)

    def save(self, path: Path) -> None:
        """Write params (JSON), arrays (npz), tower weights (torch state_dict) and the
        feature vocabularies (JSON) to folder ``path``. Nothing is pickled."""
        torch, _ = _torch_modules()
        super().save(path)
        path = Path(path)
        torch.save(self.net_.state_dict(), path / WEIGHTS_FILE)
        features = {
            "shape": self.net_.shape.to_json(),
            "item_features": self.item_encoder_.to_json(),
            "user_attributes": [a.to_json() for a in self.user_specs_],
        }
        (path / FEATURES_FILE).write_text(json.dumps(features, indent=2))

    @classmethod
    def load(cls, path: Path) -> Self:
        """Read a model saved by :meth:`save` (weights loaded with ``weights_only``);
        raises ArtifactError when any part is missing or damaged."""
        model = super().load(path)
        path = Path(path)
        try:
            torch, net_module = _torch_modules()
            features = json.loads((path / FEATURES_FILE).read_text())
            shape = net_module.NetShape.from_json(features["shape"])
            if shape.n_items != model.n_items_ or shape.dim != model.embedding_dim:
                raise ValueError(
                    f"the towers are for {shape.n_items} items of dimension {shape.dim}, "
                    f"the arrays for {model.n_items_} of {model.embedding_dim}"
                )
            user_specs = [Attribute.from_json(a) for a in features["user_attributes"]]
            if len(user_specs) != model.user_attributes_.shape[1]:
                raise ValueError("user attribute vocabularies do not match user_attributes_")
            net = net_module.TwoTowerNet(shape)
            weights = torch.load(path / WEIGHTS_FILE, map_location="cpu", weights_only=True)
            net.load_state_dict(weights, strict=True)
            net.eval()
            model.net_ = net
            # Serving runs the user tower in numpy (see UserTowerArrays); never saved.
            model._user_tower = net_module.UserTowerArrays.of(net.users)
            model.item_encoder_ = ItemFeatureEncoder.from_json(features["item_features"])
            model.user_specs_ = user_specs
        except ArtifactError:
            raise
        except (
            OSError, ValueError, KeyError, TypeError, RuntimeError, EOFError,
            zipfile.BadZipFile, pickle.UnpicklingError,
        ) as exc:  # fmt: skip
            raise ArtifactError(
                f"cannot load two_tower towers from {path}: {exc}. "
                "The artifact is missing or corrupted; retrain with `reco train`."
            ) from exc
        return model


# -- helpers ---------------------------------------------------------------------------


def _torch_modules() -> tuple[Any, Any]:
    """torch and the network module, imported on first use (torch is an optional extra)."""
    try:
        import torch

        from reco.models import two_tower_net
    except ImportError as exc:
        raise NotApplicableError(
            f"two_tower needs PyTorch, which is not installed ({exc}); "
            "install it with `pip install 'reco[torch]'`"
        ) from exc
    return torch, two_tower_net


@contextmanager
def _torch_session(torch: Any, seed: int, threads: int | None, device: str) -> Iterator[None]:
    """Seeded, deterministic torch work; global torch settings are restored afterwards."""
    threads_before = torch.get_num_threads()
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if threads is not None:
            torch.set_num_threads(threads)
        if device != "cpu":
            # PyTorch's CPU kernels used here are deterministic already (the tests check
            # bit-identical refits); on GPU ask for deterministic kernels, warning where
            # cuBLAS cannot give them without its workspace environment variable.
            torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            yield
        finally:
            torch.set_num_threads(threads_before)
            if device != "cpu":
                torch.use_deterministic_algorithms(deterministic_before)


def _training_set(
    data: Dataset, item_encoder: ItemFeatureEncoder, user_specs: list[Attribute], net_module: Any
) -> Any:
    """Next-item examples from each user's interactions in time order, with feature codes."""
    times = data.timestamps
    if np.isnan(times).any():
        # Without (some) timestamps the dataset's row order stands in for time.
        times = np.where(np.isnan(times), -np.inf, times) if not np.isnan(times).all() else None
    rows = np.arange(data.n_interactions)
    keys = (rows, data.user_idx) if times is None else (rows, times, data.user_idx)
    order = np.lexsort(keys)
    seq_users = data.user_idx[order].astype(np.int64)
    seq_items = data.item_idx[order].astype(np.int64)
    seq_weights = data.weights[order].astype(np.float32)
    first = np.r_[True, seq_users[1:] != seq_users[:-1]]
    user_start = np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))
    # A target needs at least one earlier interaction and a positive weight (a negative
    # one marks a dislike: history, never a thing to predict).
    positions = np.flatnonzero(~first & (seq_weights > 0)).astype(np.int64)
    if len(positions) == 0:
        raise NotApplicableError(
            "two_tower learns to predict a user's next item from earlier ones, but no user "
            "has two or more interactions (with a positive weight) in this data"
        )
    target_counts = np.bincount(seq_items[positions], minlength=data.n_items)
    with np.errstate(divide="ignore"):
        log_q = np.log(target_counts / len(positions)).astype(np.float32)
    codes = item_encoder.transform(data.item_features, data.n_items)
    return net_module.TrainingSet(
        seq_items=seq_items,
        seq_weights=seq_weights,
        seq_user_start=user_start.astype(np.int64),
        positions=positions,
        users=seq_users[positions],
        log_q=log_q,
        item_categories=codes["categories"],
        item_words=codes["tokens"],
        item_attributes=codes["attributes"],
        item_id_weight=(data.item_counts() > 0).astype(np.float32),
        user_attributes=encode_attributes(data.user_features, user_specs, data.n_users),
    )


def _row_chunks(rows: np.ndarray, lengths: np.ndarray, n: int, n_items: int) -> Iterator:
    """Rows in chunks whose search results (rows x k) stay within the scoring budget."""
    if len(rows) == 0:
        return
    k = min(n_items, n + int(lengths[rows].max()))
    step = max(1, SCORE_BLOCK_CELLS // max(1, k))
    for start in range(0, len(rows), step):
        yield rows[start : start + step]


def _in_history(block: csr_matrix, found: np.ndarray) -> np.ndarray:
    """True where ``found[r, j]`` is an item of history row ``r`` (or a missing slot)."""
    width = np.int64(max(1, block.shape[1]))
    marks = np.repeat(np.arange(block.shape[0], dtype=np.int64), np.diff(block.indptr))
    seen_keys = np.sort(marks * width + block.indices.astype(np.int64))
    keys = np.arange(found.shape[0], dtype=np.int64)[:, None] * width + found
    if len(seen_keys) == 0:
        return found < 0
    at = np.minimum(np.searchsorted(seen_keys, keys), len(seen_keys) - 1)
    return (seen_keys[at] == keys) | (found < 0)


def _best(found: np.ndarray, scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` best (item, score) pairs per row, ordered as :func:`top_n` orders them."""
    tie_break = np.where(found < 0, np.iinfo(np.int64).max, found)
    order = np.lexsort((tie_break, -scores), axis=1)[:, :n]
    items = np.take_along_axis(found, order, axis=1)
    values = np.take_along_axis(scores, order, axis=1)
    invalid = ~np.isfinite(values)
    items[invalid], values[invalid] = -1, -np.inf
    if items.shape[1] < n:
        pad = n - items.shape[1]
        items = np.pad(items, ((0, 0), (0, pad)), constant_values=-1)
        values = np.pad(values, ((0, 0), (0, pad)), constant_values=-np.inf)
    return items, values.astype(np.float32)


def _row_abs_sums(histories: csr_matrix) -> np.ndarray:
    """Each row's sum of absolute weights (float32), over the stored entries: scipy's
    ``abs(m).sum(axis=1)`` builds a matrix and a product for it, several times the cost."""
    sums = np.zeros(histories.shape[0], dtype=np.float32)
    filled = np.diff(histories.indptr) > 0
    if filled.any():
        magnitudes = np.abs(histories.data).astype(np.float32, copy=False)
        sums[filled] = np.add.reduceat(magnitudes, histories.indptr[:-1][filled])
    return sums
