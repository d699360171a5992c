"""Run a policy over many episodes on the batched core (common random numbers by seed).

Episode ``e`` of ``rollout(..., seed=s)`` is drawn from the key ``(s + e, 0)``: every policy run
with the same seed and episode count sees the same demand and lead-time paths.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from invnet.envs.batched import BatchedInventoryEnv
from invnet.envs.core import StepOutput
from invnet.envs.network import Network, compile_network
from invnet.envs.scenario import Scenario

COST_TERMS = ("holding_cost", "shortage_cost", "order_cost", "transfer_cost")


@dataclass(frozen=True)
class Trajectory:
    """Per-period outputs of E episodes: every :class:`StepOutput` field stacked to ``[E, T, ...]``."""

    net: Network
    seed: int
    data: dict[str, np.ndarray]

    @property
    def episodes(self) -> int:
        return int(self.data["demand"].shape[0])

    def __getitem__(self, key: str) -> np.ndarray:
        return self.data[key]

    def cost_per_period(self, include_warmup: bool = False) -> np.ndarray:
        """[E] mean network cost per period (warm-up periods excluded unless asked)."""
        w = 0 if include_warmup else self.net.warmup
        total = sum(self.data[k][:, w:].sum(axis=2) for k in COST_TERMS)  # [E, T-w]
        return total.mean(axis=1)

    def term_per_period(self, key: str, include_warmup: bool = False) -> np.ndarray:
        w = 0 if include_warmup else self.net.warmup
        return self.data[key][:, w:].sum(axis=2).mean(axis=1)


def rollout(
    scenario: Scenario | Network,
    policy_factory,  # noqa: ANN001 - Callable[[Network], Policy] or a Policy
    episodes: int,
    seed: int = 0,
    max_batch: int = 512,
) -> Trajectory:
    """Simulate ``episodes`` episodes of a policy; returns the stacked per-period outputs."""
    if episodes < 1:
        raise ValueError(f"episodes: must be >= 1, got {episodes}")
    net = scenario if isinstance(scenario, Network) else compile_network(scenario)
    policy = policy_factory(net) if callable(policy_factory) and not hasattr(policy_factory, "act") else policy_factory
    chunks: list[dict[str, np.ndarray]] = []
    for start in range(0, episodes, max_batch):
        b = min(max_batch, episodes - start)
        env = BatchedInventoryEnv(net, b, seed=seed + start)
        env.reset(observe=False)
        steps: list[StepOutput] = []
        while not env.done:
            _, _, _, out = env.step_quantities(policy.act(env.state), observe=False)
            steps.append(out)
        chunks.append({f.name: np.stack([getattr(o, f.name) for o in steps], axis=1) for f in fields(StepOutput)})
    data = {k: np.concatenate([c[k] for c in chunks], axis=0) for k in chunks[0]}
    return Trajectory(net=net, seed=seed, data=data)


def mean_ci95(x: np.ndarray) -> tuple[float, float]:
    """Mean and the half-width of its 95% t-interval (Student t; 0 for a single sample)."""
    from scipy import stats

    x = np.asarray(x, dtype=float)
    n = x.size
    m = float(x.mean())
    if n < 2:
        return m, 0.0
    return m, float(stats.t.ppf(0.975, n - 1) * x.std(ddof=1) / np.sqrt(n))
