"""Simulation optimisation of baseline parameters with common random numbers.

Every candidate is simulated on the same demand and lead-time paths: the paths of
``rollout(net, policy, episodes, seed)``. Many candidates run at once as one batch (candidate c's
parameters on rows ``c*E .. c*E+E-1``), so a sweep costs one batched simulation.

Search (integer coordinate search, started from the analytic levels of :mod:`invnet.agents.analytic`):
each sweep tries every coordinate +/- its step; the best single move is compared with the move that
takes every improving coordinate at once, and the better is kept; when no move improves, steps halve
(down to 1 unit for levels, 0.25 for transfer parameters). Transfer combinations first tune the
replenishment part alone, then the transfer parameters, then (time permitting) everything jointly.
The reported cost is the mean over the tuning episodes with its 95% CI (replay it with
``invnet simulate --params FILE --episodes E --seed S``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from invnet.agents.bound import exogenous
from invnet.agents.registry import make_policy
from invnet.envs.core import Exogenous, initial_state, step
from invnet.envs.network import Network, compile_network
from invnet.envs.rollout import mean_ci95
from invnet.envs.scenario import Scenario

# parameters searched per replenishment policy (s_S is searched as s and q = S - s)
REPLENISHMENT_KEYS: dict[str, tuple[str, ...]] = {
    "base_stock": ("levels",),
    "echelon_base_stock": ("levels",),
    "s_S": ("s", "q"),
    "capped_base_stock": ("levels", "caps"),
    "constant_order": ("quantities",),
}
# transfer parameters: (name, lower bound, initial step)
TRANSFER_KEYS: dict[str, tuple[tuple[str, float, float], ...]] = {
    "threshold": (("hold_back", 0.0, 1.0), ("trigger", 0.0, 1.0)),
    "tie": (("trigger", 0.0, 1.0),),
    "mincost": (("horizon", 1.0, 1.0), ("margin", 0.0, 1.0)),
}
MIN_TRANSFER_STEP = 0.25


@dataclass(frozen=True)
class TuneResult:
    """Tuned parameters and their cost per period after warm-up (mean and 95% CI half-width)."""

    policy: str
    params: dict[str, Any]
    total_cost: float
    total_cost_ci95: float
    seconds: float
    per_episode: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    evaluations: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "params": self.params,
            "total_cost": self.total_cost,
            "total_cost_ci95": self.total_cost_ci95,
            "seconds": self.seconds,
        }


def split_name(name: str) -> tuple[str, str | None]:
    """``"base_stock+tie"`` -> ("base_stock", "tie"); ValueError naming the policy when it cannot be tuned."""
    repl, _, tr = name.partition("+")
    if repl not in REPLENISHMENT_KEYS or (tr and tr not in TRANSFER_KEYS):
        known = ", ".join(sorted(REPLENISHMENT_KEYS)) + " (optionally +" + "|+".join(TRANSFER_KEYS) + ")"
        raise ValueError(f"policy: cannot tune {name!r}; tunable policies: {known}")
    return repl, (tr or None)


class Evaluator:
    """Costs of many parameter sets on the same E episodes (common random numbers)."""

    def __init__(self, net: Network, episodes: int, seed: int) -> None:
        if episodes < 1:
            raise ValueError(f"episodes: must be >= 1, got {episodes}")
        self.net, self.episodes, self.seed = net, episodes, seed
        self.exo = exogenous(net, episodes, seed)
        self.calls = 0

    def costs(self, name: str, cands: list[dict[str, np.ndarray]], chunk_rows: int = 4096) -> np.ndarray:
        """[C, E] cost per period after warm-up of each candidate parameter set."""
        E = self.episodes
        per_chunk = max(1, chunk_rows // E)
        out = [self._run(name, cands[i : i + per_chunk]) for i in range(0, len(cands), per_chunk)]
        self.calls += len(cands)
        return np.concatenate(out, axis=0)

    def _run(self, name: str, cands: list[dict[str, np.ndarray]]) -> np.ndarray:
        net, E, C = self.net, self.episodes, len(cands)
        stacked = {k: np.repeat(np.stack([c[k] for c in cands]), E, axis=0) for k in cands[0]}
        policy = build(net, name, stacked)
        exo = Exogenous(demand=np.tile(self.exo.demand, (C, 1, 1, 1)), lead_time=np.tile(self.exo.lead_time, (C, 1, 1)))
        state = initial_state(net, C * E, net.scenario.agents.demand_history)
        total = np.zeros(C * E)
        for t in range(net.periods):
            state, out = step(net, state, policy.act(state), exo)
            if t >= net.warmup:
                total += out.cost.sum(axis=1)
        return (total / (net.periods - net.warmup)).reshape(C, E)


def start_point(net: Network, name: str) -> dict[str, np.ndarray]:
    """Analytic starting parameters (as search coordinates) of a tunable policy."""
    repl, tr = split_name(name)
    pol = make_policy(repl, net)
    if repl == "s_S":
        x = {"s": pol.s.copy(), "q": pol.S - pol.s}
    else:
        x = {k: getattr(pol, k).copy() for k in REPLENISHMENT_KEYS[repl]}
    if tr is not None:
        from invnet.agents.transfers import TRANSFERS

        tp = TRANSFERS[tr](net)
        for key, _, _ in TRANSFER_KEYS[tr]:
            x[key] = np.asarray(getattr(tp, key), dtype=float).copy()
    return x


def to_kwargs(name: str, x: dict[str, np.ndarray]) -> dict[str, Any]:
    """Search coordinates -> constructor kwargs (arrays; per-row when x has a leading batch axis)."""
    repl, tr = split_name(name)
    kw: dict[str, Any] = {}
    if repl == "s_S":
        kw["s"], kw["S"] = x["s"], x["s"] + x["q"]
    else:
        kw.update({k: x[k] for k in REPLENISHMENT_KEYS[repl]})
    if tr is not None:
        kw["transfer"] = {key: x[key] for key, _, _ in TRANSFER_KEYS[tr]}
    return kw


def build(net: Network, name: str, x: dict[str, np.ndarray]) -> Any:
    return make_policy(name, net, **to_kwargs(name, x))


def _level_step(v: np.ndarray) -> np.ndarray:
    """Initial integer step: a power of two near an eighth of the level (at least 1)."""
    return np.maximum(2.0 ** np.floor(np.log2(np.maximum(v, 1.0) / 8.0)), 1.0)


def coordinate_search(
    ev: Evaluator,
    name: str,
    x0: dict[str, np.ndarray],
    keys: list[str],
    deadline: float,
    max_sweeps: int = 200,
    min_step: float = 1.0,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Integer (levels) / 0.25-grid (transfer parameters) coordinate search over ``keys``; returns (x, costs [E])."""
    _, tr = split_name(name)
    tr_spec = {k: (lo, st) for k, lo, st in TRANSFER_KEYS.get(tr or "", ())}
    x = {k: np.array(v, dtype=float) for k, v in x0.items()}
    coords: list[tuple[str, tuple[int, ...], float, float, float]] = []  # key, index, lower, step, min step
    for k in keys:
        if k in tr_spec:
            lo, st = tr_spec[k]
            coords.append((k, (), lo, st, MIN_TRANSFER_STEP))
        else:
            steps = _level_step(x[k])
            for idx in np.ndindex(x[k].shape):
                coords.append((k, idx, 0.0, max(float(steps[idx]), min_step), min_step))
    steps = np.array([c[3] for c in coords])
    best = ev.costs(name, [x])[0]
    per_cand: float | None = None  # seconds per candidate in a batched sweep, measured by the last sweep
    f0 = best.mean()
    for _ in range(max_sweeps):
        # stop at the deadline, or when the next sweep (about 2 candidates per coordinate) would overrun it
        now = time.perf_counter()
        if not coords or now > deadline or (per_cand is not None and now + 2 * len(coords) * per_cand > deadline):
            break
        cands, moves = [], []
        for j, (k, idx, lo, _, _) in enumerate(coords):
            for sgn in (1.0, -1.0):
                v = x[k][idx] + sgn * steps[j]
                if v < lo - 1e-12:
                    continue
                c = {kk: vv.copy() for kk, vv in x.items()}
                c[k][idx] = v
                cands.append(c)
                moves.append((j, sgn))
        if not cands:
            break
        t_eval = time.perf_counter()
        costs = ev.costs(name, cands)
        per_cand = (time.perf_counter() - t_eval) / len(cands)
        means = costs.mean(axis=1)
        improving: dict[int, tuple[float, float]] = {}
        for (j, sgn), m in zip(moves, means, strict=True):
            if m < f0 - 1e-9 and (j not in improving or m < improving[j][1]):
                improving[j] = (sgn, m)
        if not improving:
            if np.all(steps <= np.array([c[4] for c in coords]) + 1e-12):
                break
            steps = np.maximum(steps / 2.0, np.array([c[4] for c in coords]))
            continue
        i_best = int(np.argmin(means))
        x_single, c_single = cands[i_best], costs[i_best]
        if len(improving) > 1:
            joint = {kk: vv.copy() for kk, vv in x.items()}
            for j, (sgn, _) in improving.items():
                k, idx = coords[j][0], coords[j][1]
                joint[k][idx] = joint[k][idx] + sgn * steps[j]
            cj = ev.costs(name, [joint])[0]
            if cj.mean() < c_single.mean():
                x_single, c_single = joint, cj
        x, best, f0 = x_single, c_single, c_single.mean()
    return x, best


def tune(
    scenario: Scenario | Network,
    policy_name: str,
    episodes: int = 100,
    seed: int = 0,
    max_seconds: float = 50.0,
    start: dict[str, np.ndarray] | None = None,
    min_step: float | None = None,
) -> TuneResult:
    """Tune a baseline by simulation with common random numbers; see the module docstring.

    ``max_seconds`` bounds the search: a sweep that would overrun it is not started, and the best point so
    far is returned (so the budget may leave a large network short of a local optimum). ``min_step``:
    smallest level step; default 1 unit, 0.25 when some demand is continuous (normal, not rounded).
    """
    net = scenario if isinstance(scenario, Network) else compile_network(scenario)
    repl, tr = split_name(policy_name)
    t0 = time.perf_counter()
    deadline = t0 + max_seconds
    ev = Evaluator(net, episodes, seed)
    x = start_point(net, policy_name) if start is None else {k: np.asarray(v, dtype=float) for k, v in start.items()}
    if min_step is None:
        min_step = 0.25 if _continuous_demand(net) else 1.0
    rkeys = list(REPLENISHMENT_KEYS[repl])
    if tr is None:
        x, costs = coordinate_search(ev, policy_name, x, rkeys, deadline, min_step=min_step)
    else:
        # 1. replenishment alone (transfers cost LPs for mincost; levels first is much cheaper)
        rx, _ = coordinate_search(ev, repl, {k: x[k] for k in rkeys}, rkeys, t0 + 0.6 * max_seconds, min_step=min_step)
        x.update(rx)
        tkeys = [k for k, _, _ in TRANSFER_KEYS[tr]]
        # 2. transfer parameters with the levels fixed, 3. everything jointly while time remains
        x, costs = coordinate_search(ev, policy_name, x, tkeys, deadline, min_step=min_step)
        if tr != "mincost" and time.perf_counter() < deadline:
            x, costs = coordinate_search(ev, policy_name, x, rkeys + tkeys, deadline, min_step=min_step)
    pol = make_policy(policy_name, net, **_plain(to_kwargs(policy_name, x)))
    m, ci = mean_ci95(costs)
    return TuneResult(
        policy=policy_name,
        params=pol.params(),
        total_cost=m,
        total_cost_ci95=ci,
        seconds=time.perf_counter() - t0,
        per_episode=costs,
        evaluations=ev.calls,
    )


def _continuous_demand(net: Network) -> bool:
    """True when some node's demand is an unrounded normal (levels need not be whole units)."""
    s = net.scenario
    for nid in net.node_ids:
        for sku in net.skus:
            spec = s.demand_spec(nid, sku)
            if spec is not None and spec.dist == "normal" and not spec.round:
                return True
    return False


def _plain(kw: dict[str, Any]) -> dict[str, Any]:
    """Scalar transfer parameters as floats (arrays of shape () -> float) for JSON-friendly params()."""
    out = dict(kw)
    if "transfer" in out:
        out["transfer"] = {k: float(np.asarray(v)) for k, v in out["transfer"].items()}
    return out


def default_candidates(net: Network) -> list[str]:
    """Baselines worth tuning for a network: base-stock variants, (s,S) with fixed order costs, transfer combos."""
    names = ["base_stock", "capped_base_stock"]
    if np.any(net.source_node >= 0):
        names.append("echelon_base_stock")
    if net.order_fixed > 0:
        names.append("s_S")
    if np.any(~net.is_source_lane):
        names += ["base_stock+threshold", "base_stock+tie"]
    return names


def best_baseline(
    scenario: Scenario | Network,
    episodes: int = 100,
    seed: int = 0,
    candidates: list[str] | None = None,
    max_seconds: float = 50.0,
) -> TuneResult:
    """Tune each candidate (default :func:`default_candidates`) and return the cheapest."""
    net = scenario if isinstance(scenario, Network) else compile_network(scenario)
    names = candidates or default_candidates(net)
    budget = max_seconds / max(len(names), 1)
    results = [tune(net, n, episodes=episodes, seed=seed, max_seconds=budget) for n in names]
    return min(results, key=lambda r: r.total_cost)
