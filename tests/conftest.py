"""Shared helpers for the environment tests (imported as ``from conftest import ...``): tiny scenarios
built in code and fixed exogenous paths."""

from __future__ import annotations

from typing import Any

import numpy as np
from invnet.envs.core import Exogenous
from invnet.envs.network import Network, compile_network
from invnet.envs.scenario import parse_scenario


def make_net(nodes: list[dict[str, Any]], lanes: list[dict[str, Any]] | None = None, **top: Any) -> Network:
    """Compile a scenario from node and lane dicts (stores get Poisson(1) demand unless ``demand`` is given)."""
    demand = top.pop("demand", None) or {n["id"]: {"dist": "poisson", "mean": 1.0} for n in nodes}
    data = {"name": "tiny", "periods": 6, "nodes": nodes, "lanes": lanes or [], "demand": demand, **top}
    return compile_network(parse_scenario(data))


def fixed_exo(net: Network, demand: list[list[float]] | np.ndarray, lead_time: np.ndarray | None = None) -> Exogenous:
    """A batch-of-one exogenous path: ``demand[t][n]`` (one SKU); supplier lead times from the scenario."""
    d = np.zeros((1, net.periods, net.n_nodes, net.n_skus))
    arr = np.asarray(demand, dtype=float)
    d[0, : arr.shape[0], :, 0] = arr
    lt = np.broadcast_to(net.lt_values[:, 0], (1, net.periods, net.n_nodes)).copy() if lead_time is None else lead_time
    return Exogenous(demand=d, lead_time=lt)
