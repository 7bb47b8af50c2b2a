"""A synthetic shop: users, items and interactions with the structure real data has.

What is in it, and why each part matters to a recommender:

* **taste** — every user prefers a few *niches* (a category and a style inside it) and
  spends most sessions there, so collaborative filtering has real signal to find;
* **segments** — device, country and age band shift which categories users like, so
  context-aware popularity beats global popularity for cold users;
* **long tail** — item popularity is Zipf-like inside every niche;
* **drift** — each item's popularity rises or fades over time, new items appear during
  the period (and get interactions only after they appear) with a novelty boost;
* **sessions** — interactions come in bursts seconds apart around one intent, and a
  view is often followed by a click or a purchase of the same item;
* **events** — ``view``, ``click`` and ``purchase`` in a realistic mix.

Everything is vectorised numpy: 10M interactions take seconds, not minutes, and the
same seed always gives the same frames.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from reco.data import schema
from reco.data.schema import Frames
from reco.errors import ConfigurationError

# category -> (nouns, adjectives); titles and texts are drawn from these words so a
# content model can tell categories apart.
CATALOG: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "electronics": (
        ("headphones", "speaker", "charger", "tablet", "camera", "monitor"),
        ("wireless", "smart", "portable", "hd", "bluetooth", "fast"),
    ),
    "books": (
        ("novel", "memoir", "cookbook", "thriller", "anthology", "guide"),
        ("bestselling", "illustrated", "hardcover", "classic", "gripping", "annotated"),
    ),
    "fashion": (
        ("jacket", "dress", "sneakers", "scarf", "jeans", "shirt"),
        ("slim", "linen", "leather", "oversized", "striped", "denim"),
    ),
    "home": (
        ("lamp", "rug", "cushion", "vase", "curtain", "shelf"),
        ("cozy", "minimalist", "woven", "ceramic", "rustic", "velvet"),
    ),
    "sports": (
        ("racket", "yoga mat", "dumbbell", "bicycle", "helmet", "ball"),
        ("lightweight", "durable", "grippy", "adjustable", "aero", "training"),
    ),
    "beauty": (
        ("serum", "lipstick", "moisturizer", "palette", "shampoo", "perfume"),
        ("hydrating", "matte", "organic", "fragrant", "gentle", "radiant"),
    ),
    "toys": (
        ("puzzle", "robot", "doll", "blocks", "kite", "board game"),
        ("colorful", "educational", "wooden", "plush", "interactive", "magnetic"),
    ),
    "grocery": (
        ("coffee", "tea", "chocolate", "olive oil", "pasta", "granola"),
        ("roasted", "artisan", "fair-trade", "spicy", "gluten-free", "smoked"),
    ),
    "music": (
        ("vinyl", "guitar", "keyboard", "drum kit", "microphone", "ukulele"),
        ("acoustic", "electric", "vintage", "studio", "analog", "tuned"),
    ),
    "movies": (
        ("box set", "documentary", "blu-ray", "animation", "drama", "comedy"),
        ("remastered", "award-winning", "director's", "4k", "cult", "indie"),
    ),
    "games": (
        ("console", "controller", "rpg", "strategy game", "headset", "shooter"),
        ("open-world", "multiplayer", "retro", "co-op", "competitive", "epic"),
    ),
    "garden": (
        ("planter", "hose", "seeds", "pruner", "birdhouse", "compost bin"),
        ("perennial", "weatherproof", "raised", "heirloom", "solar", "terracotta"),
    ),
    "automotive": (
        ("dash cam", "car charger", "floor mats", "wax", "jump starter", "seat cover"),
        ("heavy-duty", "universal", "all-weather", "compact", "quick", "rugged"),
    ),
    "health": (
        ("vitamins", "thermometer", "massager", "protein", "first aid kit", "scale"),
        ("daily", "digital", "natural", "clinical", "soothing", "plant-based"),
    ),
    "pets": (
        ("dog bed", "cat tree", "leash", "aquarium", "chew toy", "litter"),
        ("orthopedic", "washable", "reflective", "grain-free", "calming", "sturdy"),
    ),
    "travel": (
        ("suitcase", "backpack", "neck pillow", "adapter", "packing cubes", "duffel"),
        ("carry-on", "expandable", "anti-theft", "waterproof", "foldable", "hard-shell"),
    ),
    "office": (
        ("notebook", "desk chair", "pen set", "planner", "stapler", "desk lamp"),
        ("ergonomic", "dotted", "refillable", "standing", "quiet", "premium"),
    ),
    "kids": (
        ("stroller", "crib", "car seat", "bottle", "onesie", "storybook"),
        ("safe", "soft", "convertible", "bpa-free", "snug", "bedtime"),
    ),
    "outdoors": (
        ("tent", "sleeping bag", "lantern", "hiking boots", "hammock", "stove"),
        ("ultralight", "insulated", "trail", "four-season", "packable", "camping"),
    ),
    "jewelry": (
        ("necklace", "ring", "earrings", "bracelet", "watch", "pendant"),
        ("gold", "silver", "handmade", "gemstone", "delicate", "engraved"),
    ),
}
CATEGORIES = tuple(CATALOG)
STYLES = ("classic", "modern", "budget", "premium", "eco")
DEVICES = ("mobile", "desktop", "tablet")
DEVICE_SHARES = (0.58, 0.32, 0.10)
OPERATING_SYSTEMS = {
    "mobile": (("android", "ios"), (0.6, 0.4)),
    "desktop": (("windows", "macos", "linux"), (0.7, 0.25, 0.05)),
    "tablet": (("ipados", "android"), (0.6, 0.4)),
}
COUNTRIES = ("US", "IN", "GB", "DE", "BR", "FR", "JP", "ES", "CA", "MX")
COUNTRY_SHARES = (0.30, 0.15, 0.10, 0.09, 0.08, 0.07, 0.07, 0.05, 0.05, 0.04)
AGE_BANDS = ("18-24", "25-34", "35-44", "45-54", "55+")
AGE_SHARES = (0.18, 0.30, 0.24, 0.16, 0.12)
EVENT_TYPES = ("view", "click", "purchase")
_STR = schema.STR

_DAY = 86_400
_FAVOURITES = 3  # niches each user prefers
_SESSION_MEAN = 4.0  # interactions per session
_GAP_SECONDS = 45.0  # mean time between interactions of a session
_STAY_ON_INTENT = 0.6  # share of a session's interactions in its intent niche
_OTHER_FAVOURITE = 0.25  # share in another of the user's favourite niches (rest: explore)
_REPEAT = 0.3  # chance an interaction acts again on the session's previous item
_NOVELTY_DAYS = 14.0
_OLD_ITEMS = 0.7  # share of items that exist before the period starts
# Evening-heavy hour-of-day profile of session starts (UTC), shared by everyone.
_HOURS = np.array(
    [2, 1, 1, 1, 1, 2, 3, 4, 5, 5, 5, 5, 6, 6, 5, 5, 5, 6, 7, 8, 9, 9, 7, 4], dtype=np.float64
)


def generate(
    n_users: int,
    n_items: int,
    n_interactions: int,
    *,
    seed: int = 42,
    start: str = "2024-01-01",
    days: int = 180,
) -> Frames:
    """Generate users, items and interactions over ``days`` days from ``start`` (UTC).

    Returns canonical :class:`~reco.data.schema.Frames`: interactions sorted by time
    (``value`` empty, no ``event_id``), items with ``title``, ``text``,
    ``categories``, ``created_at`` and ``price``, users with ``device``, ``os``,
    ``country`` and ``age_band``. The same arguments always give the same frames.
    """
    _check(n_users, n_items, n_interactions, days)
    try:
        t0 = int(pd.Timestamp(start, tz="UTC").timestamp())
    except ValueError as exc:
        raise ConfigurationError(
            f"start={start!r} is not a date; use ISO 8601 like '2024-01-01'."
        ) from exc
    span = days * _DAY
    rng = np.random.default_rng(seed)

    users = _make_users(rng, n_users)
    n_styles = int(np.clip(n_items // 200, 1, len(STYLES)))
    items = _make_items(rng, n_items, n_styles, t0, span)
    n_niches = len(CATEGORIES) * n_styles
    favourites, favourite_cdf = _make_tastes(rng, users, n_styles)

    session_user, session_start, lengths = _make_sessions(
        rng, users["activity"], n_interactions, t0, span
    )
    session_of = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    first = np.zeros(n_interactions, dtype=bool)
    first[np.cumsum(lengths) - lengths] = True
    times = session_start[session_of] + _offsets_in_session(rng, first)
    times = np.minimum(times, t0 + span - 1)

    niche_mass = np.bincount(items["niche"], weights=items["base"], minlength=n_niches)
    niches = _pick_niches(
        rng,
        session_user,
        session_of,
        (favourites, favourite_cdf, users["explore"]),
        niche_mass / niche_mass.sum(),
    )
    repeat = ~first & (rng.random(n_interactions) < _REPEAT)
    fresh = np.flatnonzero(~repeat)
    item_of = np.empty(n_interactions, dtype=np.int64)
    item_of[fresh] = _pick_items(rng, items, niches[fresh], times[fresh], t0, span, n_niches)
    # A repeat acts on the item of the last fresh interaction before it (same session,
    # since every session starts fresh).
    last_fresh = np.maximum.accumulate(np.where(repeat, 0, np.arange(n_interactions)))
    item_of = item_of[last_fresh]

    events = np.where(
        repeat,
        (rng.random(n_interactions) < 0.3) + 1,  # click, or purchase
        np.searchsorted([0.88, 0.97], rng.random(n_interactions), side="right"),
    ).astype(np.int8)

    order = np.argsort(times, kind="stable")
    user_ids = _ids("u", n_users)
    item_ids = _ids("i", n_items)
    interactions = _interaction_frame(
        user_ids.take(session_user[session_of[order]]),
        item_ids.take(item_of[order]),
        times[order],
        pa.array(EVENT_TYPES).take(events[order]),
    )
    return Frames(
        interactions=interactions,
        items=_items_frame(rng, items, item_ids.to_numpy(zero_copy_only=False).astype(object)),
        users=_users_frame(users, user_ids.to_numpy(zero_copy_only=False).astype(object)),
    )


# --------------------------------------------------------------------------- parts


def _check(n_users: int, n_items: int, n_interactions: int, days: int) -> None:
    for name, value in (("n_users", n_users), ("n_items", n_items), ("days", days)):
        if int(value) < 1:
            raise ConfigurationError(f"{name}={value} must be at least 1.")
    if int(n_interactions) < 0:
        raise ConfigurationError(f"n_interactions={n_interactions} cannot be negative.")


def _ids(prefix: str, n: int) -> pa.Array:
    """``prefix0 .. prefix<n-1>`` as an Arrow string array."""
    return pa.array([f"{prefix}{k}" for k in range(n)], type=pa.string())


def _interaction_frame(
    users: pa.Array, items: pa.Array, times: np.ndarray, events: pa.Array
) -> pd.DataFrame:
    """The canonical interaction frame, built straight from Arrow strings.

    Same columns and dtypes as :func:`reco.data.schema.normalize_interactions` gives,
    without its round trip through Python string objects (seconds at 10M rows).
    """
    n = len(times)
    return pd.DataFrame(
        {
            schema.USER: pd.array(users, dtype=_STR),
            schema.ITEM: pd.array(items, dtype=_STR),
            schema.TIMESTAMP: pd.array(times.astype(np.int64), dtype="Int64"),
            schema.VALUE: np.full(n, np.nan),
            schema.EVENT_TYPE: pd.array(events, dtype=_STR),
            schema.EVENT_ID: np.full(n, None, dtype=object),
        }
    )


def _make_users(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    device = rng.choice(len(DEVICES), size=n, p=DEVICE_SHARES)
    os_names: list[str] = []
    os_of = np.empty(n, dtype=np.int64)
    for d, name in enumerate(DEVICES):
        systems, shares = OPERATING_SYSTEMS[name]
        rows = np.flatnonzero(device == d)
        os_of[rows] = len(os_names) + rng.choice(len(systems), size=len(rows), p=shares)
        os_names += systems
    return {
        "device": device,
        "os": os_of,
        "os_names": np.asarray(os_names, dtype=object),
        "country": rng.choice(len(COUNTRIES), size=n, p=COUNTRY_SHARES),
        "age": rng.choice(len(AGE_BANDS), size=n, p=AGE_SHARES),
        # Heavy-tailed activity: a few users produce much of the traffic.
        "activity": rng.lognormal(0.0, 1.0, size=n),
        "explore": rng.beta(2.0, 12.0, size=n),
    }


def _make_items(
    rng: np.random.Generator, n: int, n_styles: int, t0: int, span: int
) -> dict[str, np.ndarray]:
    category_share = rng.dirichlet(np.full(len(CATEGORIES), 4.0))
    category = rng.choice(len(CATEGORIES), size=n, p=category_share)
    style = rng.integers(0, n_styles, size=n)
    niche = category * n_styles + style
    old = rng.random(n) < _OLD_ITEMS
    # Every niche needs an item on day one, or its fans would have nothing to pick.
    old[np.unique(niche, return_index=True)[1]] = True
    created = np.where(
        old,
        t0 - rng.integers(_DAY, 365 * _DAY, size=n),
        t0 + rng.integers(0, max(span - _DAY, 1), size=n),
    )
    rank = rng.permutation(n) + 1
    return {
        "category": category,
        "style": style,
        "niche": niche,
        "created": created.astype(np.int64),
        "base": rank**-0.9,  # Zipf-like long tail
        "slope": rng.normal(0.0, 0.008, size=n),  # log-popularity change per day
        "novelty": np.where(old, 0.0, rng.uniform(1.0, 6.0, size=n)),
    }


def _make_tastes(
    rng: np.random.Generator, users: dict[str, np.ndarray], n_styles: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each user's favourite niches (n, 3) and the cumulative weights to choose among them."""
    n = len(users["device"])
    n_categories = len(CATEGORIES)
    base = rng.dirichlet(np.full(n_categories, 2.0))
    # Segment effects: each device, country and age band likes some categories more.
    by_device = rng.lognormal(0.0, 0.3, size=(len(DEVICES), n_categories))
    by_country = rng.lognormal(0.0, 0.3, size=(len(COUNTRIES), n_categories))
    by_age = rng.lognormal(0.0, 0.3, size=(len(AGE_BANDS), n_categories))
    segment = (users["device"] * len(COUNTRIES) + users["country"]) * len(AGE_BANDS) + users["age"]
    categories = np.empty((n, _FAVOURITES), dtype=np.int64)
    for key in np.unique(segment):
        rows = np.flatnonzero(segment == key)
        device, rest = divmod(int(key), len(COUNTRIES) * len(AGE_BANDS))
        country, age = divmod(rest, len(AGE_BANDS))
        prior = base * by_device[device] * by_country[country] * by_age[age]
        categories[rows] = rng.choice(
            n_categories, size=(len(rows), _FAVOURITES), p=prior / prior.sum()
        )
    favourites = categories * n_styles + rng.integers(0, n_styles, size=(n, _FAVOURITES))
    weights = rng.gamma(1.0, size=(n, _FAVOURITES))
    cdf = np.cumsum(weights, axis=1) / weights.sum(axis=1, keepdims=True)
    return favourites, cdf


def _make_sessions(
    rng: np.random.Generator, activity: np.ndarray, n_interactions: int, t0: int, span: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sessions (user, start time, length) whose lengths add up to ``n_interactions``."""
    if n_interactions == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    lengths = np.zeros(0, dtype=np.int64)
    while lengths.sum() < n_interactions:
        more = int((n_interactions - lengths.sum()) / _SESSION_MEAN * 1.1) + 16
        lengths = np.concatenate([lengths, rng.geometric(1.0 / _SESSION_MEAN, size=more)])
    ends = np.cumsum(lengths)
    count = int(np.searchsorted(ends, n_interactions)) + 1
    lengths = lengths[:count]
    lengths[-1] -= ends[count - 1] - n_interactions

    users = rng.choice(len(activity), size=count, p=activity / activity.sum())
    day = rng.integers(0, span // _DAY, size=count) if span >= _DAY else np.zeros(count, int)
    hour = rng.choice(24, size=count, p=_HOURS / _HOURS.sum())
    starts = t0 + day * _DAY + hour * 3600 + rng.integers(0, 3600, size=count)
    return users.astype(np.int64), starts.astype(np.int64), lengths


def _offsets_in_session(rng: np.random.Generator, first: np.ndarray) -> np.ndarray:
    """Seconds since the session's start: exponential gaps summed within each session."""
    gaps = rng.exponential(_GAP_SECONDS, size=len(first))
    gaps[first] = 0.0
    total = np.cumsum(gaps)
    session_base = np.maximum.accumulate(np.where(first, total, 0.0))
    return (total - session_base).astype(np.int64)


def _pick_niches(
    rng: np.random.Generator,
    session_user: np.ndarray,
    session_of: np.ndarray,
    tastes: tuple[np.ndarray, np.ndarray, np.ndarray],
    niche_share: np.ndarray,
) -> np.ndarray:
    """The niche of every interaction: the session's intent, another favourite, or a whim.

    ``tastes`` holds each user's favourite niches, the cumulative weights to choose
    among them, and the user's appetite for exploring.
    """
    favourites, favourite_cdf, explore = tastes
    n_sessions = len(session_user)

    def favourite_of(users: np.ndarray) -> np.ndarray:
        slot = (rng.random(len(users))[:, None] > favourite_cdf[users, :-1]).sum(axis=1)
        return favourites[users, slot]

    def whim(size: int) -> np.ndarray:
        return rng.choice(len(niche_share), size=size, p=niche_share)

    intent = favourite_of(session_user)
    # Each user explores now and then; explorers start whole sessions elsewhere.
    explore_user = rng.random(n_sessions) < explore[session_user]
    intent[explore_user] = whim(int(explore_user.sum()))

    n = len(session_of)
    choice = rng.random(n)
    niches = intent[session_of]
    other = (choice >= _STAY_ON_INTENT) & (choice < _STAY_ON_INTENT + _OTHER_FAVOURITE)
    niches[other] = favourite_of(session_user[session_of[other]])
    wander = choice >= _STAY_ON_INTENT + _OTHER_FAVOURITE
    niches[wander] = whim(int(wander.sum()))
    return niches


def _pick_items(
    rng: np.random.Generator,
    items: dict[str, np.ndarray],
    niches: np.ndarray,
    times: np.ndarray,
    t0: int,
    span: int,
    n_niches: int,
) -> np.ndarray:
    """Draw each interaction's item from its niche, by popularity at that time.

    Popularity changes day by day (drift, novelty) and an item is available only from
    the first day starting after its creation, so no interaction predates its item.
    """
    by_niche = np.argsort(items["niche"], kind="stable")
    niche_sorted = items["niche"][by_niche]
    lo = np.searchsorted(niche_sorted, np.arange(n_niches), side="left")
    hi = np.searchsorted(niche_sorted, np.arange(n_niches), side="right")
    created = items["created"][by_niche]
    base = items["base"][by_niche]
    slope = items["slope"][by_niche]
    novelty = items["novelty"][by_niche]

    bucket_seconds = max(_DAY, -(-span // 256))  # at most 256 popularity snapshots
    # At most 256 buckets: int16 keys make numpy's stable sort a fast radix sort.
    buckets = ((times - t0) // bucket_seconds).astype(np.int16)
    order = np.argsort(buckets, kind="stable")
    bounds = np.searchsorted(buckets[order], np.arange(buckets.max(initial=0) + 2))
    chosen = np.empty(len(niches), dtype=np.int64)
    draws = rng.random(len(niches))
    for b in range(len(bounds) - 1):
        rows = order[bounds[b] : bounds[b + 1]]
        if len(rows) == 0:
            continue
        moment = t0 + b * bucket_seconds
        age_days = (moment - created) / _DAY
        weight = base * np.exp(slope * (moment - t0) / _DAY)
        weight *= 1.0 + novelty * np.exp(-np.maximum(age_days, 0.0) / _NOVELTY_DAYS)
        weight[created > moment] = 0.0
        cumulative = np.concatenate([[0.0], np.cumsum(weight)])
        niche = niches[rows]
        start, total = cumulative[lo[niche]], cumulative[hi[niche]] - cumulative[lo[niche]]
        empty = total <= 0  # a niche with nothing available yet: any available item
        start[empty], total[empty] = 0.0, cumulative[-1]
        target = start + draws[rows] * total
        position = np.searchsorted(cumulative, target, side="right") - 1
        position = np.clip(position, 0, len(weight) - 1)
        # Float rounding at a niche's edge can land on an unavailable neighbour.
        stray = weight[position] <= 0
        if stray.any():
            fallback = draws[rows[stray]] * cumulative[-1]
            position[stray] = np.searchsorted(cumulative, fallback, side="right") - 1
        chosen[rows] = by_niche[position]
    return chosen


# --------------------------------------------------------------------------- frames


def _items_frame(
    rng: np.random.Generator, items: dict[str, np.ndarray], item_ids: np.ndarray
) -> pd.DataFrame:
    n = len(item_ids)
    category = items["category"]
    names = np.asarray(CATEGORIES, dtype=object)
    nouns = np.array([CATALOG[c][0] for c in CATEGORIES], dtype=object)
    adjectives = np.array([CATALOG[c][1] for c in CATEGORIES], dtype=object)
    words = nouns.shape[1]
    noun = nouns[category, rng.integers(0, words, size=n)]
    adjective = adjectives[category, rng.integers(0, words, size=n)]
    style = np.asarray(STYLES, dtype=object)[items["style"]]
    article = np.asarray(["an" if s[0] in "aeiou" else "a" for s in STYLES], dtype=object)[
        items["style"]
    ]
    title = np.char.capitalize(style.astype(str)).astype(object) + " " + adjective + " " + noun
    first_word = rng.integers(0, words, size=n)
    second_word = (first_word + rng.integers(1, words, size=n)) % words  # never the same
    described = [adjectives[category, first_word], adjectives[category, second_word]]
    related = nouns[category, rng.integers(0, words, size=n)]
    text = (
        title + ": " + article + " " + style + " pick in " + names[category] + ", "
        + described[0] + " and " + described[1] + ", pairs well with any " + related + "."
    )  # fmt: skip
    # A fifth of the items also belong to a second category.
    second = (category + rng.integers(1, len(CATEGORIES), size=n)) % len(CATEGORIES)
    categories = np.where(
        rng.random(n) < 0.2,
        names[category] + schema.CATEGORY_SEPARATOR + names[second],
        names[category],
    )
    price = np.round(rng.lognormal(3.0, 0.8, size=n), 2)
    return pd.DataFrame(
        {
            schema.ITEM: item_ids,
            "title": title,
            "text": text,
            "categories": categories,
            "created_at": pd.array(items["created"], dtype="Int64"),
            "price": price,
        }
    )


def _users_frame(users: dict[str, np.ndarray], user_ids: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            schema.USER: user_ids,
            "device": np.asarray(DEVICES, dtype=object)[users["device"]],
            "os": users["os_names"][users["os"]],
            "country": np.asarray(COUNTRIES, dtype=object)[users["country"]],
            "age_band": np.asarray(AGE_BANDS, dtype=object)[users["age"]],
        }
    )
