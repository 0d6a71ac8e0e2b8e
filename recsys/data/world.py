"""The synthetic live-streaming world: users, streamers, broadcasts whose content drifts scene by scene, and the
impressions (watch, like, comment, gift) of users in them. Deterministic by seed; the data MMBee and the reranker
train on when no real logs exist.

What is planted (and why each MMBee module should help):
- **Communities.** Users and streamers belong to `num_communities` taste communities (unit centroids in a
  `latent_dim` space). A user's taste and a streamer's style are their centroid plus a personal offset.
- **Real-time content.** A broadcast is a sequence of scenes (mean `scene_seconds`); each scene's latent topic is
  the streamer's style plus a large scene-specific offset, so *what is on screen now* differs from the
  streamer's average. Every second yields one token per modality: X_v = W_v z + noise (sees the whole latent),
  X_s (sees the first half of its dimensions), X_t (comments: the second half, noisiest). Visual is the most
  informative modality, by construction.
- **Fan favourites**: each community gifts some streamers far more (mostly its own, a few elsewhere), which
  nothing in the content reveals: only the gift graph does (users who gift the same streamers share them).
- **Hype scenes** (`hype_rate` of them: PK battles, performances) add a fixed direction to every modality's
  tokens (strongest on screen) and make everyone gift more.
- **Gifting** (about 1-2% of impressions, heavy-tailed by user): P(gift) = σ(bias + a_u + w_match·⟨taste_u, z_now⟩
  + w_comm·[same community] + w_hype·hype_now + w_fav·[a favourite of the user's community]) where z_now is
  the scene on screen when the user arrives and a_u
  a normal per-user propensity in log-odds (most users rarely gift). So the gift depends on the *current segment's* content (MFQ) and
  on community structure: users who gift the same streamers share taste, which graph expansion can recover for
  users with few gifts of their own (GIE).
- **Viewing**: a broadcast draws Poisson(viewers × popularity) viewers, `community_loyalty` of them from the
  streamer's community, each weighted by a per-user view activity; they arrive at a uniform second after the
  first `max_segment_seconds` (so every segment window up to that length is full).

Ids: user and streamer indices are 1..N (0 is reserved for "unknown", as in `recsys.data.batches`); their
public string ids are `u<index>` / `a<index>`; a broadcast's id is `day * STREAMS_PER_DAY + i`.

Scale: `generate_day(config, day)` depends only on (seed, day) and the world's fixed population, so days are
generated independently; `write_world` streams them into partitioned Parquet (`impressions/day=NNN/`,
`streams/day=NNN/`) holding one day at a time, which keeps memory flat as the number of days grows
(`benchmarks/mmbee_world.py` measures it). `generate_world` concatenates the same days in memory for worlds
that fit.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

logger = logging.getLogger(__name__)

STREAMS_PER_DAY = 100_000
MODALITIES = ("visual", "speech", "comments")
SECONDS_PER_DAY = 86_400
SPLITS = ("graph", "train", "validation", "test")


@dataclass(frozen=True)
class WorldConfig:
    seed: int = 0
    num_users: int = 1000
    num_authors: int = 150
    num_communities: int = 8
    days: int = 20
    broadcasts_per_author_day: float = 0.6
    """Mean broadcasts a streamer starts per day (Poisson)."""
    broadcast_seconds: int = 120
    scene_seconds: float = 40.0
    latent_dim: int = 8
    content_dim: int = 16
    viewers_per_broadcast: float = 110.0
    """Mean viewers of a broadcast of a streamer of popularity 1."""
    community_loyalty: float = 0.7
    personal_spread: float = 0.35
    """Size of a user's / streamer's personal offset from its community centroid (relative to the centroid)."""
    scene_spread: float = 1.5
    """Size of a scene's offset from its streamer's style: how much the content on screen varies."""
    noise_visual: float = 0.4
    noise_speech: float = 0.7
    noise_comments: float = 1.0
    gift_bias: float = -9.4
    gift_match: float = 5.0
    gift_community: float = 1.2
    gift_propensity_spread: float = 0.7
    hype_rate: float = 0.2
    """Share of scenes that are hype moments (PK battles, performances)."""
    gift_hype: float = 1.5
    """Gift log-odds added during a hype scene, for every viewer."""
    favourite_rate: float = 0.3
    """Share of a community's own streamers that are its fan favourites (a quarter of that elsewhere)."""
    gift_favourite: float = 1.5
    """Gift log-odds added when the streamer is a favourite of the viewer's community: a taste that shows only
    in who gifts whom (the graph), not in the content."""
    max_segment_seconds: int = 20
    validation_fraction: float = 0.15
    test_fraction: float = 0.15
    graph_fraction: float = 0.5
    """Share of the days before validation whose gifts build the expansion graph (the rest are training rows)."""

    def scaled(self, **changes) -> WorldConfig:
        return replace(self, **changes)

    def split_days(self) -> dict[str, range]:
        """Temporal split by broadcast day, in this order, no day in two splits:
        `graph` (the gifts the expansion graph is built from), `train` (the rows models learn from), then
        `validation` and `test`. Why a graph period apart from the training rows: a graph that holds a training
        row's own gift tells the model its label (GIE overfits to it: measured train AUC 0.94 against 0.58 on
        validation), while at serving time the graph only ever holds the past."""
        test_days = max(1, round(self.days * self.test_fraction))
        validation_days = max(1, round(self.days * self.validation_fraction))
        learn_days = self.days - test_days - validation_days
        graph_days = round(learn_days * self.graph_fraction)
        if graph_days < 1 or learn_days - graph_days < 1:
            raise ValueError(f"days={self.days} is too few for a graph/train/validation/test split")
        validation_start = learn_days
        return {
            "graph": range(0, graph_days),
            "train": range(graph_days, learn_days),
            "validation": range(validation_start, validation_start + validation_days),
            "test": range(validation_start + validation_days, self.days),
        }


WORLD_PRESETS: dict[str, WorldConfig] = {
    # Unit and integration tests: about 10k impressions, generated in well under a second.
    "tiny": WorldConfig(
        num_users=400, num_authors=24, num_communities=4, days=6, viewers_per_broadcast=120.0
    ),
    # The embedded default and `kmono mmbee eval`: about 200k impressions.
    "default": WorldConfig(),
    # Scale runs (written to Parquet, never held in memory): about 20M impressions.
    "large": WorldConfig(num_users=300_000, num_authors=6000, num_communities=32, days=28),
}


@dataclass
class Population:
    """The world's fixed actors; row 0 of every array is the unused "unknown" index."""

    centroids: np.ndarray  # [C, k]
    user_community: np.ndarray  # [U+1]
    user_taste: np.ndarray  # [U+1, k]
    user_propensity: np.ndarray  # [U+1] additive gift log-odds
    user_view_activity: np.ndarray  # [U+1]
    author_community: np.ndarray  # [A+1]
    author_style: np.ndarray  # [A+1, k]
    author_popularity: np.ndarray  # [A+1]
    projections: dict[str, np.ndarray]  # modality -> [D, k]
    hype_directions: dict[str, np.ndarray]  # modality -> [D]: what a hype scene adds to its tokens
    fan_favourites: np.ndarray  # [C, A+1] bool: the streamers each community's fans gift most


@dataclass
class Day:
    """One day of broadcasts and impressions (numpy columns)."""

    streams: dict[str, np.ndarray]  # stream_id, author, day, start_time, content [S, T, 3, D]
    impressions: dict[str, np.ndarray]


@dataclass
class World:
    config: WorldConfig
    population: Population
    streams: dict[str, np.ndarray]
    impressions: dict[str, np.ndarray] = field(repr=False)

    @property
    def num_impressions(self) -> int:
        return len(self.impressions["user"])

    def stream_rows(self, stream_ids: np.ndarray) -> np.ndarray:
        """Row of each stream id in `streams` (ids are sorted)."""
        return np.searchsorted(self.streams["stream_id"], stream_ids)

    def summary(self) -> dict[str, float]:
        gifts = self.impressions["gifted"]
        per_user = np.bincount(self.impressions["user"], weights=gifts, minlength=self.config.num_users + 1)[
            1:
        ]
        return {
            "users": self.config.num_users,
            "streamers": self.config.num_authors,
            "broadcasts": len(self.streams["stream_id"]),
            "impressions": self.num_impressions,
            "gift_rate": float(gifts.mean()) if len(gifts) else 0.0,
            "users_never_gifting": float((per_user == 0).mean()),
            "gifts_by_top_10pct_users": float(np.sort(per_user)[::-1][: max(1, len(per_user) // 10)].sum())
            / max(1.0, float(per_user.sum())),
        }


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-9)


def make_population(config: WorldConfig) -> Population:
    rng = np.random.default_rng([config.seed, 0])
    k, c = config.latent_dim, config.num_communities
    centroids = _unit(rng.normal(size=(c, k)))

    def members(n: int) -> tuple[np.ndarray, np.ndarray]:
        community = rng.integers(0, c, size=n + 1)
        offset = config.personal_spread * _unit(rng.normal(size=(n + 1, k)))
        vectors = _unit(centroids[community] + offset)
        community[0], vectors[0] = -1, 0.0
        return community, vectors

    user_community, user_taste = members(config.num_users)
    author_community, author_style = members(config.num_authors)
    propensity = rng.normal(0.0, config.gift_propensity_spread, size=config.num_users + 1)
    view_activity = rng.lognormal(0.0, 0.8, size=config.num_users + 1)
    popularity = rng.lognormal(0.0, 0.6, size=config.num_authors + 1)
    view_activity[0] = popularity[0] = 0.0
    half = k // 2
    projections = {}
    for name, seen in zip(MODALITIES, (slice(0, k), slice(0, half), slice(half, k)), strict=True):
        matrix = np.zeros((config.content_dim, k))
        matrix[:, seen] = rng.normal(size=(config.content_dim, k))[:, seen] / np.sqrt(k)
        projections[name] = matrix.astype(np.float32)
    strength = {"visual": 1.2, "speech": 0.8, "comments": 0.8}
    hype_directions = {
        name: strength[name] * _unit(rng.normal(size=config.content_dim)) for name in MODALITIES
    }
    # A community's fan favourites: mostly its own streamers, a few from elsewhere.
    own = author_community[None, :] == np.arange(c)[:, None]  # [C, A+1]
    rate = np.where(own, config.favourite_rate, config.favourite_rate / 4)
    fan_favourites = rng.random((c, config.num_authors + 1)) < rate
    fan_favourites[:, 0] = False
    return Population(
        centroids, user_community, user_taste, propensity, view_activity,
        author_community, author_style, popularity, projections, hype_directions, fan_favourites,
    )  # fmt: skip


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def generate_day(config: WorldConfig, population: Population, day: int) -> Day:
    """Broadcasts and impressions of one day; depends only on (config, day)."""
    rng = np.random.default_rng([config.seed, 1, day])
    p, seconds, k = population, config.broadcast_seconds, config.latent_dim
    counts = rng.poisson(config.broadcasts_per_author_day, size=config.num_authors)
    authors = np.repeat(np.arange(1, config.num_authors + 1), counts)
    num_streams = len(authors)
    if num_streams >= STREAMS_PER_DAY:
        raise ValueError(
            f"{num_streams} broadcasts in one day; at most {STREAMS_PER_DAY - 1} fit the id scheme"
        )
    stream_ids = day * STREAMS_PER_DAY + np.arange(num_streams, dtype=np.int64)
    starts = day * SECONDS_PER_DAY + rng.integers(0, SECONDS_PER_DAY - seconds, size=num_streams)

    # Scenes: each second starts a new scene with probability 1/scene_seconds; a scene's topic is the
    # streamer's style plus a scene offset, plus a small per-second jitter.
    new_scene = rng.random((num_streams, seconds)) < 1.0 / config.scene_seconds
    new_scene[:, 0] = True
    scene_index = np.cumsum(new_scene, axis=1) - 1  # [S, T]
    max_scenes = int(scene_index.max()) + 1 if num_streams else 1
    scene_offsets = config.scene_spread * _unit(rng.normal(size=(num_streams, max_scenes, k)))
    scene_topics = _unit(p.author_style[authors][:, None, :] + scene_offsets)  # [S, scenes, k]
    topics = np.take_along_axis(scene_topics, scene_index[:, :, None], axis=1)  # [S, T, k]
    topics = topics + 0.05 * rng.normal(size=topics.shape)
    # Hype scenes (a PK battle, a performance): everyone gifts more; seen in every modality, best on screen.
    hype_scenes = rng.random((num_streams, max_scenes)) < config.hype_rate
    hype = np.take_along_axis(hype_scenes, scene_index, axis=1).astype(np.float64)  # [S, T]
    noise = (config.noise_visual, config.noise_speech, config.noise_comments)
    content = np.stack(
        [
            topics @ p.projections[name].T
            + hype[:, :, None] * p.hype_directions[name]
            + scale * rng.normal(size=(num_streams, seconds, config.content_dim))
            for name, scale in zip(MODALITIES, noise, strict=True)
        ],
        axis=2,
    ).astype(np.float32)  # [S, T, 3, D]

    # Viewers: loyal ones from the streamer's community, the others from any community, by view activity.
    viewers = rng.poisson(config.viewers_per_broadcast * p.author_popularity[authors])
    rows = np.repeat(np.arange(num_streams), viewers)
    loyal = rng.random(len(rows)) < config.community_loyalty
    community = np.where(
        loyal, p.author_community[authors][rows], rng.integers(0, config.num_communities, size=len(rows))
    )
    users = _sample_users(population, community, rng)
    # One impression per (broadcast, user): later arrivals of the same user are dropped.
    _, first = np.unique(rows.astype(np.int64) * (config.num_users + 1) + users, return_index=True)
    first.sort()
    rows, users = rows[first], users[first]
    ticks = rng.integers(config.max_segment_seconds - 1, seconds, size=len(rows))
    match = np.einsum("nk,nk->n", p.user_taste[users], topics[rows, ticks])
    same_community = p.user_community[users] == p.author_community[authors[rows]]
    hype_now = hype[rows, ticks]
    gift_logit = (
        config.gift_bias + p.user_propensity[users] + config.gift_match * match
        + config.gift_community * same_community + config.gift_hype * hype_now
        + config.gift_favourite * p.fan_favourites[p.user_community[users], authors[rows]]
    )  # fmt: skip
    gifted = rng.random(len(rows)) < _sigmoid(gift_logit)
    remaining = seconds - ticks
    watch = np.minimum(rng.exponential(20.0 * np.exp(match)), remaining).astype(np.float32)
    liked = rng.random(len(rows)) < _sigmoid(-2.5 + 2.0 * match + 0.3 * p.user_propensity[users])
    commented = rng.random(len(rows)) < _sigmoid(
        -3.0 + 1.5 * match + 0.5 * np.log(p.user_view_activity[users])
    )
    impressions = {
        "user": users.astype(np.int64),
        "author": authors[rows].astype(np.int64),
        "stream_id": stream_ids[rows],
        "second": ticks.astype(np.int32),
        "timestamp": (starts[rows] + ticks).astype(np.int64),
        "watch_seconds": watch,
        "liked": liked.astype(np.float32),
        "commented": commented.astype(np.float32),
        "gifted": gifted.astype(np.float32),
        "gift_count": np.where(gifted, 1 + rng.poisson(0.5, size=len(rows)), 0).astype(np.int32),
    }
    order = np.argsort(impressions["timestamp"], kind="stable")
    impressions = {name: column[order] for name, column in impressions.items()}
    streams = {
        "stream_id": stream_ids,
        "author": authors.astype(np.int64),
        "day": np.full(num_streams, day, dtype=np.int32),
        "start_time": starts.astype(np.int64),
        "content": content,
    }
    return Day(streams, impressions)


def _sample_users(population: Population, community: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Users of the given communities, each drawn with probability proportional to its view activity."""
    users = np.empty(len(community), dtype=np.int64)
    for c in np.unique(community):
        members = np.flatnonzero(population.user_community == c)
        cumulative = np.cumsum(population.user_view_activity[members])
        where = community == c
        draws = rng.random(int(where.sum())) * cumulative[-1]
        users[where] = members[np.minimum(np.searchsorted(cumulative, draws), len(members) - 1)]
    return users


def generate_world(config: WorldConfig) -> World:
    """The whole world in memory (for worlds that fit; larger ones go through `write_world`)."""
    population = make_population(config)
    days = [generate_day(config, population, day) for day in range(config.days)]
    streams = {name: np.concatenate([d.streams[name] for d in days]) for name in days[0].streams}
    impressions = {name: np.concatenate([d.impressions[name] for d in days]) for name in days[0].impressions}
    return World(config, population, streams, impressions)


def write_world(config: WorldConfig, out_dir: str | Path, progress: bool = True) -> Path:
    """Write the world as partitioned Parquet, one day in memory at a time:
    `world.json` (config + summary), `users.parquet`, `authors.parquet`, `streams/day=NNN/part-0.parquet`
    (content as a fixed-size list of T*3*D floats), `impressions/day=NNN/part-0.parquet`."""
    from tqdm import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    population = make_population(config)
    _write_population(population, out)
    impressions = gifts = 0
    for day in tqdm(range(config.days), desc="world days", disable=not progress):
        generated = generate_day(config, population, day)
        content = generated.streams.pop("content")
        streams = pa.table(generated.streams)
        flat = pa.array(content.reshape(len(content), -1).ravel(), type=pa.float32())
        streams = streams.append_column(
            "content", pa.FixedSizeListArray.from_arrays(flat, content[0].size or 1)
        )
        for name, table in (("streams", streams), ("impressions", pa.table(generated.impressions))):
            part = out / name / f"day={day:03d}"
            part.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, part / "part-0.parquet")
        impressions += len(generated.impressions["user"])
        gifts += int(generated.impressions["gifted"].sum())
    summary = {"impressions": impressions, "gifts": gifts, "gift_rate": gifts / max(1, impressions)}
    (out / "world.json").write_text(json.dumps({"config": asdict(config), "summary": summary}, indent=2))
    return out


def _write_population(population: Population, out: Path) -> None:
    users = {
        "user": np.arange(len(population.user_community)),
        "community": population.user_community,
        "taste": list(population.user_taste),
        "gift_propensity": population.user_propensity,
        "view_activity": population.user_view_activity,
    }
    authors = {
        "author": np.arange(len(population.author_community)),
        "community": population.author_community,
        "style": list(population.author_style),
        "popularity": population.author_popularity,
    }
    pq.write_table(pa.table(users), out / "users.parquet")
    pq.write_table(pa.table(authors), out / "authors.parquet")


def read_world(path: str | Path) -> World:
    """Load a world written by `write_world` into memory (only for worlds that fit)."""
    path = Path(path)
    config = WorldConfig(**json.loads((path / "world.json").read_text())["config"])
    population = make_population(config)
    # The partition key (day=NNN) is also a column of the parts: read the parts' own columns only.
    streams = pq.read_table(path / "streams", partitioning=None).sort_by("stream_id")
    impressions = pq.read_table(path / "impressions", partitioning=None).sort_by([("timestamp", "ascending")])
    columns = {name: streams[name].to_numpy() for name in ("stream_id", "author", "day", "start_time")}
    flat = streams["content"].combine_chunks().flatten().to_numpy()
    columns["content"] = flat.reshape(
        len(streams), config.broadcast_seconds, len(MODALITIES), config.content_dim
    )
    rows = {name: impressions[name].to_numpy() for name in impressions.column_names}
    return World(config, population, columns, rows)


def user_id(index: int) -> str:
    return f"u{index}"


def author_id(index: int) -> str:
    return f"a{index}"


def parse_index(text: str, prefix: str, size: int) -> int:
    """Index of a public id (`u17` -> 17); 0 (unknown, the cold-start row) for anything else or out of range."""
    if text.startswith(prefix) and text[len(prefix) :].isdigit():
        index = int(text[len(prefix) :])
        if 1 <= index <= size:
            return index
    return 0
