"""The learned reranker: LightGBM LambdaRank over candidate features.

Trained on requests in the past (each user's history up to a point, labels = the
items they interacted with next), early-stopped on the NDCG@10 of other users, saved
as LightGBM's own text format (no pickle) and loaded back bit-exact.

The service compiles the trees to machine code (:meth:`Ranker.compile`, with lleaves):
one request's few hundred candidates are scored about five times faster than by
LightGBM's predictor, whose fixed cost per call dominates at that size.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np

from reco.config import RankerConfig
from reco.errors import ArtifactError, RecoError

log = logging.getLogger(__name__)

EVAL_AT = 10
# Compiled rankers kept per process (see Ranker.compile): the served version, the one
# being loaded beside it, and a couple to roll back to.
_COMPILED_KEPT = 4
_COMPILED: OrderedDict[str, Any] = OrderedDict()
_COMPILED_LOCK = threading.Lock()


@dataclass(frozen=True)
class RankerData:
    """Candidates of many requests: features, binary labels and the request of each row.

    Rows of one request are contiguous; ``groups`` holds each request's row count.
    """

    features: np.ndarray
    labels: np.ndarray
    groups: np.ndarray

    def requests(self, keep: np.ndarray) -> RankerData:
        """The requests selected by a boolean mask over requests."""
        owners = np.repeat(np.arange(len(self.groups)), self.groups)
        rows = keep[owners]
        return RankerData(self.features[rows], self.labels[rows], self.groups[keep])

    def with_positives(self) -> RankerData:
        """Only the requests with at least one relevant candidate (others teach nothing)."""
        owners = np.repeat(np.arange(len(self.groups)), self.groups)
        positives = np.bincount(owners, weights=self.labels, minlength=len(self.groups))
        return self.requests(positives > 0)


class SmoothedStopping:
    """LightGBM callback: early stopping on the stopping users' NDCG@10, smoothed.

    NDCG@10 of a few hundred users moves by more from one round to the next than the
    ranker improves, so the raw best round is mostly noise (it was round 3 on one
    MovieLens split). The mean over a trailing ``window`` of rounds is followed
    instead; boosting stops ``patience`` rounds after its best, and the round kept is
    the middle of the best window.
    """

    order = 30  # after LightGBM's own evaluation callbacks

    def __init__(self, window: int, patience: int) -> None:
        self.window = window
        self.patience = patience
        self.values: list[float] = []
        self.best_value = -np.inf
        self.best_end = 0

    @property
    def best_round(self) -> int:
        """The round to keep (1-based)."""
        return max(1, self.best_end - (min(self.window, self.best_end) - 1) // 2)

    def __call__(self, env: lgb.callback.CallbackEnv) -> None:
        value = next(
            result[2] for result in env.evaluation_result_list if result[1] == f"ndcg@{EVAL_AT}"
        )
        self.values.append(float(value))
        smoothed = float(np.mean(self.values[-self.window :]))
        if smoothed > self.best_value:
            self.best_value, self.best_end = smoothed, len(self.values)
        elif len(self.values) - self.best_end >= self.patience:
            raise lgb.callback.EarlyStopException(self.best_round - 1, env.evaluation_result_list)


class Ranker:
    """A trained LightGBM booster and the feature names it expects, in order."""

    def __init__(self, booster: lgb.Booster, feature_names: list[str]) -> None:
        self.booster = booster
        self.feature_names = list(feature_names)
        self._compiled = None  # lleaves' model of the same trees, once compiled
        if booster.num_feature() != len(self.feature_names):
            raise ArtifactError(
                f"the ranker was trained on {booster.num_feature()} features but "
                f"{len(self.feature_names)} feature names were given"
            )

    @classmethod
    def fit(
        cls,
        train: RankerData,
        stopping: RankerData,
        feature_names: list[str],
        config: RankerConfig,
        *,
        seed: int,
    ) -> Ranker:
        """Boost on ``train``, stopping when NDCG@10 on ``stopping`` stops improving."""
        train, stopping = train.with_positives(), stopping.with_positives()
        if len(train.groups) == 0 or len(stopping.groups) == 0:
            raise RecoError(
                "the ranker has no validation request with a relevant candidate to learn "
                "from; add interactions or disable it (RECO_PIPELINE ranker.enabled false)"
            )
        params = {
            "objective": "lambdarank",
            "metric": "ndcg",
            "eval_at": [EVAL_AT],
            "learning_rate": config.learning_rate,
            "num_leaves": config.num_leaves,
            "min_data_in_leaf": config.min_data_in_leaf,
            "feature_fraction": config.feature_fraction,
            "bagging_fraction": config.bagging_fraction,
            "bagging_freq": 1,
            "lambda_l2": config.lambda_l2,
            "lambdarank_truncation_level": config.truncation_level,
            "seed": seed,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": config.num_threads,
            "verbose": -1,
        }
        train_set = lgb.Dataset(
            train.features,
            train.labels.astype(np.float32),
            group=train.groups,
            feature_name=feature_names,
            free_raw_data=True,
        )
        stop_set = lgb.Dataset(
            stopping.features,
            stopping.labels.astype(np.float32),
            group=stopping.groups,
            reference=train_set,
        )
        stopper = SmoothedStopping(config.stopping_window, config.early_stopping_rounds)
        booster = lgb.train(
            params,
            train_set,
            num_boost_round=config.max_rounds,
            valid_sets=[stop_set],
            valid_names=["stopping"],
            callbacks=[stopper],
        )
        best = max(1, min(stopper.best_round, booster.current_iteration()))
        log.info(
            "ranker: %d rounds kept, stopping NDCG@%d %.4f (mean over %d rounds)",
            best,
            EVAL_AT,
            stopper.best_value,
            config.stopping_window,
        )
        # Keep only the rounds that early stopping chose: what is saved is what scored.
        model_text = booster.model_to_string(num_iteration=best)
        return cls(lgb.Booster(model_str=model_text), feature_names)

    @property
    def n_rounds(self) -> int:
        """Boosting rounds in the model."""
        return self.booster.current_iteration()

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Ranking scores (float64), higher is better."""
        if features.shape[1] != len(self.feature_names):
            raise ValueError(
                f"the ranker expects {len(self.feature_names)} features, got {features.shape[1]}"
            )
        if len(features) == 0:
            return np.zeros(0)
        if self._compiled is not None:
            return self._compiled.predict(features, n_jobs=1)
        return self.booster.predict(features, num_threads=1)

    @property
    def compiled(self) -> bool:
        """Whether :meth:`predict` runs the compiled trees."""
        return self._compiled is not None

    def compile(self) -> None:
        """Compile the trees to machine code for :meth:`predict` (a few seconds for a
        few hundred trees). The scores are LightGBM's up to float rounding (the trees
        are summed in another order, about 1e-15 apart). RecoError when it fails; the
        ranker then keeps LightGBM's predictor.

        The last few compiled models are kept per process by their text, so loading a
        version again (a rollback, another pipeline object of the same model) is free.
        """
        text = self.booster.model_to_string()
        key = hashlib.sha256(text.encode()).hexdigest()
        with _COMPILED_LOCK:
            compiled = _COMPILED.get(key)
            if compiled is None:
                compiled = _compile_trees(text)
                _COMPILED[key] = compiled
                while len(_COMPILED) > _COMPILED_KEPT:
                    _COMPILED.popitem(last=False)
            _COMPILED.move_to_end(key)
        self._compiled = compiled

    def importance(self) -> dict[str, float]:
        """Share of the total gain each feature brings, largest first."""
        gains = self.booster.feature_importance("gain")
        total = float(gains.sum()) or 1.0
        pairs = sorted(zip(self.feature_names, gains, strict=True), key=lambda p: -p[1])
        return {name: round(float(gain) / total, 4) for name, gain in pairs}

    def to_string(self) -> str:
        """The model as LightGBM text, with the feature names it expects."""
        return self.booster.model_to_string()

    @classmethod
    def from_string(cls, text: str, feature_names: list[str]) -> Ranker:
        """The ranker saved by :meth:`to_string`; ArtifactError when it is damaged."""
        try:
            booster = lgb.Booster(model_str=text)
        except lgb.basic.LightGBMError as exc:
            raise ArtifactError(f"the ranker model text cannot be read: {exc}") from exc
        if booster.feature_name() != list(feature_names):
            raise ArtifactError(
                "the ranker's feature names do not match the pipeline's: "
                f"{json.dumps(booster.feature_name()[:5])}... vs {json.dumps(feature_names[:5])}..."
            )
        return cls(booster, feature_names)


def _compile_trees(text: str) -> Any:
    """lleaves' compiled model of a LightGBM model text; RecoError when it fails."""
    import lleaves  # the compiler pulls in LLVM: only processes that serve need it

    # lleaves reads a model file; the text is written out and removed again.
    handle, path = tempfile.mkstemp(prefix="reco-ranker-", suffix=".txt")
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
        compiled = lleaves.Model(model_file=path)
        compiled.compile()
    except Exception as exc:
        raise RecoError(f"the ranker's trees could not be compiled: {exc}") from exc
    finally:
        os.unlink(path)
    return compiled
