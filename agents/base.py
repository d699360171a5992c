"""The one policy interface every policy implements (baselines, learned policies, server).

A policy is bound to a compiled :class:`~invnet.envs.network.Network` and maps a batch of core
states to unit quantities. Adapters run it in the batched env (:func:`invnet.envs.rollout.rollout`),
the PettingZoo env (:func:`pettingzoo_actions`), ``invnet simulate`` and the policy server.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
from invnet.envs.core import Action, State
from invnet.envs.network import Network


@runtime_checkable
class Policy(Protocol):
    """Maps a batch of states ``[B, ...]`` to an :class:`Action` of non-negative quantities."""

    name: str
    net: Network

    def act(self, state: State) -> Action:
        """Orders ``[B, N, K]`` and transfers ``[B, E, K]`` for every node and lane."""
        ...

    def params(self) -> dict[str, Any]:
        """Parameters that define the policy (JSON-serialisable), for reports and bundles."""
        ...


def zero_action(net: Network, batch_size: int) -> Action:
    """No orders, no transfers."""
    return Action(
        orders=np.zeros((batch_size, net.n_nodes, net.n_skus)),
        transfers=np.zeros((batch_size, net.n_lanes, net.n_skus)),
    )


def combine(replenish: Action, transfer: Action) -> Action:
    """Orders of one policy with the transfers of another."""
    return Action(orders=replenish.orders, transfers=transfer.transfers)


def pettingzoo_actions(env: Any, policy: Policy) -> dict[str, np.ndarray]:
    """Per-agent actions for a :class:`~invnet.envs.inventory_network.InventoryNetworkEnv`.

    Quantities are encoded into the env's [-1, 1] action space; amounts above the space's bounds
    (``max_order``, ``max_level``, ``max_transfer``) saturate at the bound.
    """
    be = env.batched
    a = be.spaces.encode(policy.act(be.state), be.state)
    return {n: a[0, i].astype(np.float32) for i, n in enumerate(be.net.node_ids)}
