"""The two towers as PyTorch modules (CPU or GPU; the model module drives them).

Item tower: item-id embedding (masked to zero for items without training
interactions, so cold items rest on their metadata) + mean of category embeddings +
mean of hashed-word embeddings + one embedding per attribute, then a residual MLP.
User tower: the weighted mean of the history items' item-tower vectors + one embedding
per user attribute, then a residual MLP. Both outputs are L2-normalised, so a score
is a cosine similarity and retrieval is inner-product search.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

EMBEDDING_INIT_STD = 0.05


@dataclass(frozen=True)
class NetShape:
    """Everything needed to rebuild the modules before loading their weights."""

    n_items: int
    dim: int
    hidden: int
    n_categories: int
    text_buckets: int
    item_attribute_sizes: tuple[int, ...]
    user_attribute_sizes: tuple[int, ...]

    def to_json(self) -> dict:
        """A JSON-ready description."""
        raw = asdict(self)
        raw["item_attribute_sizes"] = list(self.item_attribute_sizes)
        raw["user_attribute_sizes"] = list(self.user_attribute_sizes)
        return raw

    @classmethod
    def from_json(cls, raw: dict) -> NetShape:
        """The shape described by :meth:`to_json`."""
        return cls(
            n_items=int(raw["n_items"]),
            dim=int(raw["dim"]),
            hidden=int(raw["hidden"]),
            n_categories=int(raw["n_categories"]),
            text_buckets=int(raw["text_buckets"]),
            item_attribute_sizes=tuple(int(s) for s in raw["item_attribute_sizes"]),
            user_attribute_sizes=tuple(int(s) for s in raw["user_attribute_sizes"]),
        )


def _table(rows: int, dim: int, *, padding: bool) -> nn.Embedding:
    table = nn.Embedding(rows, dim, padding_idx=0 if padding else None)
    nn.init.normal_(table.weight, std=EMBEDDING_INIT_STD)
    if padding:
        with torch.no_grad():
            table.weight[0].zero_()
    return table


def _bag_mean(table: nn.Embedding | None, codes: Tensor, dim: int) -> Tensor:
    """Mean embedding of each row's non-zero codes (zeros for a row with none)."""
    if table is None or codes.shape[1] == 0:
        return torch.zeros(codes.shape[0], dim, device=codes.device)
    # embedding_bag skips the padding code 0 and never builds the (rows, len, dim) tensor.
    return F.embedding_bag(codes, table.weight, mode="mean", padding_idx=0)


class _Residual(nn.Module):
    """x + MLP(x): starts close to the pooled input, learns corrections on top."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.mlp(x)


class ItemTower(nn.Module):
    """Item id, categories, words and attributes -> a unit vector per item."""

    def __init__(self, shape: NetShape) -> None:
        super().__init__()
        self.dim = shape.dim
        self.ids = _table(shape.n_items, shape.dim, padding=False)
        self.categories = (
            _table(shape.n_categories + 1, shape.dim, padding=True) if shape.n_categories else None
        )
        self.words = (
            _table(shape.text_buckets + 1, shape.dim, padding=True) if shape.text_buckets else None
        )
        self.attributes = nn.ModuleList(
            _table(size, shape.dim, padding=False) for size in shape.item_attribute_sizes
        )
        self.head = _Residual(shape.dim, shape.hidden)

    def forward(
        self, ids: Tensor, id_weight: Tensor, categories: Tensor, words: Tensor, attributes: Tensor
    ) -> Tensor:
        """Unit vectors for a batch of items.

        ``id_weight`` (float, one per item) scales the id embedding: 0 masks it (no
        training interactions, or dropped out while training), 1 keeps it.
        """
        x = self.ids(ids) * id_weight.unsqueeze(1)
        x = x + _bag_mean(self.categories, categories, self.dim)
        x = x + _bag_mean(self.words, words, self.dim)
        for column, table in enumerate(self.attributes):
            x = x + table(attributes[:, column])
        return F.normalize(self.head(x), dim=1)


class UserTower(nn.Module):
    """Pooled history vector and user attributes -> a unit vector per user."""

    def __init__(self, shape: NetShape) -> None:
        super().__init__()
        self.attributes = nn.ModuleList(
            _table(size, shape.dim, padding=False) for size in shape.user_attribute_sizes
        )
        self.head = _Residual(shape.dim, shape.hidden)

    def forward(self, pooled: Tensor, attributes: Tensor) -> Tensor:
        """Unit vectors from pooled history vectors (rows x dim) and attribute codes."""
        x = pooled
        for column, table in enumerate(self.attributes):
            x = x + table(attributes[:, column])
        return F.normalize(self.head(x), dim=1)


@dataclass(frozen=True, eq=False)
class UserTowerArrays:
    """A trained :class:`UserTower`'s weights as numpy arrays, and its forward pass.

    Serving runs the user tower on a few rows at a time, where PyTorch's per-module
    dispatch costs several times the arithmetic of a 64-wide MLP; the same float32
    operations in numpy give the same vectors (to float rounding) for a fraction.
    """

    attribute_tables: tuple[np.ndarray, ...]
    hidden_weight: np.ndarray
    hidden_bias: np.ndarray
    output_weight: np.ndarray
    output_bias: np.ndarray

    @classmethod
    def of(cls, tower: UserTower) -> UserTowerArrays:
        """The arrays of ``tower`` (copied, so later training does not change them)."""

        def array(tensor: Tensor) -> np.ndarray:
            return tensor.detach().cpu().numpy().astype(np.float32, copy=True)

        first, _, second = tower.head.mlp
        return cls(
            attribute_tables=tuple(array(table.weight) for table in tower.attributes),
            hidden_weight=np.ascontiguousarray(array(first.weight).T),
            hidden_bias=array(first.bias),
            output_weight=np.ascontiguousarray(array(second.weight).T),
            output_bias=array(second.bias),
        )

    def __call__(self, pooled: np.ndarray, attributes: np.ndarray) -> np.ndarray:
        """What ``UserTower.forward`` computes: unit vectors (rows x dim, float32)."""
        x = np.array(pooled, dtype=np.float32)
        for column, table in enumerate(self.attribute_tables):
            x += table[attributes[:, column]]
        hidden = np.maximum(x @ self.hidden_weight + self.hidden_bias, np.float32(0))
        x += hidden @ self.output_weight + self.output_bias
        # F.normalize: divide by the norm, floored at 1e-12.
        norms = np.maximum(np.linalg.norm(x, axis=1, keepdims=True), np.float32(1e-12))
        return x / norms


class TwoTowerNet(nn.Module):
    """Both towers, built from a :class:`NetShape`."""

    def __init__(self, shape: NetShape) -> None:
        super().__init__()
        self.shape = shape
        self.items = ItemTower(shape)
        self.users = UserTower(shape)


# -- training --------------------------------------------------------------------------

# Share of items whose id embedding is hidden in a training batch, and of users whose
# attributes are: the towers must then answer from metadata alone, which is what
# cold items and unknown users get at serving time.
ID_DROPOUT = 0.1
ATTRIBUTE_DROPOUT = 0.1
# Embeddings of items computed at once when embedding the whole catalogue.
EMBED_CHUNK = 8192


@dataclass(frozen=True)
class TrainingSet:
    """Next-item examples over time-ordered interactions, plus every feature code.

    ``seq_items``/``seq_weights`` are the interactions sorted by (user, time);
    ``seq_user_start[p]`` is where position ``p``'s user begins. Example ``e`` predicts
    ``seq_items[positions[e]]`` from the up to ``history_len`` positions before it
    (same user) for user ``users[e]``. ``log_q`` is the log of each item's share of the
    targets (its in-batch sampling probability).
    """

    seq_items: np.ndarray
    seq_weights: np.ndarray
    seq_user_start: np.ndarray
    positions: np.ndarray
    users: np.ndarray
    log_q: np.ndarray
    item_categories: np.ndarray
    item_words: np.ndarray
    item_attributes: np.ndarray
    item_id_weight: np.ndarray
    user_attributes: np.ndarray


@dataclass
class TrainingReport:
    """What training did: loss per completed epoch, seconds, whether time ran out."""

    losses: list[float]
    seconds: float
    stopped_early: bool
    epochs_done: float


def embed_items(net: TwoTowerNet, data: TrainingSet, items: np.ndarray, device: str) -> Tensor:
    """Item-tower vectors of ``items`` (no dropout: id weight as in ``data``)."""
    return _item_vectors(net, data, items, device, generator=None)


def _item_vectors(
    net: TwoTowerNet,
    data: TrainingSet,
    items: np.ndarray,
    device: str,
    generator: torch.Generator | None,
) -> Tensor:
    id_weight = torch.from_numpy(data.item_id_weight[items]).to(device)
    if generator is not None:
        keep = torch.rand(len(items), generator=generator) >= ID_DROPOUT
        id_weight = id_weight * keep.to(device=device, dtype=id_weight.dtype)
    return net.items(
        torch.from_numpy(items).to(device),
        id_weight,
        torch.from_numpy(data.item_categories[items]).to(device),
        torch.from_numpy(data.item_words[items]).to(device),
        torch.from_numpy(data.item_attributes[items]).to(device),
    )


def embed_catalogue(net: TwoTowerNet, data: TrainingSet, device: str) -> np.ndarray:
    """Unit vectors of every item (float32, items x dim), computed in eval mode."""
    net.eval()
    n_items = len(data.item_id_weight)
    parts = []
    with torch.no_grad():
        for start in range(0, n_items, EMBED_CHUNK):
            items = np.arange(start, min(start + EMBED_CHUNK, n_items), dtype=np.int64)
            parts.append(embed_items(net, data, items, device).cpu().numpy())
    if not parts:
        return np.zeros((0, net.shape.dim), dtype=np.float32)
    return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)


def train_net(
    net: TwoTowerNet,
    data: TrainingSet,
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    temperature: float,
    history_len: int,
    max_seconds: float,
    seed: int,
    device: str,
    log: Callable[[str], None],
) -> TrainingReport:
    """Adam on the in-batch sampled softmax with logQ correction, bounded in time.

    Each batch scores every user against every target in the batch; a target's logit
    loses ``log q`` (its sampling probability), which makes the in-batch softmax an
    unbiased stand-in for the full softmax over the catalogue. Other rows' copies of a
    row's own target are masked (they are not negatives). Stops after ``epochs`` or
    when ``max_seconds`` have passed, whichever comes first (checked every batch).
    """
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.Adam(net.parameters(), lr=learning_rate)
    log_q = torch.from_numpy(data.log_q).to(device)
    n_examples = len(data.positions)
    losses: list[float] = []
    epochs_done = 0.0
    stopped_early = False
    net.train()
    for epoch in range(epochs):
        order = rng.permutation(n_examples)
        total, batches = 0.0, 0
        for start in range(0, n_examples, batch_size):
            batch = order[start : start + batch_size]
            if len(batch) < 2:
                continue  # a softmax over one target teaches nothing
            loss = _batch_loss(net, data, batch, history_len, temperature, log_q, generator, device)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total += float(loss.detach())
            batches += 1
            if time.perf_counter() - started > max_seconds:
                stopped_early = True
                break
        done_share = min(1.0, (start + batch_size) / max(1, n_examples))
        epochs_done = epoch + (done_share if stopped_early else 1.0)
        losses.append(total / max(1, batches))
        elapsed = time.perf_counter() - started
        log(f"epoch {epoch + 1}/{epochs}: loss {losses[-1]:.4f}, {elapsed:.1f} s")
        if stopped_early:
            log(f"time limit of {max_seconds:g} s reached after {epochs_done:.2f} epochs")
            break
    net.eval()
    return TrainingReport(losses, time.perf_counter() - started, stopped_early, epochs_done)


def _batch_loss(
    net: TwoTowerNet,
    data: TrainingSet,
    batch: np.ndarray,
    history_len: int,
    temperature: float,
    log_q: Tensor,
    generator: torch.Generator,
    device: str,
) -> Tensor:
    positions = data.positions[batch]
    targets = data.seq_items[positions]
    window = positions[:, None] - history_len + np.arange(history_len)[None, :]
    valid = window >= data.seq_user_start[positions][:, None]
    window = np.where(valid, window, 0)
    history = np.where(valid, data.seq_items[window], -1)
    weights = np.where(valid, data.seq_weights[window], 0.0).astype(np.float32)

    # The item tower runs once per distinct item of the batch (targets and histories).
    unique, inverse = np.unique(np.concatenate([targets, history[valid]]), return_inverse=True)
    vectors = _item_vectors(net, data, unique, device, generator)
    # F.embedding, not vectors[index]: indexing's backward accumulates in a thread-dependent
    # order on CPU, embedding's does not (bit-identical refits need that).
    target_vectors = F.embedding(torch.from_numpy(inverse[: len(targets)]).to(device), vectors)
    # Weighted mean of the history vectors, as at serving time: sum(w * v) / sum(|w|).
    flat_weights = weights[valid]
    offsets = np.r_[0, np.cumsum(valid.sum(axis=1))[:-1]]
    pooled = F.embedding_bag(
        torch.from_numpy(inverse[len(targets) :]).to(device),
        vectors,
        torch.from_numpy(offsets).to(device),
        mode="sum",
        per_sample_weights=torch.from_numpy(flat_weights).to(device),
    )
    mass = np.abs(weights).sum(axis=1, keepdims=True)
    pooled = pooled / torch.from_numpy(np.maximum(mass, np.float32(1e-6))).to(device)

    attributes = torch.from_numpy(data.user_attributes[data.users[batch]]).to(device)
    if attributes.shape[1]:
        keep = torch.rand(len(batch), 1, generator=generator) >= ATTRIBUTE_DROPOUT
        attributes = attributes * keep.to(device)
    users = net.users(pooled, attributes)

    target_ids = torch.from_numpy(targets).to(device)
    logits = users @ target_vectors.T / temperature - log_q[target_ids].unsqueeze(0)
    same = target_ids.unsqueeze(0) == target_ids.unsqueeze(1)
    same.fill_diagonal_(False)
    logits = logits.masked_fill(same, float("-inf"))
    labels = torch.arange(len(batch), device=device)
    return F.cross_entropy(logits, labels)
