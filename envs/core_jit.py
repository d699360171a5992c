"""The simulator core compiled with numba: the same step as :mod:`invnet.envs.core`, one loop per batch row.

:func:`invnet.envs.core.step` stays the readable reference; this module implements exactly its event
order and formulas (disruption, lane capacity, receiver capacity, proportional per-SKU rationing of
sender stock, lead-0 lanes delivering after all shipping, supplier lead-time slots, backorder or lost
sales, every cost term, the end-of-step advance) as ``@numba.njit`` kernels that loop over batch rows,
lanes, nodes and SKUs and write into preallocated arrays. ``tests/test_core_jit.py`` checks every
output and the next state against the NumPy core on random scenarios and on every shipped scenario.

- :func:`step_jit` has the contract of :func:`invnet.envs.core.step` (same arrays, shapes and dtypes).
- :class:`JitStepper` fuses action decoding, the step and the observation of the next state into one
  kernel call (what :class:`invnet.envs.batched.BatchedInventoryEnv` uses with ``backend="numba"``), so a
  step costs one dispatch instead of ~150 small NumPy calls.

Kernels are compiled on first use and cached on disk (``cache=True``).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from invnet.envs.core import Action, Exogenous, State, StepOutput
from invnet.envs.network import Network
from invnet.envs.spaces import AgentSpaces

_VISIBILITY = {"own": 0, "neighbours": 1, "all": 2}


@numba.njit(cache=True)
def _step_kernel(  # flat arrays: what numba dispatches fastest
    t,
    on_hand,  # [B, N, K] state at decision time
    backlog,  # [B, N, K]
    pipeline,  # [B, N, K, P]
    pipe_rate,  # [B, N, K, P]
    arrived,  # [B, N, K]
    hist,  # [B, N, K, H]
    orders,  # [B, N, K] action
    transfers,  # [B, E, K]
    demand,  # [B, N, K] exogenous demand of period t
    lead,  # [B, N] supplier lead time of an order placed in t
    is_sup,  # [N] bool
    source_lane,  # [N] int, -1 for supplier-fed
    lane_from,  # [E]
    lane_to,  # [E]
    lane_lead,  # [E]
    lane_unit,  # [E]
    lane_fixed,  # [E]
    lane_cap,  # [E]
    capacity,  # [N]
    holding,  # [N, K]
    penalty,  # [N, K]
    down_now,  # [N] bool: disrupted in t
    down_next,  # [N] bool: disrupted in t + 1
    has_next,  # bool: t + 1 < periods (arrivals join on-hand)
    fixed_lt,  # bool: supplier lead time fixed per node (exogenous draw ignored, as in core.step)
    lt0,  # [N] the fixed supplier lead time
    order_fixed,
    order_unit,
    pipeline_holding,
    supplier_holding,
    backorder,
    # outputs [B, N] / [B, N, K] / [B, E, K]
    holding_cost,
    shortage_cost,
    order_cost,
    transfer_cost,
    sales,
    served_now,
    lost_sales,
    backlog_out,
    on_hand_out,
    in_transit,
    received,
    order_shipped,
    supplier_in,
    lane_shipped,
    lane_flow,
    shipped_out,
    refused,
    # next state
    on_hand_next,
    pipeline_next,
    pipe_rate_next,
    arrived_next,
    hist_next,
):
    B, N, K = on_hand.shape
    E = transfers.shape[1]
    P = pipeline.shape[3]
    H = hist.shape[3]
    lane_order = np.empty((E, K))  # upstream-order part of each lane's flow
    f_recv = np.empty(N)
    f_node = np.empty((N, K))
    asks_out = np.empty((N, K))
    tr_refused = np.empty((N, K))
    pipe = np.empty((N, K, P))
    rate = np.empty((N, K, P))
    inbound = np.empty(N)
    for b in range(B):
        # 3a. disruption: a disrupted node's orders are refused; a lane with a disrupted end carries nothing
        for n in range(N):
            for k in range(K):
                q = 0.0 if down_now[n] else orders[b, n, k]
                supplier_in[b, n, k] = q if is_sup[n] else 0.0
        for e in range(E):
            ok = not (down_now[lane_from[e]] or down_now[lane_to[e]])
            for k in range(K):
                lane_shipped[b, e, k] = transfers[b, e, k] if ok else 0.0
                lane_order[e, k] = 0.0
        for n in range(N):
            e = source_lane[n]
            if e >= 0 and not (down_now[lane_from[e]] or down_now[n]):
                for k in range(K):
                    lane_order[e, k] = orders[b, n, k]
        # 3b. lane capacity, shared by SKUs and by orders + transfers: both scaled by capacity / asks
        for e in range(E):
            asks = 0.0
            for k in range(K):
                asks += lane_order[e, k] + lane_shipped[b, e, k]
            if asks > lane_cap[e]:
                f = min(max(lane_cap[e] / asks, 0.0), 1.0)
                for k in range(K):
                    lane_order[e, k] *= f
                    lane_shipped[b, e, k] *= f
        # 3c. receiver storage capacity: all inbound asks scaled by room / inbound
        for n in range(N):
            s = 0.0
            for k in range(K):
                s += supplier_in[b, n, k]
            inbound[n] = s
        for e in range(E):
            s = 0.0
            for k in range(K):
                s += lane_order[e, k] + lane_shipped[b, e, k]
            inbound[lane_to[e]] += s
        for n in range(N):
            f_recv[n] = 1.0
            if math.isfinite(capacity[n]):
                held = 0.0
                for k in range(K):
                    held += on_hand[b, n, k]
                    for p in range(P):
                        held += pipeline[b, n, k, p]
                room = max(capacity[n] - held, 0.0)
                if inbound[n] > room:
                    f_recv[n] = min(max(room / inbound[n], 0.0), 1.0)
                    for k in range(K):
                        supplier_in[b, n, k] *= f_recv[n]
        for e in range(E):
            f = f_recv[lane_to[e]]
            if f < 1.0:
                for k in range(K):
                    lane_order[e, k] *= f
                    lane_shipped[b, e, k] *= f
        # 3d. sender stock, per SKU: every ask scaled by on_hand / asks (proportional rationing)
        asks_out[:, :] = 0.0
        for e in range(E):
            for k in range(K):
                asks_out[lane_from[e], k] += lane_order[e, k] + lane_shipped[b, e, k]
        for n in range(N):
            for k in range(K):
                a = asks_out[n, k]
                if a > on_hand[b, n, k]:
                    f_node[n, k] = on_hand[b, n, k] / a
                    shipped_out[b, n, k] = a * f_node[n, k]
                else:
                    f_node[n, k] = 1.0
                    shipped_out[b, n, k] = a
                tr_refused[n, k] = 0.0
        for e in range(E):
            s = lane_from[e]
            for k in range(K):
                f = f_node[s, k]
                lane_order[e, k] *= f
                lane_shipped[b, e, k] *= f
                lane_flow[b, e, k] = lane_order[e, k] + lane_shipped[b, e, k]
                tr_refused[s, k] += transfers[b, e, k] - lane_shipped[b, e, k]
        for n in range(N):
            e = source_lane[n]
            for k in range(K):
                shipped = supplier_in[b, n, k] + (lane_order[e, k] if e >= 0 else 0.0)
                order_shipped[b, n, k] = shipped
                refused[b, n, k] = max(orders[b, n, k] - shipped, 0.0) + max(tr_refused[n, k], 0.0)
                on_hand_out[b, n, k] = max(on_hand[b, n, k] - shipped_out[b, n, k], 0.0) if E else on_hand[b, n, k]
                received[b, n, k] = arrived[b, n, k]
                for p in range(P):
                    pipe[n, k, p] = pipeline[b, n, k, p]
                    rate[n, k, p] = pipe_rate[b, n, k, p]
        # deliveries: lead-0 lanes join on-hand now (after all shipping), longer ones the pipeline
        for e in range(E):
            L = lane_lead[e]
            r = lane_to[e]
            for k in range(K):
                q = lane_flow[b, e, k]
                if L == 0:
                    on_hand_out[b, r, k] += q
                    received[b, r, k] += q
                else:
                    pipe[r, k, L - 1] += q
                    if pipeline_holding:
                        rate[r, k, L - 1] += q * holding[lane_from[e], k]
        for n in range(N):
            if not is_sup[n]:
                continue
            L = lt0[n] if fixed_lt else lead[b, n]
            for k in range(K):
                q = supplier_in[b, n, k]
                if L == 0:
                    on_hand_out[b, n, k] += q
                    received[b, n, k] += q
                else:
                    pipe[n, k, L - 1] += q
                    if pipeline_holding:
                        rate[n, k, L - 1] += q * supplier_holding
        # 4. demand (backlog first in backorder mode) and 5. costs
        for n in range(N):
            h = 0.0
            short = 0.0
            qty = 0.0
            for k in range(K):
                d = demand[b, n, k]
                if backorder:
                    due = backlog[b, n, k] + d
                    sold = min(on_hand_out[b, n, k], due)
                    backlog_out[b, n, k] = due - sold
                    served_now[b, n, k] = max(sold - backlog[b, n, k], 0.0)
                    lost_sales[b, n, k] = 0.0
                    short += backlog_out[b, n, k] * penalty[n, k]
                else:
                    sold = min(on_hand_out[b, n, k], d)
                    lost_sales[b, n, k] = d - sold
                    served_now[b, n, k] = sold
                    backlog_out[b, n, k] = backlog[b, n, k]
                    short += lost_sales[b, n, k] * penalty[n, k]
                sales[b, n, k] = sold
                on_hand_out[b, n, k] -= sold
                h += on_hand_out[b, n, k] * holding[n, k]
                qty += order_shipped[b, n, k]
                s = 0.0
                for p in range(P):
                    s += pipe[n, k, p]
                    if pipeline_holding:
                        h += rate[n, k, p]
                in_transit[b, n, k] = s
            holding_cost[b, n] = h
            shortage_cost[b, n] = short
            c = order_unit * qty
            if order_fixed != 0.0 and qty > 1e-9:
                c += order_fixed
            order_cost[b, n] = c
            transfer_cost[b, n] = 0.0
        # lane costs: unit cost of upstream orders to the receiver, of transfers to the sender; one fixed
        # charge per lane used, with the upstream order when the lane carries one
        for e in range(E):
            lo = 0.0
            lt = 0.0
            for k in range(K):
                lo += lane_order[e, k]
                lt += lane_shipped[b, e, k]
            transfer_cost[b, lane_from[e]] += lt * lane_unit[e]
            if lo != 0.0:
                order_cost[b, lane_to[e]] += lo * lane_unit[e]
            if lo > 1e-9:
                order_cost[b, lane_to[e]] += lane_fixed[e]
            elif lt > 1e-9:
                transfer_cost[b, lane_from[e]] += lane_fixed[e]
        # advance: next period's arrivals join on-hand (a disrupted node's arrivals wait in transit)
        for n in range(N):
            wait = down_next[n]
            for k in range(K):
                for j in range(H - 1):
                    hist_next[b, n, k, j] = hist[b, n, k, j + 1]
                hist_next[b, n, k, H - 1] = demand[b, n, k]
                if has_next:
                    for p in range(P - 1):
                        pipeline_next[b, n, k, p] = pipe[n, k, p + 1]
                        pipe_rate_next[b, n, k, p] = rate[n, k, p + 1]
                    pipeline_next[b, n, k, P - 1] = 0.0
                    pipe_rate_next[b, n, k, P - 1] = 0.0
                    a = 0.0 if wait else pipe[n, k, 0]
                    if wait:
                        pipeline_next[b, n, k, 0] += pipe[n, k, 0]
                        pipe_rate_next[b, n, k, 0] += rate[n, k, 0]
                    arrived_next[b, n, k] = a
                    on_hand_next[b, n, k] = on_hand_out[b, n, k] + a
                else:
                    for p in range(P):
                        pipeline_next[b, n, k, p] = pipe[n, k, p]
                        pipe_rate_next[b, n, k, p] = rate[n, k, p]
                    arrived_next[b, n, k] = 0.0
                    on_hand_next[b, n, k] = on_hand_out[b, n, k]


@numba.njit(cache=True)
def _decode_kernel(
    actions, order_idx, tr_idx, half_order, half_tr, up_to, on_hand, pipeline, backlog, orders, transfers
):
    """AgentSpaces.decode into ``orders`` / ``transfers``; False if an action is NaN, infinite or beyond 1 + 1e-6."""
    B = actions.shape[0]
    N, K = order_idx.shape
    E = tr_idx.shape[0]
    P = pipeline.shape[3]
    width = actions.shape[1] * actions.shape[2]
    flat = actions.reshape(B, width)
    ok = True
    for b in range(B):
        for i in range(width):
            x = flat[b, i]
            if not abs(x) <= 1.0 + 1e-6:
                ok = False
        for n in range(N):
            for k in range(K):
                u = min(max(flat[b, order_idx[n, k]], -1.0), 1.0)
                first = (u + 1.0) * half_order[n]
                if up_to:  # inventory position, summed in State.inventory_position's order
                    pk = 0.0
                    for p in range(P):
                        pk += pipeline[b, n, k, p]
                    first = max(first - (on_hand[b, n, k] + pk - backlog[b, n, k]), 0.0)
                orders[b, n, k] = first
        for e in range(E):
            for k in range(K):
                u = min(max(flat[b, tr_idx[e, k]], -1.0), 1.0)
                transfers[b, e, k] = (u + 1.0) * half_tr[e]
    return ok


@numba.njit(cache=True)
def _observe_kernel(
    on_hand, backlog, pipeline, hist, forecast, inv, time3, feats, vis, to, recv_onhand, recv_dos, src, src_dos, out
):
    """AgentSpaces.observe into the float32 buffer ``out`` [B, N, obs_dim] (same layout and rounding)."""
    B, N, K = on_hand.shape
    P = pipeline.shape[3]
    H = hist.shape[3]
    F = feats.shape[1]
    M = to.shape[1]
    stock = np.empty(N)
    for b in range(B):
        for n in range(N):
            c = inv[n]
            s = 0.0
            for k in range(K):
                oh = on_hand[b, n, k]
                s += oh
                bl = backlog[b, n, k]
                pk = 0.0
                for p in range(P):
                    pk += pipeline[b, n, k, p]
                    out[b, n, 4 * K + k * P + p] = pipeline[b, n, k, p] * c
                out[b, n, k] = oh * c
                out[b, n, K + k] = bl * c
                out[b, n, 2 * K + k] = (oh + pk - bl) * c
                out[b, n, 3 * K + k] = forecast[n, k]
                for j in range(H):
                    out[b, n, 4 * K + K * P + k * H + j] = hist[b, n, k, j] * c
            stock[n] = s
            o = K * (4 + P + H)
            out[b, n, o] = time3[0]
            out[b, n, o + 1] = time3[1]
            out[b, n, o + 2] = time3[2]
            for f in range(F):
                out[b, n, o + 3 + f] = feats[n, f]
        v = K * (4 + P + H) + 3 + F
        if vis == 1:
            for n in range(N):
                for m in range(M):
                    r = stock[to[n, m]]
                    out[b, n, v + m] = r * recv_onhand[n, m]
                    out[b, n, v + M + m] = r * recv_dos[n, m]
                out[b, n, v + 2 * M] = stock[src[n]] * src_dos[n]
        elif vis == 2:
            for n in range(N):
                for j in range(N):
                    out[b, n, v + j] = stock[j] * inv[j]


class _NetConsts:
    """Per-network constant arrays of the kernels (computed once, cached on the Network)."""

    def __init__(self, net: Network) -> None:
        N = net.n_nodes
        self.is_sup = net.is_supplier_fed.astype(np.bool_)
        self.source_lane = net.source_lane.astype(np.int64)
        self.lane_from = net.lane_from.astype(np.int64)
        self.lane_to = net.lane_to.astype(np.int64)
        self.lane_lead = net.lane_lead.astype(np.int64)
        self.lane_unit = net.lane_unit.astype(float)
        self.lane_fixed = net.lane_fixed.astype(float)
        self.lane_cap = net.lane_cap.astype(float)
        self.capacity = net.capacity.astype(float)
        self.holding = np.ascontiguousarray(net.holding, dtype=float)
        self.penalty = np.ascontiguousarray(net.penalty, dtype=float)
        self.disrupted = np.ascontiguousarray(net.disrupted, dtype=np.bool_)  # [T, N]
        self.no_down = np.zeros(N, dtype=np.bool_)
        self.fixed_lt = bool(np.all(net.lt_cdf[:, 0] >= 1.0))
        self.lt0 = net.lt_values[:, 0].astype(np.int64)
        self.order_fixed = float(net.order_fixed)
        self.order_unit = float(net.order_unit)
        self.pipeline_holding = bool(net.pipeline_holding)
        self.supplier_holding = float(net.supplier_holding)
        self.backorder = bool(net.backorder)
        self.periods = int(net.periods)

    def down(self, t: int) -> np.ndarray:
        return self.disrupted[t] if t < self.periods else self.no_down


def _consts(net: Network) -> _NetConsts:
    c = net.__dict__.get("_jit_consts")
    if c is None:
        c = _NetConsts(net)
        net.__dict__["_jit_consts"] = c  # Network is frozen; cache like functools.cached_property does
    return c


def _run_step(
    net: Network, state: State, orders: np.ndarray, transfers: np.ndarray, exo: Exogenous
) -> tuple[State, StepOutput]:
    c = _consts(net)
    t = state.t
    B, N, K = state.on_hand.shape
    E, P, H = transfers.shape[1], state.pipeline.shape[3], state.demand_hist.shape[3]
    f64 = np.float64
    o = {k: np.empty((B, N), f64) for k in ("holding_cost", "shortage_cost", "order_cost", "transfer_cost")}
    for k in (
        "sales",
        "served_now",
        "lost_sales",
        "backlog",
        "on_hand",
        "in_transit",
        "received",
        "order_shipped",
        "supplier_in",
        "shipped_out",
        "refused",
    ):
        o[k] = np.empty((B, N, K), f64)
    o["lane_shipped"] = np.empty((B, E, K), f64)
    o["lane_flow"] = np.empty((B, E, K), f64)
    on_hand_next = np.empty((B, N, K), f64)
    pipeline_next = np.empty((B, N, K, P), f64)
    pipe_rate_next = np.empty((B, N, K, P), f64)
    arrived_next = np.empty((B, N, K), f64)
    hist_next = np.empty((B, N, K, H), f64)
    demand = exo.demand[:, t]
    _step_kernel(
        t,
        _f64(state.on_hand),
        _f64(state.backlog),
        _f64(state.pipeline),
        _f64(state.pipe_rate),
        _f64(state.arrived),
        _f64(state.demand_hist),
        _f64(orders),
        _f64(transfers),
        _f64(demand),
        np.ascontiguousarray(exo.lead_time[:, t], dtype=np.int64),
        c.is_sup,
        c.source_lane,
        c.lane_from,
        c.lane_to,
        c.lane_lead,
        c.lane_unit,
        c.lane_fixed,
        c.lane_cap,
        c.capacity,
        c.holding,
        c.penalty,
        c.down(t),
        c.down(t + 1),
        t + 1 < c.periods,
        c.fixed_lt,
        c.lt0,
        c.order_fixed,
        c.order_unit,
        c.pipeline_holding,
        c.supplier_holding,
        c.backorder,
        o["holding_cost"],
        o["shortage_cost"],
        o["order_cost"],
        o["transfer_cost"],
        o["sales"],
        o["served_now"],
        o["lost_sales"],
        o["backlog"],
        o["on_hand"],
        o["in_transit"],
        o["received"],
        o["order_shipped"],
        o["supplier_in"],
        o["lane_shipped"],
        o["lane_flow"],
        o["shipped_out"],
        o["refused"],
        on_hand_next,
        pipeline_next,
        pipe_rate_next,
        arrived_next,
        hist_next,
    )
    out = StepOutput(demand=demand, ordered=orders, **o)
    new_state = State(
        t=t + 1,
        on_hand=on_hand_next,
        backlog=o["backlog"],
        pipeline=pipeline_next,
        pipe_rate=pipe_rate_next,
        arrived=arrived_next,
        demand_hist=hist_next,
    )
    return new_state, out


def _f64(x: np.ndarray) -> np.ndarray:
    """C-contiguous float64 view (no copy when it already is one)."""
    return np.ascontiguousarray(x, dtype=np.float64)


def step_jit(net: Network, state: State, action: Action, exo: Exogenous) -> tuple[State, StepOutput]:
    """:func:`invnet.envs.core.step` compiled: same contract (pure; same arrays, shapes and dtypes)."""
    return _run_step(net, state, action.orders, action.transfers, exo)


class JitStepper:
    """Decode + step + observe for :class:`~invnet.envs.batched.BatchedInventoryEnv` (``backend="numba"``)."""

    def __init__(self, spaces: AgentSpaces) -> None:
        self.spaces = spaces
        net = spaces.net
        order_idx, tr_idx, half_order, half_tr = spaces._decode_index
        self._order_idx = order_idx.astype(np.int64)
        self._tr_idx = tr_idx.reshape(net.n_lanes, net.n_skus).astype(np.int64)
        self._half_order = np.ascontiguousarray(half_order.reshape(net.n_nodes), dtype=float)
        self._half_tr = np.ascontiguousarray(half_tr.reshape(net.n_lanes), dtype=float)
        self._up_to = spaces.action_mode == "order_up_to"
        p = spaces._obs_plan
        self._inv = np.ascontiguousarray(p["inv"].reshape(net.n_nodes))
        self._forecast = np.ascontiguousarray(p["forecast"])  # [T, N, K]
        self._feats = np.ascontiguousarray(spaces._node_features32)
        self._vis = _VISIBILITY[spaces.visibility]
        M = net.max_out_lanes
        self._to = np.ascontiguousarray(p["to"], dtype=np.int64).reshape(net.n_nodes, M)
        self._recv_onhand = np.ascontiguousarray(p["recv_onhand"], dtype=float).reshape(net.n_nodes, M)
        self._recv_dos = np.ascontiguousarray(p["recv_dos"], dtype=float).reshape(net.n_nodes, M)
        self._src = p["src"].astype(np.int64)
        self._src_dos = np.ascontiguousarray(p["src_dos"], dtype=float)

    def decode(self, actions: np.ndarray, state: State) -> Action:
        """:meth:`AgentSpaces.decode` compiled (falls back to it to raise the same errors on bad input)."""
        sp = self.spaces
        B, N = state.batch_size, sp.net.n_nodes
        a = np.asarray(actions, dtype=np.float64)
        if a.shape != (B, N, sp.action_dim) or not a.flags.c_contiguous:
            return sp.decode(actions, state)
        orders = np.empty((B, N, sp.net.n_skus))
        transfers = np.empty((B, sp.net.n_lanes, sp.net.n_skus))
        ok = _decode_kernel(
            a,
            self._order_idx,
            self._tr_idx,
            self._half_order,
            self._half_tr,
            self._up_to,
            _f64(state.on_hand),
            _f64(state.pipeline),
            _f64(state.backlog),
            orders,
            transfers,
        )
        if not ok:
            return sp.decode(actions, state)  # raises ValueError naming the problem
        return Action(orders=orders, transfers=transfers)

    def step(self, state: State, action: Action, exo: Exogenous) -> tuple[State, StepOutput]:
        return _run_step(self.spaces.net, state, action.orders, action.transfers, exo)

    def observe(self, state: State) -> np.ndarray:
        """:meth:`AgentSpaces.observe` compiled: [B, N, obs_dim] float32."""
        sp = self.spaces
        net = sp.net
        out = np.empty((state.batch_size, net.n_nodes, sp.obs_dim), dtype=np.float32)
        t = min(state.t, net.periods - 1)
        _observe_kernel(
            _f64(state.on_hand),
            _f64(state.backlog),
            _f64(state.pipeline),
            _f64(state.demand_hist),
            self._forecast[t],
            self._inv,
            sp._time(state),
            self._feats,
            self._vis,
            self._to,
            self._recv_onhand,
            self._recv_dos,
            self._src,
            self._src_dos,
            out,
        )
        return out
