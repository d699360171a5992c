"""The evaluation frame: policies x episodes x periods x nodes, one tidy row per node-period.

:func:`evaluate` runs every policy with :func:`invnet.envs.rollout.rollout` on the *same* seed, so
episode ``e`` of every policy sees the same demand and lead-time paths (common random numbers).
Warm-up periods (``scenario.warmup``) are dropped from the frame; ``frame.attrs`` states them with
the seed, episode count and horizon. KPIs (:mod:`invnet.evaluation.kpis`) and reports only read
this frame.

Columns of the period frame (units summed over SKUs; costs per node and period):

- keys: ``policy``, ``episode`` (0..E-1, demand seed = seed + episode), ``period``, ``node``
- costs: ``holding_cost``, ``shortage_cost``, ``order_cost``, ``transfer_cost``, ``cost``
- flows: ``demand``, ``served_now``, ``sales``, ``lost_sales``, ``backlog``, ``on_hand``,
  ``in_transit``, ``received``, ``ordered``, ``order_shipped``, ``supplier_in``, ``shipped_out``,
  ``refused``, ``transfers_out``/``transfers_in`` (lateral transfer units), ``transfer_shipments``
  (outbound lanes that carried a transfer), ``shipped_down`` (units shipped to downstream nodes'
  orders), ``downstream_orders`` (units downstream nodes asked of this node), ``faced`` (external
  demand + downstream orders), ``supplier_orders`` (orders placed with the external supplier)
- flags: ``external_demand`` (node has demand of its own), ``stockout`` (this period's demand not
  fully served at once), ``ran_out`` (end-of-period on-hand is zero)
- value: ``margin`` = sales x (price - unit_cost), ``inventory_value`` = on-hand x unit_cost (NaN
  where the scenario gives no ``price``/``unit_cost`` for the node)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np
import pandas as pd
from invnet.agents.base import Policy
from invnet.envs.network import Network
from invnet.envs.rollout import Trajectory, rollout

Level = Literal["episode", "node", "period"]
KEYS = ("policy", "episode", "period", "node")
EPS = 1e-9


def _node_matrices(net: Network) -> np.ndarray:
    """[N, N] 1 where row i's orders are placed with column node (its upstream source)."""
    m = np.zeros((net.n_nodes, net.n_nodes))
    for i, s in enumerate(net.source_node):
        if s >= 0:
            m[i, s] = 1.0
    return m


def period_frame(traj: Trajectory, policy: str) -> pd.DataFrame:
    """Tidy node-period frame of one policy's trajectory, warm-up periods dropped."""
    net = traj.net
    w = net.warmup
    d = traj.data
    E, T, N = d["holding_cost"].shape
    Tw = T - w

    def node(key: str) -> np.ndarray:  # [E, T-w, N] units summed over SKUs
        x = d[key][:, w:]
        return x.sum(axis=3) if x.ndim == 4 else x

    lane_tr = d["lane_shipped"][:, w:].sum(axis=3)  # [E, T-w, L]
    lane_flow = d["lane_flow"][:, w:].sum(axis=3)
    cols: dict[str, np.ndarray] = {}
    for k in ("holding_cost", "shortage_cost", "order_cost", "transfer_cost"):
        cols[k] = node(k)
    cols["cost"] = cols["holding_cost"] + cols["shortage_cost"] + cols["order_cost"] + cols["transfer_cost"]
    for k in (
        "demand",
        "served_now",
        "sales",
        "lost_sales",
        "backlog",
        "on_hand",
        "in_transit",
        "received",
        "ordered",
        "order_shipped",
        "supplier_in",
        "shipped_out",
        "refused",
    ):
        cols[k] = node(k)
    cols["transfers_out"] = lane_tr @ net.lane_out_matrix
    cols["transfers_in"] = lane_tr @ net.lane_in_matrix
    cols["transfer_shipments"] = (lane_tr > EPS).astype(float) @ net.lane_out_matrix
    cols["shipped_down"] = (lane_flow - lane_tr) @ net.lane_out_matrix
    cols["downstream_orders"] = cols["ordered"] @ _node_matrices(net)
    cols["faced"] = cols["demand"] + cols["downstream_orders"]
    cols["supplier_orders"] = cols["ordered"] * net.is_supplier_fed[None, None, :]
    ext = net.mean_demand.sum(axis=(0, 2)) > 0  # [N]
    cols["external_demand"] = np.broadcast_to(ext[None, None, :], (E, Tw, N))
    cols["stockout"] = cols["demand"] - cols["served_now"] > EPS
    cols["ran_out"] = cols["on_hand"] <= EPS
    nodes = net.scenario.nodes
    price = np.array([np.nan if n.price is None else n.price for n in nodes])
    ucost = np.array([np.nan if n.unit_cost is None else n.unit_cost for n in nodes])
    cols["margin"] = cols["sales"] * (price - ucost)[None, None, :]
    cols["inventory_value"] = cols["on_hand"] * ucost[None, None, :]

    e_idx, t_idx, n_idx = np.meshgrid(np.arange(E), np.arange(w, T), np.arange(N), indexing="ij")
    frame = pd.DataFrame(
        {
            "policy": pd.Categorical([policy] * (E * Tw * N)),
            "episode": e_idx.ravel(),
            "period": t_idx.ravel(),
            "node": pd.Categorical.from_codes(n_idx.ravel(), categories=net.node_ids),
            **{k: np.ascontiguousarray(v).reshape(-1) for k, v in cols.items()},
        }
    )
    return frame


def evaluate(
    net: Network,
    policies: Mapping[str, Policy],
    episodes: int,
    seed: int = 0,
    level: Level = "episode",
) -> pd.DataFrame:
    """Evaluate policies on common demand paths; a tidy frame at the asked ``level``.

    - ``"period"``: one row per policy x episode x period x node (the raw frame, warm-up dropped);
    - ``"node"``: one row per policy x episode x node with the node KPIs;
    - ``"episode"``: one row per policy x episode with the network KPIs.

    Every policy runs ``rollout(net, policy, episodes, seed)``: the same seed gives every policy the
    same demand and lead-time paths. ``frame.attrs`` records scenario, seed, episodes, periods and warm-up.
    """
    from invnet.evaluation import kpis

    if not policies:
        raise ValueError("policies: give at least one policy")
    if level not in ("episode", "node", "period"):
        raise ValueError(f"level: must be 'episode', 'node' or 'period', got {level!r}")
    parts = [period_frame(rollout(net, pol, episodes, seed), name) for name, pol in policies.items()]
    frame = pd.concat(parts, ignore_index=True)
    frame["policy"] = pd.Categorical(frame["policy"].astype(str), categories=list(policies))
    frame.attrs = {
        "scenario": net.scenario.name,
        "seed": int(seed),
        "episodes": int(episodes),
        "periods": int(net.periods),
        "warmup": int(net.warmup),
        "evaluated_periods": int(net.periods - net.warmup),
        "policies": {name: _params(p) for name, p in policies.items()},
    }
    if level == "period":
        return frame
    return kpis.node_kpis(frame) if level == "node" else kpis.episode_kpis(frame)


def _params(p: Policy) -> dict:
    try:
        return {"name": p.name, "params": p.params()}
    except Exception:  # noqa: BLE001 - params are informational only
        return {"name": getattr(p, "name", "?"), "params": {}}
