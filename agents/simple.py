"""Simple reference policies: do nothing, random, and order-up-to levels from the scenario."""

from __future__ import annotations

from typing import Any

import numpy as np
from invnet.agents.base import zero_action
from invnet.envs.core import Action, State
from invnet.envs.network import Network
from invnet.envs.spaces import AgentSpaces


class DoNothing:
    """Never orders, never transfers: the cost of living off initial stock."""

    name = "do_nothing"

    def __init__(self, net: Network) -> None:
        self.net = net

    def act(self, state: State) -> Action:
        return zero_action(self.net, state.batch_size)

    def params(self) -> dict[str, Any]:
        return {}


class RandomPolicy:
    """Uniform random orders in [0, max_order] and transfers in [0, max_transfer] (own generator)."""

    name = "random"

    def __init__(self, net: Network, seed: int = 0) -> None:
        self.net = net
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.spaces = AgentSpaces(net)

    def act(self, state: State) -> Action:
        B, N, K, E = state.batch_size, self.net.n_nodes, self.net.n_skus, self.net.n_lanes
        orders = self.rng.random((B, N, K)) * self.spaces.max_order[None, :, None]
        transfers = self.rng.random((B, E, K)) * self.spaces.max_transfer[None, :, None]
        return Action(orders=orders, transfers=transfers)

    def params(self) -> dict[str, Any]:
        return {"seed": self.seed}


def default_levels(net: Network) -> np.ndarray:
    """[N, K] order-up-to levels: throughput x (lead time + 1) plus 2 standard deviations.

    Used when the scenario gives no ``agents.base_stock``; a rough planner's rule, not tuned.
    """
    mu = net.throughput  # [N, K]
    cover = net.lead_time_mean[:, None] + 1.0
    return np.ceil(mu * cover + 2.0 * np.sqrt(mu * cover))


class OrderUpTo:
    """Installation order-up-to: each node orders ``max(0, S - inventory position)``.

    Levels from ``agents.base_stock`` in the scenario (per node, all SKUs), else :func:`default_levels`.
    """

    name = "order_up_to"

    def __init__(self, net: Network, levels: np.ndarray | dict[str, float | list[float]] | None = None) -> None:
        self.net = net
        if levels is None:
            levels = net.scenario.agents.base_stock
        if levels is None:
            self.levels = default_levels(net)
        elif isinstance(levels, dict):
            unknown = sorted(set(levels) - set(net.node_ids))
            if unknown:
                raise ValueError(f"levels: unknown node(s) {unknown}")
            self.levels = default_levels(net)
            for i, n in enumerate(net.node_ids):
                if n in levels:  # a number for every SKU, or one per SKU (as params() writes them)
                    self.levels[i] = np.broadcast_to(np.asarray(levels[n], dtype=float), (net.n_skus,))
        else:
            self.levels = np.broadcast_to(np.asarray(levels, dtype=float), (net.n_nodes, net.n_skus)).copy()

    def act(self, state: State) -> Action:
        orders = np.maximum(self.levels[None] - state.inventory_position, 0.0)
        a = zero_action(self.net, state.batch_size)
        return Action(orders=orders, transfers=a.transfers)

    def params(self) -> dict[str, Any]:
        return {"levels": {n: self.levels[i].tolist() for i, n in enumerate(self.net.node_ids)}}
