"""Offline evaluation of the creative bandit by simulation (no public data set has creative clicks).

The simulated world (all of it fixed by ``SimulationConfig.seed``):

- ``hidden_segments`` taste groups; each has a profile over ``n_categories`` categories (a
  Dirichlet(0.3) draw, so each group leans on a few categories). A user belongs to one group, and
  their category affinity is Dirichlet(40 x profile): what the bandit sees, through its own
  k-means segmenter, never the group itself.
- A user's base click rate is uniform in [2%, 5%]. Their click probability on a creative of style
  family f is ``base x LIFTS[rank of f in their group]``: every group ranks the families in its own
  (seeded) random order and the ranks get the fixed lifts ``LIFTS`` (best 1.8x, worst 0.55x).
- Each item has variants in ``families_per_item`` of the families (a seeded subset); a variant's
  quality score is 0.5 plus noise, unrelated to the hidden lifts (the quality gate judges design,
  not taste), so the prior does not leak the answer.
- Impression t shows item ``items[t]`` to user ``users[t]`` (uniform draws) and the click is
  ``u[t] < p``: every policy sees the same users, items and uniform draws (common random numbers),
  so their differences are not sampling noise of the world.

Policies compared: the bandit (learning only from the feedback that came back through the
channel, a round at a time), random choice among the item's variants, the best single family for
everyone (the family with the highest mean lift over users, where the item has it), and the oracle
that knows each group's best family.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

import numpy as np

from generation.bandit import STYLE_FAMILIES, Bandit, BanditConfig, Click, Impression, Segmenter, Variant

__all__ = ["LIFTS", "SimulationConfig", "SimulatedWorld", "FeedbackChannel", "DirectChannel", "PolicyResult", "new_bandit",
           "SimulationReport", "simulate"]

# Lift of a group's 1st..6th family (its order of the families is seeded per group).
LIFTS = (1.8, 1.35, 1.1, 0.9, 0.7, 0.55)
BASE_CTR = (0.02, 0.05)


@dataclass(frozen=True)
class SimulationConfig:
    """``round_size`` impressions are shown between two feedback deliveries (the bandit acts on
    stale evidence within a round, as a service does); ``tail`` is the window of the headline CTR."""

    impressions: int = 50_000
    n_users: int = 2_000
    n_items: int = 300
    hidden_segments: int = 10
    n_categories: int = 18
    families_per_item: int = 4
    round_size: int = 500
    tail: int = 10_000
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("impressions", "n_users", "n_items", "hidden_segments", "n_categories", "round_size", "tail"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r} must be >= 1")
        if not 1 <= self.families_per_item <= len(STYLE_FAMILIES):
            raise ValueError(f"families_per_item={self.families_per_item!r}: choose 1..{len(STYLE_FAMILIES)}")
        if self.tail > self.impressions:
            raise ValueError(f"tail={self.tail} > impressions={self.impressions}")


class SimulatedWorld:
    """Users, items, variants and the hidden click model of one seed (see the module docstring)."""

    def __init__(self, config: SimulationConfig) -> None:
        self.config = config
        self.families = STYLE_FAMILIES
        rng = np.random.default_rng(config.seed)
        F, H = len(self.families), config.hidden_segments
        profiles = rng.dirichlet(np.full(config.n_categories, 0.3), size=H)  # (H, C)
        self.group = rng.integers(H, size=config.n_users)  # (U,) hidden
        self.affinity = np.array([rng.dirichlet(40 * profiles[g] + 1e-3) for g in self.group])  # (U, C)
        self.base = rng.uniform(*BASE_CTR, size=config.n_users)  # (U,)
        self.lift = np.empty((H, F))  # (H, F)
        for h in range(H):
            self.lift[h, rng.permutation(F)] = LIFTS[:F]
        self.item_families = np.zeros((config.n_items, F), dtype=bool)  # (I, F) which families exist
        for i in range(config.n_items):
            self.item_families[i, rng.choice(F, config.families_per_item, replace=False)] = True
        self.quality = np.clip(0.5 + 0.15 * rng.standard_normal((config.n_items, F)), 0.0, 1.0)
        self.users = rng.integers(config.n_users, size=config.impressions)  # (T,)
        self.items = rng.integers(config.n_items, size=config.impressions)  # (T,)
        self.uniform = rng.random(config.impressions)  # (T,) common random numbers for clicks
        self.policy_rng_seed = int(rng.integers(2**31))
        self.categories = [f"cat{c:02d}" for c in range(config.n_categories)]

    def user_id(self, u: int) -> str:
        return str(u)  # numeric, as the event schemas' ids are

    def item_id(self, i: int) -> str:
        return str(i)

    def variant_id(self, i: int, f: int) -> str:
        return f"{i}:{self.families[f]}"

    def affinities(self) -> dict[str, dict[str, float]]:
        return {self.user_id(u): dict(zip(self.categories, map(float, self.affinity[u])))
                for u in range(self.config.n_users)}

    def variants(self) -> list[Variant]:
        return [Variant(self.variant_id(i, f), self.item_id(i), self.families[f], float(self.quality[i, f]))
                for i in range(self.config.n_items) for f in np.flatnonzero(self.item_families[i])]

    def click_prob(self, u: int, f: int) -> float:
        return float(self.base[u] * self.lift[self.group[u], f])

    def oracle_family(self, u: int, i: int) -> int:
        lifts = np.where(self.item_families[i], self.lift[self.group[u]], -np.inf)
        return int(np.argmax(lifts))

    def best_single_family(self, i: int) -> int:
        """The family with the highest mean lift over users that item ``i`` has."""
        order = np.argsort(-(self.lift[self.group] * self.base[:, None]).mean(0))
        return int(next(f for f in order if self.item_families[i, f]))


class FeedbackChannel(Protocol):
    """How impressions and clicks reach the bandit: ``deliver`` returns once they were applied."""

    def deliver(self, events: Sequence[Impression | Click]) -> None: ...


class DirectChannel:
    """In process: apply and flush (unit tests; the benchmark goes through the broker)."""

    def __init__(self, bandit: Bandit) -> None:
        self.bandit = bandit

    def deliver(self, events: Sequence[Impression | Click]) -> None:
        self.bandit.apply(events)
        self.bandit.flush()


@dataclass
class PolicyResult:
    """``ctr``: clicks / impressions over all of them; ``ctr_tail`` over the last ``tail``;
    ``expected_*``: the same with click probabilities instead of draws; ``regret``: cumulative
    expected clicks lost to the oracle."""

    clicks: int
    ctr: float
    ctr_tail: float
    expected_ctr: float
    expected_ctr_tail: float
    regret: float
    regret_curve: list[float] = field(default_factory=list)


@dataclass
class SimulationReport:
    impressions: int
    tail: int
    policies: dict[str, PolicyResult]
    segment_purity: float  # share of users whose k-means segment's majority hidden group is theirs

    def summary(self) -> dict:
        out: dict = {"impressions": self.impressions, "tail": self.tail, "segment_purity": self.segment_purity}
        for name, r in self.policies.items():
            out[name] = {k: v for k, v in r.__dict__.items()}
        bandit, oracle, random = (self.policies[n].ctr_tail for n in ("bandit", "oracle", "random"))
        out["bandit_vs_oracle"] = bandit / oracle if oracle else None
        out["bandit_vs_random"] = bandit / random if random else None
        return out


def new_bandit(world: SimulatedWorld, directory=None, *, n_segments: int | None = None, seed: int = 0) -> Bandit:
    """A bandit for ``world``: k-means segments fitted on its users' affinities, its variants registered."""
    affinities = world.affinities()
    k = n_segments or world.config.hidden_segments
    bandit = Bandit.create(directory, BanditConfig(families=world.families, n_segments=k, seed=seed),
                           Segmenter.fit(list(affinities.values()), k, seed=seed))
    bandit.register_variants(world.variants())
    bandit.assign_users(affinities)
    bandit.flush()
    return bandit


def _purity(world: SimulatedWorld, bandit: Bandit) -> float:
    seg = np.array([bandit.segment_of(world.user_id(u)) for u in range(world.config.n_users)])
    agree = 0
    for s in np.unique(seg):
        agree += np.bincount(world.group[seg == s]).max()
    return agree / len(seg)


def simulate(world: SimulatedWorld, bandit: Bandit, channel: FeedbackChannel, *,
             progress: Callable[[int], None] | None = None) -> SimulationReport:
    """Run ``world.config.impressions`` impressions; the bandit learns through ``channel`` only."""
    cfg = world.config
    T = cfg.impressions
    rng = np.random.default_rng(world.policy_rng_seed)
    names = ("bandit", "random", "best_single", "oracle")
    p = {n: np.zeros(T) for n in names}
    best_single = [world.best_single_family(i) for i in range(cfg.n_items)]
    family_index = {f: k for k, f in enumerate(world.families)}
    for start in range(0, T, cfg.round_size):
        events: list[Impression | Click] = []
        for t in range(start, min(T, start + cfg.round_size)):
            u, i = int(world.users[t]), int(world.items[t])
            choice = bandit.choose_variant(world.user_id(u), world.item_id(i))
            f = family_index[choice.family]
            p["bandit"][t] = world.click_prob(u, f)
            p["random"][t] = world.click_prob(u, int(rng.choice(np.flatnonzero(world.item_families[i]))))
            p["best_single"][t] = world.click_prob(u, best_single[i])
            p["oracle"][t] = world.click_prob(u, world.oracle_family(u, i))
            imp = Impression(f"imp:{t}", world.user_id(u), world.item_id(i), choice.variant_id)
            events.append(imp)
            if world.uniform[t] < p["bandit"][t]:
                events.append(Click(f"clk:{t}", imp.event_id, imp.user_id, imp.variant_id))
        channel.deliver(events)
        if progress is not None:
            progress(len(events))
    results = {}
    tail = slice(T - cfg.tail, T)
    checkpoints = np.linspace(0, T, 11)[1:].astype(int) - 1
    for n in names:
        clicks = world.uniform < p[n]
        regret = np.cumsum(p["oracle"] - p[n])
        results[n] = PolicyResult(
            clicks=int(clicks.sum()), ctr=float(clicks.mean()), ctr_tail=float(clicks[tail].mean()),
            expected_ctr=float(p[n].mean()), expected_ctr_tail=float(p[n][tail].mean()),
            regret=float(regret[-1]), regret_curve=[round(float(regret[c]), 2) for c in checkpoints])
    return SimulationReport(T, cfg.tail, results, float(_purity(world, bandit)))
