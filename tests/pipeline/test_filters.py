"""Filters: seen items, categories, availability, explicit excludes, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from reco.data.dataset import Dataset
from reco.errors import ValidationError
from reco.pipeline.catalog import Catalog
from reco.pipeline.filters import Filters, blocked, filters_per_row
from reco.pipeline.history import Histories


def catalogue(available=("yes", "yes", "no", None)) -> tuple[Dataset, Catalog]:
    interactions = pd.DataFrame({"user_id": ["u1", "u1", "u2"], "item_id": ["a", "b", "c"]})
    items = pd.DataFrame(
        {
            "item_id": ["a", "b", "c", "d"],
            "categories": ["shoes|sale", "shoes", "hats", "hats|sale"],
            "available": list(available),
        }
    )
    data = Dataset.from_frames(interactions, items)
    return data, Catalog.from_dataset(data)


def ids(data: Dataset, mask_row: np.ndarray) -> set[str]:
    return set(data.items.ids[np.flatnonzero(~mask_row)])


def test_seen_unavailable_and_explicit_items_are_blocked():
    data, catalog = catalogue()
    history = Histories.from_dataset(data, np.array([0, 1]))
    out = blocked(
        catalog,
        data.items,
        history,
        [Filters(), Filters(exclude_items=("d", "nope"))],
        exclude_seen=True,
    )
    assert ids(data, out[0]) == {"d"}  # a, b seen; c unavailable
    assert ids(data, out[1]) == {"a", "b"}  # c seen and unavailable, d excluded


def test_categories_include_and_exclude():
    data, catalog = catalogue(available=("yes",) * 4)
    history = Histories.empty(2, data.n_items)
    rules = [Filters(include_categories=("sale",)), Filters(exclude_categories=("shoes",))]
    out = blocked(catalog, data.items, history, rules, exclude_seen=True)
    assert ids(data, out[0]) == {"a", "d"}
    assert ids(data, out[1]) == {"c", "d"}


def test_seen_items_may_be_allowed_per_request():
    data, catalog = catalogue(available=("yes",) * 4)
    history = Histories.from_dataset(data, np.array([0]))
    out = blocked(catalog, data.items, history, [Filters(exclude_seen=False)], exclude_seen=True)
    assert ids(data, out[0]) == {"a", "b", "c", "d"}


def test_unknown_category_names_the_known_ones():
    data, catalog = catalogue()
    with pytest.raises(ValidationError, match=r"unknown category.*'boots'.*hats"):
        blocked(
            catalog,
            data.items,
            Histories.empty(1, data.n_items),
            [Filters(include_categories=("boots",))],
            exclude_seen=True,
        )


def test_filters_from_dicts_and_their_errors():
    rule = Filters.coerce({"include_categories": "hats", "exclude_items": ["a"]})
    assert rule == Filters(include_categories=("hats",), exclude_items=("a",))
    assert filters_per_row(None, 2) == [Filters(), Filters()]
    with pytest.raises(ValidationError, match="unknown filter keys"):
        Filters.coerce({"category": "hats"})
    with pytest.raises(ValidationError, match="exclude_seen must be true or false"):
        Filters.coerce({"exclude_seen": "no"})
    with pytest.raises(ValidationError, match="one per request"):
        filters_per_row([None], 2)


def test_a_bad_available_value_is_a_clear_error():
    with pytest.raises(ValidationError, match=r"available.*'maybe'"):
        catalogue(available=("yes", "maybe", "no", "yes"))
