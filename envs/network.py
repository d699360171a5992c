"""A scenario compiled to flat NumPy arrays: the only input the simulator core reads.

Shapes: N nodes, K SKUs, E lanes, P pipeline slots (max lead time, at least 1), T periods.
Derived values are computed here once, never written back to the scenario.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
from invnet.envs.scenario import SUPPLIER, Scenario

if TYPE_CHECKING:
    from invnet.envs.demand import DemandSampler


@dataclass(frozen=True, eq=False)
class Network:
    """Array view of a :class:`Scenario`. Build with :func:`compile_network`."""

    scenario: Scenario
    node_ids: list[str]
    skus: list[str]
    holding: np.ndarray  # [N, K] cost per unit of end-of-period on-hand
    penalty: np.ndarray  # [N, K] lost-sale penalty per unit, or backorder cost per unit per period
    capacity: np.ndarray  # [N] storage capacity shared by SKUs (inf = none)
    initial_stock: np.ndarray  # [N, K]
    is_supplier_fed: np.ndarray  # [N] bool
    source_lane: np.ndarray  # [N] int, lane index of the upstream shipment lane, -1 for supplier-fed
    lt_values: np.ndarray  # [N, V] supplier lead-time support (padded with the last value)
    lt_cdf: np.ndarray  # [N, V] cumulative probabilities (last = 1)
    lane_from: np.ndarray  # [E] int
    lane_to: np.ndarray  # [E] int
    lane_lead: np.ndarray  # [E] int
    lane_unit: np.ndarray  # [E] cost per unit
    lane_fixed: np.ndarray  # [E] cost per shipment (lane and period with any units)
    lane_cap: np.ndarray  # [E] units per period, all SKUs (inf = none)
    order_fixed: float
    order_unit: float
    pipeline_holding: bool
    supplier_holding: float
    backorder: bool
    periods: int
    warmup: int
    disrupted: np.ndarray  # [T, N] bool: node can neither ship nor receive
    mean_demand: np.ndarray  # [T, N, K] expected demand per period (forecast)
    outbound: list[list[int]] = field(repr=False)  # per node: lane indices it sends on, in scenario order

    @cached_property
    def demand_sampler(self) -> DemandSampler:
        """The scenario's demand sampler (its inversion tables are built once per network, then shared)."""
        from invnet.envs.demand import DemandSampler

        return DemandSampler(self.scenario, self.mean_demand)

    @property
    def n_nodes(self) -> int:
        return len(self.node_ids)

    @property
    def n_skus(self) -> int:
        return len(self.skus)

    @property
    def n_lanes(self) -> int:
        return int(self.lane_from.shape[0])

    @cached_property
    def pipeline_len(self) -> int:
        """P: slots for in-transit units; slot j arrives at the start of period t+1+j."""
        longest = max(int(self.lt_values.max(initial=0)), int(self.lane_lead.max(initial=0)))
        return max(1, longest)

    @cached_property
    def max_out_lanes(self) -> int:
        return max((len(o) for o in self.outbound), default=0)

    @cached_property
    def lane_in_matrix(self) -> np.ndarray:
        """[E, N] 1 where lane e delivers to node n."""
        m = np.zeros((self.n_lanes, self.n_nodes))
        m[np.arange(self.n_lanes), self.lane_to] = 1.0
        return m

    @cached_property
    def lane_out_matrix(self) -> np.ndarray:
        """[E, N] 1 where lane e ships from node n."""
        m = np.zeros((self.n_lanes, self.n_nodes))
        m[np.arange(self.n_lanes), self.lane_from] = 1.0
        return m

    @cached_property
    def is_source_lane(self) -> np.ndarray:
        """[E] bool: lane carries upstream shipments for its receiver's orders."""
        out = np.zeros(self.n_lanes, dtype=bool)
        out[self.source_lane[self.source_lane >= 0]] = True
        return out

    @cached_property
    def source_node(self) -> np.ndarray:
        """[N] int: upstream node, -1 for supplier-fed."""
        if self.n_lanes == 0:
            return np.full(self.n_nodes, -1)
        return np.where(self.source_lane >= 0, self.lane_from[np.maximum(self.source_lane, 0)], -1)

    @cached_property
    def fixed_lead_times(self) -> bool:
        """True when every supplier lead time has a single value (any draw picks it; the steps skip the draws)."""
        return bool(np.all(self.lt_cdf[:, 0] >= 1.0))

    @cached_property
    def lead_time_mean(self) -> np.ndarray:
        """[N] expected replenishment lead time (supplier or source lane)."""
        out = np.zeros(self.n_nodes)
        for i, n in enumerate(self.scenario.nodes):
            out[i] = n.lead_time_mean if n.source == SUPPLIER else self.lane_lead[self.source_lane[i]]
        return out

    @cached_property
    def throughput(self) -> np.ndarray:
        """[N, K] mean demand per period served through each node (own + all downstream nodes)."""
        own = self.mean_demand.mean(axis=0)  # [N, K]
        total = own.copy()
        for i in range(self.n_nodes):
            up = self.source_node[i]
            seen = 0
            while up >= 0 and seen <= self.n_nodes:
                total[up] += own[i]
                up = self.source_node[up]
                seen += 1
        return total

    @cached_property
    def scale(self) -> np.ndarray:
        """[N] normalising scale for observations and action bounds (units per period, >= 1)."""
        return np.maximum(self.throughput.sum(axis=1), 1.0)

    @cached_property
    def echelon_members(self) -> np.ndarray:
        """[N, N] bool: row i marks node i and every node downstream of it in the source tree."""
        m = np.eye(self.n_nodes, dtype=bool)
        for i in range(self.n_nodes):
            up = self.source_node[i]
            seen = 0
            while up >= 0 and seen <= self.n_nodes:
                m[up, i] = True
                up = self.source_node[up]
                seen += 1
        return m


def _seasonal_factor(t: np.ndarray, period: float, amplitude: float, phase: float) -> np.ndarray:
    return 1.0 + amplitude * np.sin(2.0 * np.pi * (t - phase) / period)


def mean_schedule(s: Scenario) -> np.ndarray:
    """[T, N, K] expected demand: base mean x seasonality x (1 + trend t) x scheduled shocks."""
    T, N, K = s.periods, len(s.nodes), len(s.skus)
    t = np.arange(T, dtype=float)
    out = np.zeros((T, N, K))
    for i, node in enumerate(s.nodes):
        for k, sku in enumerate(s.skus):
            spec = s.demand_spec(node.id, sku)
            if spec is None:
                continue
            m = np.full(T, spec.mean)
            if spec.seasonality is not None:
                ss = spec.seasonality
                m = m * _seasonal_factor(t, ss.period, ss.amplitude, ss.phase)
            m = m * np.maximum(1.0 + spec.trend * t, 0.0)
            out[:, i, k] = m
    ids = {n.id: i for i, n in enumerate(s.nodes)}
    for sh in s.demand.shocks:
        ks = [s.skus.index(x) for x in sh.skus] if sh.skus else list(range(K))
        for nid in sh.nodes:
            sl = slice(sh.start, min(sh.start + sh.duration, T))
            out[sl, ids[nid], ks] *= sh.multiplier
    return out


def compile_network(s: Scenario) -> Network:
    """Flatten a validated scenario into arrays."""
    ids = [n.id for n in s.nodes]
    idx = {n: i for i, n in enumerate(ids)}
    N, K, E = len(ids), len(s.skus), len(s.lanes)
    holding = np.array([[n.holding_cost] * K for n in s.nodes], dtype=float).reshape(N, K)
    penalty = np.array(
        [[n.shortage_penalty if n.shortage_penalty is not None else s.costs.shortage_penalty] * K for n in s.nodes],
        dtype=float,
    ).reshape(N, K)
    init = np.zeros((N, K))
    for i, n in enumerate(s.nodes):
        for k, sku in enumerate(s.skus):
            init[i, k] = n.initial_stock.get(sku, 0.0) if isinstance(n.initial_stock, dict) else n.initial_stock
    lane_index = {(ln.from_, ln.to): j for j, ln in enumerate(s.lanes)}
    source_lane = np.array([-1 if n.source == SUPPLIER else lane_index[(n.source, n.id)] for n in s.nodes], dtype=int)
    V = max(len(n.lead_time_values) for n in s.nodes)
    lt_values = np.zeros((N, V), dtype=int)
    lt_cdf = np.ones((N, V))
    for i, n in enumerate(s.nodes):
        vals = n.lead_time_values
        probs = [1.0] if isinstance(n.lead_time, int) else list(n.lead_time.probs)
        lt_values[i, : len(vals)] = vals
        lt_values[i, len(vals) :] = vals[-1]
        c = np.cumsum(probs)
        c[-1] = 1.0
        lt_cdf[i, : len(vals)] = c
    disrupted = np.zeros((s.periods, N), dtype=bool)
    for d in s.disruptions:
        disrupted[d.start : d.start + d.duration, idx[d.node]] = True
    outbound: list[list[int]] = [[] for _ in range(N)]
    for j, ln in enumerate(s.lanes):
        outbound[idx[ln.from_]].append(j)
    mean = mean_schedule(s)
    if s.demand.replay is not None:
        from invnet.envs.demand import load_replay_table

        table = load_replay_table(s)
        mean = np.broadcast_to(table.mean(axis=0), (s.periods, N, K)).copy()
    return Network(
        scenario=s,
        node_ids=ids,
        skus=list(s.skus),
        holding=holding,
        penalty=penalty,
        capacity=np.array([n.capacity for n in s.nodes], dtype=float),
        initial_stock=init,
        is_supplier_fed=source_lane < 0,
        source_lane=source_lane,
        lt_values=lt_values,
        lt_cdf=lt_cdf,
        lane_from=np.array([idx[ln.from_] for ln in s.lanes], dtype=int).reshape(E),
        lane_to=np.array([idx[ln.to] for ln in s.lanes], dtype=int).reshape(E),
        lane_lead=np.array([ln.lead_time for ln in s.lanes], dtype=int).reshape(E),
        lane_unit=np.array([ln.unit_cost for ln in s.lanes], dtype=float).reshape(E),
        lane_fixed=np.array([ln.fixed_cost for ln in s.lanes], dtype=float).reshape(E),
        lane_cap=np.array([ln.capacity for ln in s.lanes], dtype=float).reshape(E),
        order_fixed=s.costs.order_fixed,
        order_unit=s.costs.order_unit,
        pipeline_holding=s.costs.pipeline_holding,
        supplier_holding=s.costs.supplier_holding_cost,
        backorder=s.shortage == "backorder",
        periods=s.periods,
        warmup=s.warmup,
        disrupted=disrupted,
        mean_demand=mean,
        outbound=outbound,
    )


def finite_or(x: float, default: float) -> float:
    return x if math.isfinite(x) else default
