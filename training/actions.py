"""Action modes of learned policies: the env's ``quantity`` / ``order_up_to`` and a ``residual`` mode.

Every mode maps per-agent actions ``[B, N, K * (1 + M)]`` in [-1, 1] to unit quantities.

- ``quantity`` / ``order_up_to``: decoded by :meth:`invnet.envs.spaces.AgentSpaces.decode` (the env's rule).
- ``residual``: the base policy's action plus a learned adjustment. Orders are
  ``max(0, base_orders + a * residual_scale * throughput)`` (column 0 per SKU, ``a`` in [-1, 1]);
  transfers are the base policy's transfers plus the env's decoding of the lane columns. A residual
  on top of a tuned base-stock policy starts from a good policy and trains faster (domain notes, RL section).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from invnet.agents.base import Policy
from invnet.envs.core import Action, State
from invnet.envs.network import Network
from invnet.envs.spaces import AgentSpaces

ACTION_MODES = ("quantity", "order_up_to", "residual")


def base_policy_for(
    net: Network, how: str = "base_stock", episodes: int = 32, seed: int = 0, max_seconds: float = 20.0
) -> Policy:
    """The policy a residual learns on top of, and the baseline of training evaluations.

    ``how``: a tunable policy name (``base_stock``, ``base_stock+threshold``, ...) tuned with
    ``invnet.agents.tuning.tune``; ``best`` for ``tuning.best_baseline``; ``scenario`` for the scenario's
    untuned order-up-to levels (:class:`invnet.agents.simple.OrderUpTo`, also the fallback when the
    tuning module is not installed).
    """
    from invnet.agents.simple import OrderUpTo

    if how == "scenario":
        return OrderUpTo(net)
    try:
        from invnet.agents import tuning
    except ModuleNotFoundError as e:
        if e.name not in ("invnet.agents.tuning", "invnet.agents.baselines"):
            raise
        return OrderUpTo(net)
    from invnet.agents.registry import make_policy

    if how == "best":
        res = tuning.best_baseline(net, episodes=episodes, seed=seed, max_seconds=max_seconds)
    else:
        res = tuning.tune(net, how, episodes=episodes, seed=seed, max_seconds=max_seconds)
    return make_policy(res.policy, net, **res.params)


def policy_spec(policy: Policy) -> dict[str, Any]:
    """A JSON-serialisable description ``{"name", "params"}`` that :func:`policy_from_spec` rebuilds."""
    return {"name": policy.name, "params": policy.params()}


def policy_from_spec(spec: dict[str, Any], net: Network) -> Policy:
    """Rebuild a policy from :func:`policy_spec` output for ``net``."""
    from invnet.agents.registry import make_policy

    return make_policy(spec["name"], net, **spec["params"])


@dataclass(eq=False)
class ActionMapper:
    """Decode per-agent actions in [-1, 1] to an :class:`Action` for one action mode."""

    spaces: AgentSpaces  # in the env mode used for decoding (``quantity`` for residual)
    mode: str
    base: Policy | None = None  # residual only
    residual_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.mode not in ACTION_MODES:
            raise ValueError(f"action_mode: must be one of {ACTION_MODES}, got {self.mode!r}")
        if self.mode == "residual" and self.base is None:
            raise ValueError("action_mode: residual needs a base policy")

    @classmethod
    def build(
        cls, net: Network, mode: str, visibility: str, base: Policy | None = None, residual_scale: float = 1.0
    ) -> ActionMapper:
        env_mode = "quantity" if mode == "residual" else mode
        return cls(AgentSpaces(net, env_mode, visibility), mode, base, residual_scale)

    @property
    def net(self) -> Network:
        return self.spaces.net

    def decode(self, actions: np.ndarray, state: State) -> Action:
        a = np.clip(np.asarray(actions, dtype=float), -1.0, 1.0)
        if self.mode != "residual":
            return self.spaces.decode(a, state)
        net = self.net
        B, N, K, M = state.batch_size, net.n_nodes, net.n_skus, net.max_out_lanes
        learned = self.spaces.decode(a, state)  # transfers from lane columns
        base = self.base.act(state)  # type: ignore[union-attr]
        adj = a.reshape(B, N, K, 1 + M)[..., 0] * self.residual_scale * net.scale[None, :, None]
        return Action(orders=np.maximum(base.orders + adj, 0.0), transfers=base.transfers + learned.transfers)

    def init_bias(self) -> np.ndarray:
        """[action_dim] initial actor mean: orders near mean demand (or the base policy), no transfers."""
        net, sp = self.net, self.spaces
        K, M = net.n_skus, net.max_out_lanes
        bias = np.full((K, 1 + M), -1.2)  # transfers: mostly off at the start (clipped at -1)
        if self.mode == "quantity":
            bias[:, 0] = float(np.mean(2.0 * net.throughput.sum(axis=1) / net.n_skus / sp.max_order - 1.0))
        elif self.mode == "order_up_to":
            from invnet.agents.simple import default_levels

            lvl = default_levels(net).sum(axis=1) / net.n_skus
            bias[:, 0] = float(np.mean(np.clip(2.0 * lvl / sp.max_level - 1.0, -1.0, 1.0)))
        else:
            bias[:, 0] = 0.0
        return bias.reshape(-1)
