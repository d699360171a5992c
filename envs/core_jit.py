"""The simulator core compiled with numba: the same step as :mod:`invnet.envs.core`, one loop per batch row.

:func:`invnet.envs.core.step` stays the readable reference; this module implements exactly its event
order and formulas (disruption, lane capacity, receiver capacity, proportional per-SKU rationing of
sender stock, lead-0 lanes delivering after all shipping, supplier lead-time slots, backorder or lost
sales, every cost term, the end-of-step advance) as ``@numba.njit`` kernels that loop over batch rows,
lanes, nodes and SKUs and write into preallocated arrays. ``tests/test_core_jit.py`` checks every
output and the next state against the NumPy core on random scenarios and on every shipped scenario.

- :func:`step_jit` has the contract of :func:`invnet.envs.core.step` (same arrays, shapes and dtypes).
- :class:`JitStepper` fuses action decoding, the step, the rewards and the observation of the next state
  into one kernel call (what :class:`invnet.envs.batched.BatchedInventoryEnv` uses with ``backend="numba"``),
  so a step costs one dispatch instead of ~150 small NumPy calls.

Kernel organisation: each stage of the general path is an ``inline="always"`` function over a range of batch
rows (:func:`_decode_rows`, :func:`_step_rows`, :func:`_observe_rows`) taking ``fixed_k`` (1: one SKU, LLVM
unrolls the SKU loops; 0: K read from the arrays); :func:`step_jit` and several-SKU networks use them.
The one-SKU env step (:meth:`JitStepper.advance`, the training hot path) is one fused kernel,
:func:`_env_rows_k1`, laid out batch-innermost: state, outputs and exogenous inputs are planes
``[node or lane, (slot,) row]`` (:class:`_PlaneBuffers`; the StepOutput and State fields it returns are
transposed views with the usual shapes), each stage is a loop over a tile of ``TILE`` contiguous rows that LLVM
turns into SIMD instructions, and only the actions, rewards and observation are row-major. The observation of
a tile is computed column by column into a float32 tile buffer (kept per parallel chunk between steps, see
:meth:`JitStepper._tile_buffers`) and written row-major with 8 x 8 vector transposes (:func:`_transpose8`, a
numba intrinsic). Its inner loops index arrays instead of taking views or calling helpers with array arguments
(numba reference-counts both with atomic instructions). It performs the same arithmetic in the same order as
:func:`_step_rows` (bit-identical results, tested).
:func:`_env_kernel_k1` calls it for all rows; :func:`_env_kernel_k1_par` (``parallel=True``) for chunks of
``PARALLEL_CHUNK`` rows on all cores, used for batches of at least ``PARALLEL_MIN_BATCH`` rows when numba has a
thread-safe threading layer (tbb or omp, see :func:`parallel_available`); rows are independent, so both give
bit-identical results. Kernels are compiled on first use and cached on disk (``cache=True``, in
``envs/__pycache__``), so later processes load them in well under a second.
"""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any

import numba
import numpy as np
from invnet.envs.core import Action, Exogenous, State, StepOutput
from invnet.envs.network import Network
from invnet.envs.spaces import AgentSpaces, team_rewards
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

_VISIBILITY = {"own": 0, "neighbours": 1, "all": 2}


@numba.njit(inline="always", error_model="numpy")
def _flags_and_nodes(flags, consts):
    """Unpacked step flags (has a next period, fixed lead times, pipeline holding, backorder) and node rows
    (supplier-fed, fixed supplier lead time) of :class:`_NetConsts`, for both step kernels."""
    node_i = consts[0]
    return flags[0] != 0, flags[1] != 0, flags[2] != 0, flags[3] != 0, node_i[0], node_i[2]


@numba.njit(inline="always", error_model="numpy")
def _lane_rows(consts):
    """Lane rows of :class:`_NetConsts`: from, to, lead time, unit cost, fixed cost, capacity."""
    lane_i, lane_f = consts[1], consts[2]
    return lane_i[0], lane_i[1], lane_i[2], lane_f[0], lane_f[1], lane_f[2]


@numba.njit(inline="always", error_model="numpy")
def _period_scalars(t, consts):
    """Disrupted nodes now and next period, order fixed and unit cost, supplier pipeline holding rate."""
    disrupted, scal = consts[6], consts[7]
    return disrupted[t], disrupted[t + 1], scal[0], scal[1], scal[2]


@numba.njit(inline="always", error_model="numpy")
def _call_flags(t, consts):
    """Per-call constants of a step: the receiver whose upstream order rides each lane (-1 if none), whether
    any node is disrupted in period t, whether any node has a finite storage capacity."""
    node_i, lane_i, capacity, disrupted = consts[0], consts[1], consts[3], consts[6]
    source_lane = node_i[1]
    order_of = np.full(lane_i.shape[1], -1, dtype=np.int64)
    for n in range(source_lane.shape[0]):
        if source_lane[n] >= 0:
            order_of[source_lane[n]] = n
    any_down = False
    any_cap = False
    for n in range(source_lane.shape[0]):
        any_down = any_down or disrupted[t, n]
        any_cap = any_cap or math.isfinite(capacity[n])
    return order_of, any_down, any_cap


@numba.njit(inline="always", error_model="numpy")
def _step_scratch(t, K, P, consts):
    """:func:`_step_rows`' per-call constants (the receiver whose order rides each lane, -1 if none; any
    disruption now; any finite storage capacity) and row scratch, allocated once per kernel call or parallel
    chunk and reused by every row."""
    order_of, any_down, any_cap = _call_flags(t, consts)
    N, E = consts[0].shape[1], order_of.shape[0]  # node_i is [3, N]
    lane_order = np.empty((E, K))  # upstream-order part of each lane's flow
    f_recv = np.ones(N)
    return (
        order_of, any_down, any_cap, lane_order, f_recv, np.empty((N, K)), np.empty((N, K)), np.empty((N, K)),
        np.empty((N, K, P)), np.empty((N, K, P)), np.empty(N),
    )  # fmt: skip


@numba.njit(inline="always", error_model="numpy")
def _step_rows(
    fixed_k,  # compile-time SKU count (1) or 0: read K from the arrays
    lo,  # rows lo..hi-1
    hi,
    toff,  # row b's transfers are transfers[b - toff]
    t,
    flags,  # [4] int: t + 1 < periods, fixed supplier lead times, pipeline holding, backorder
    on_hand,  # [B, N, K] state at decision time
    backlog,  # [B, N, K]
    pipeline,  # [B, N, K, P]
    pipe_rate,  # [B, N, K, P]
    arrived,  # [B, N, K]
    hist,  # [B, N, K, H]
    orders,  # [B, N, K] action
    transfers,  # [B or 1, E, K]
    demand_all,  # [B, T, N, K] exogenous demand
    lead_all,  # [B, T, N] supplier lead time of an order placed in t
    consts,  # per-network arrays: node_i, lane_i, lane_f, capacity, holding, penalty, disrupted, scal
    cost_out,  # [4, B, N] outputs, in _COSTS order
    node_out,  # [14, B, N, K] outputs, in _NODE_OUT order
    lane_out,  # [2, B, E, K] lane_shipped, lane_flow
    pipe_out,  # [2, B, N, K, P] next pipeline, next pipe_rate
    hist_next,  # [B, N, K, H] next demand history
    scratch,  # _step_scratch: per-call constants and row scratch
):
    """Rows lo..hi-1 of the step (the row loop of :func:`invnet.envs.core.step`). Arguments are grouped in
    tuples: numba cannot inline a call with more than 30 arguments (CPython compiles it as ``f(*args)``)."""
    node_i, lane_i, lane_f, capacity, holding, penalty, disrupted, scal = consts
    has_next, fixed_lt, pipeline_holding, backorder, is_sup, lt0 = _flags_and_nodes(flags, consts)
    lane_from, lane_to, lane_lead, lane_unit, lane_fixed, lane_cap = _lane_rows(consts)
    down_now, down_next, order_fixed, order_unit, supplier_holding = _period_scalars(t, consts)
    demand = demand_all[:, t]
    lead = lead_all[:, t]
    holding_cost, shortage_cost, order_cost, transfer_cost = cost_out[0], cost_out[1], cost_out[2], cost_out[3]
    sales, served_now, lost_sales, backlog_out = node_out[0], node_out[1], node_out[2], node_out[3]
    on_hand_out, in_transit, received, order_shipped = node_out[4], node_out[5], node_out[6], node_out[7]
    supplier_in, shipped_out, refused = node_out[8], node_out[9], node_out[10]
    on_hand_next, arrived_next, demand_out = node_out[11], node_out[12], node_out[13]
    lane_shipped, lane_flow = lane_out[0], lane_out[1]
    pipeline_next, pipe_rate_next = pipe_out[0], pipe_out[1]
    N, K = on_hand.shape[1], on_hand.shape[2]
    if fixed_k:  # a constant in the specialised kernels: LLVM unrolls the SKU loops (1.5x for one SKU)
        K = fixed_k
    E = transfers.shape[1]
    P = pipeline.shape[3]
    H = hist.shape[3]
    order_of, any_down, any_cap, lane_order, f_recv, f_node, asks_out, tr_refused, pipe, rate, inbound = scratch
    for b in range(lo, hi):
        # 3a. disruption: a disrupted node's orders are refused; a lane with a disrupted end carries nothing
        for n in range(N):
            for k in range(K):
                q = orders[b, n, k]
                supplier_in[b, n, k] = 0.0 if (down_now[n] or not is_sup[n]) else q
                asks_out[n, k] = 0.0
        # 3b. lane capacity, shared by SKUs and by orders + transfers: both scaled by capacity / asks
        for e in range(E):
            r = order_of[e]
            ok = not (any_down and (down_now[lane_from[e]] or down_now[lane_to[e]]))
            asks = 0.0
            for k in range(K):
                tr = transfers[b - toff, e, k] if ok else 0.0
                qo = orders[b, r, k] if (ok and r >= 0) else 0.0
                lane_shipped[b, e, k] = tr
                lane_order[e, k] = qo
                asks += qo + tr
            f = 1.0
            if asks > lane_cap[e]:
                f = min(max(lane_cap[e] / asks, 0.0), 1.0)
            if f < 1.0:
                for k in range(K):
                    lane_order[e, k] *= f
                    lane_shipped[b, e, k] *= f
            if not any_cap:
                s = lane_from[e]
                for k in range(K):
                    asks_out[s, k] += lane_order[e, k] + lane_shipped[b, e, k]
        # 3c. receiver storage capacity: all inbound asks scaled by room / inbound
        if any_cap:
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
                s = lane_from[e]
                for k in range(K):
                    if f < 1.0:
                        lane_order[e, k] *= f
                        lane_shipped[b, e, k] *= f
                    asks_out[s, k] += lane_order[e, k] + lane_shipped[b, e, k]
        # 3d. sender stock, per SKU: every ask scaled by on_hand / asks (proportional rationing)
        for n in range(N):
            c = 0.0
            for k in range(K):
                a = asks_out[n, k]
                if a > on_hand[b, n, k]:
                    f_node[n, k] = on_hand[b, n, k] / a
                    shipped_out[b, n, k] = a * f_node[n, k]
                else:
                    f_node[n, k] = 1.0
                    shipped_out[b, n, k] = a
                tr_refused[n, k] = 0.0
                order_shipped[b, n, k] = supplier_in[b, n, k]
                on_hand_out[b, n, k] = max(on_hand[b, n, k] - shipped_out[b, n, k], 0.0)
                received[b, n, k] = arrived[b, n, k]
                for p in range(P):
                    pipe[n, k, p] = pipeline[b, n, k, p]
                    rate[n, k, p] = pipe_rate[b, n, k, p]
            order_cost[b, n] = c
            transfer_cost[b, n] = c
        # shipped units: lead-0 lanes join on-hand now (after all shipping), longer ones the pipeline;
        # lane costs: unit cost of upstream orders to the receiver, of transfers to the sender; one fixed
        # charge per lane used, with the upstream order when the lane carries one
        for e in range(E):
            s = lane_from[e]
            r = lane_to[e]
            L = lane_lead[e]
            lo_sum = 0.0
            lt_sum = 0.0
            for k in range(K):
                f = f_node[s, k]
                qo = lane_order[e, k] * f
                tr = lane_shipped[b, e, k] * f
                lane_shipped[b, e, k] = tr
                q = qo + tr
                lane_flow[b, e, k] = q
                tr_refused[s, k] += transfers[b - toff, e, k] - tr
                if order_of[e] >= 0:
                    order_shipped[b, r, k] += qo
                lo_sum += qo
                lt_sum += tr
                if L == 0:
                    on_hand_out[b, r, k] += q
                    received[b, r, k] += q
                else:
                    pipe[r, k, L - 1] += q
                    if pipeline_holding:
                        rate[r, k, L - 1] += q * holding[s, k]
            transfer_cost[b, s] += lt_sum * lane_unit[e]
            if lo_sum != 0.0:
                order_cost[b, r] += lo_sum * lane_unit[e]
            if lo_sum > 1e-9:
                order_cost[b, r] += lane_fixed[e]
            elif lt_sum > 1e-9:
                transfer_cost[b, s] += lane_fixed[e]
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
                refused[b, n, k] = max(orders[b, n, k] - order_shipped[b, n, k], 0.0) + max(tr_refused[n, k], 0.0)
                d = demand[b, n, k]
                demand_out[b, n, k] = d
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
            order_cost[b, n] += c
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


@numba.njit(inline="always", error_model="numpy")
def _step_body(
    fixed_k, t, flags, on_hand, backlog, pipeline, pipe_rate, arrived, hist, orders, transfers, demand_all,
    lead_all, node_i, lane_i, lane_f, capacity, holding, penalty, disrupted, scal, cost_out, node_out, lane_out,
    pipe_out, hist_next,
):  # fmt: skip
    """:func:`_step_rows` for every batch row."""
    consts = (node_i, lane_i, lane_f, capacity, holding, penalty, disrupted, scal)
    scratch = _step_scratch(t, on_hand.shape[2], pipeline.shape[3], consts)
    _step_rows(
        fixed_k, 0, on_hand.shape[0], 0, t, flags, on_hand, backlog, pipeline, pipe_rate, arrived, hist, orders,
        transfers, demand_all, lead_all, consts, cost_out, node_out, lane_out, pipe_out, hist_next, scratch,
    )  # fmt: skip


@numba.njit(inline="always", error_model="numpy")
def _decode_rows(
    fixed_k, lo, hi, toff, flat, order_idx, tr_idx, half_order, half_tr, up_to, on_hand, pipeline, backlog, orders,
    transfers,
):  # fmt: skip
    """AgentSpaces.decode of rows lo..hi-1 (``flat`` [B, N * action_dim]) into ``orders[b]`` and
    ``transfers[b - toff]``; False if an action is NaN, infinite or beyond 1 + 1e-6."""
    N = order_idx.shape[0]
    K = fixed_k if fixed_k else order_idx.shape[1]
    E = tr_idx.shape[0]
    P = pipeline.shape[3]
    ok = True
    for b in range(lo, hi):
        for i in range(flat.shape[1]):
            ok &= abs(flat[b, i]) <= 1.0 + 1e-6  # False for NaN
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
                transfers[b - toff, e, k] = (u + 1.0) * half_tr[e]
    return ok


@numba.njit(inline="always", error_model="numpy")
def _observe_rows(
    fixed_k, lo, hi, on_hand, backlog, pipeline, hist, forecast, inv, time3, feats, vis, to, recv_onhand, recv_dos,
    src, src_dos, out, stock,
):  # fmt: skip
    """AgentSpaces.observe of rows lo..hi-1 into the float32 buffer ``out`` [B, N, obs_dim] (same layout and
    rounding); ``stock`` [N] is scratch."""
    N = on_hand.shape[1]
    K = fixed_k if fixed_k else on_hand.shape[2]
    P = pipeline.shape[3]
    H = hist.shape[3]
    F = feats.shape[1]
    M = to.shape[1]
    o = K * (4 + P + H)
    v = o + 3 + F
    for b in range(lo, hi):
        ob = out[b]  # row views: 1-D indexing is ~20% cheaper than out[b, n, i] here
        for n in range(N):
            row = ob[n]
            pl = pipeline[b, n]
            hs = hist[b, n]
            c = inv[n]
            s = 0.0
            for k in range(K):
                oh = on_hand[b, n, k]
                s += oh
                bl = backlog[b, n, k]
                pk = 0.0
                for p in range(P):
                    x = pl[k, p]
                    pk += x
                    row[4 * K + k * P + p] = x * c
                row[k] = oh * c
                row[K + k] = bl * c
                row[2 * K + k] = (oh + pk - bl) * c
                row[3 * K + k] = forecast[n, k]
                for j in range(H):
                    row[4 * K + K * P + k * H + j] = hs[k, j] * c
            stock[n] = s
            row[o] = time3[0]
            row[o + 1] = time3[1]
            row[o + 2] = time3[2]
            row[o + 3 : o + 3 + F] = feats[n]  # the static node features: a plain float32 copy
        if vis == 1:
            for n in range(N):
                row = ob[n]
                for m in range(M):
                    r = stock[to[n, m]]
                    row[v + m] = r * recv_onhand[n, m]
                    row[v + M + m] = r * recv_dos[n, m]
                row[v + 2 * M] = stock[src[n]] * src_dos[n]
        elif vis == 2:
            for n in range(N):
                row = ob[n]
                for j in range(N):
                    row[v + j] = stock[j] * inv[j]


# Entry points: the row functions above are inlined with ``fixed_k`` a constant (numba caches these).
@numba.njit(cache=True, error_model="numpy")
def _step_kernel_k1(
    t, flags, on_hand, backlog, pipeline, pipe_rate, arrived, hist, orders, transfers, demand_all, lead_all,
    node_i, lane_i, lane_f, capacity, holding, penalty, disrupted, scal, cost_out, node_out, lane_out, pipe_out,
    hist_next,
):  # fmt: skip
    _step_body(
        1, t, flags, on_hand, backlog, pipeline, pipe_rate, arrived, hist, orders, transfers, demand_all,
        lead_all, node_i, lane_i, lane_f, capacity, holding, penalty, disrupted, scal, cost_out, node_out,
        lane_out, pipe_out, hist_next,
    )  # fmt: skip


@numba.njit(cache=True, error_model="numpy")
def _step_kernel(
    t, flags, on_hand, backlog, pipeline, pipe_rate, arrived, hist, orders, transfers, demand_all, lead_all,
    node_i, lane_i, lane_f, capacity, holding, penalty, disrupted, scal, cost_out, node_out, lane_out, pipe_out,
    hist_next,
):  # fmt: skip
    _step_body(
        0, t, flags, on_hand, backlog, pipeline, pipe_rate, arrived, hist, orders, transfers, demand_all,
        lead_all, node_i, lane_i, lane_f, capacity, holding, penalty, disrupted, scal, cost_out, node_out,
        lane_out, pipe_out, hist_next,
    )  # fmt: skip


@numba.njit(cache=True, error_model="numpy")
def _decode_kernel(
    actions, order_idx, tr_idx, half_order, half_tr, up_to, on_hand, pipeline, backlog, orders, transfers
):
    B = actions.shape[0]
    flat = actions.reshape(B, actions.shape[1] * actions.shape[2])
    return _decode_rows(
        0, 0, B, 0, flat, order_idx, tr_idx, half_order, half_tr, up_to, on_hand, pipeline, backlog, orders,
        transfers,
    )  # fmt: skip


@numba.njit(cache=True, error_model="numpy")
def _observe_kernel(
    on_hand, backlog, pipeline, hist, forecast, inv, time3, feats, vis, to, recv_onhand, recv_dos, src, src_dos, out,
):  # fmt: skip
    _observe_rows(
        0, 0, on_hand.shape[0], on_hand, backlog, pipeline, hist, forecast, inv, time3, feats, vis, to, recv_onhand,
        recv_dos, src, src_dos, out, np.empty(on_hand.shape[1]),
    )  # fmt: skip


@intrinsic
def _transpose8(typingctx, src, s_off, s_stride, dst, d_off, d_stride):
    """``dst[d_off + j * d_stride + i] = src[s_off + i * s_stride + j]`` for i, j < 8 (1-D float32 arrays): an 8 x 8
    block transposed with eight vector loads, 24 shuffles and eight vector stores (unpack / shuffle / lane
    permute, the usual AVX transpose; LLVM lowers it for any target). No bounds checks: callers pass offsets
    inside the arrays."""
    sig = types.void(src, s_off, s_stride, dst, d_off, d_stride)

    def codegen(context, builder, signature, args):
        src_v, so, ss, dst_v, do, ds = args
        v8 = ir.VectorType(ir.FloatType(), 8)
        sp = context.make_array(signature.args[0])(context, builder, src_v).data
        dp = context.make_array(signature.args[3])(context, builder, dst_v).data

        def at(ptr, base, stride, i):
            p = builder.gep(ptr, [builder.add(base, builder.mul(stride, ir.Constant(stride.type, i)))])
            return builder.bitcast(p, v8.as_pointer())

        def shuffle(a, b, mask):
            return builder.shuffle_vector(a, b, ir.Constant(ir.VectorType(ir.IntType(32), 8), mask))

        rows = [builder.load(at(sp, so, ss, i), align=4) for i in range(8)]
        lo, hi = [0, 8, 1, 9, 4, 12, 5, 13], [2, 10, 3, 11, 6, 14, 7, 15]
        t = [shuffle(rows[k], rows[k + 1], m) for k in range(0, 8, 2) for m in (lo, hi)]
        a, b = [0, 1, 8, 9, 4, 5, 12, 13], [2, 3, 10, 11, 6, 7, 14, 15]
        u = [shuffle(t[i], t[i + 2], m) for i in (0, 1, 4, 5) for m in (a, b)]
        first, second = [0, 1, 2, 3, 8, 9, 10, 11], [4, 5, 6, 7, 12, 13, 14, 15]
        out = [shuffle(u[j], u[4 + j], first) for j in range(4)] + [shuffle(u[j], u[4 + j], second) for j in range(4)]
        for j in range(8):
            builder.store(out[j], at(dp, do, ds, j), align=4)
        return context.get_dummy_value()

    return sig, codegen


@numba.njit(inline="always", error_model="numpy")
def _transpose_tile(cols, R, nr, C, out, base):
    """``out[base + r * C + i] = cols[i * R + r]`` for r < nr, i < C: a tile of observations stored column by
    column ([C, R] float32) written as nr row-major rows, in 8 x 8 blocks (scalar copies at the edges)."""
    r8, c8 = nr - nr % 8, C - C % 8
    for r0 in range(0, r8, 8):
        for i0 in range(0, c8, 8):
            _transpose8(cols, i0 * R + r0, R, out, base + r0 * C + i0, C)
        for r in range(r0, r0 + 8):
            for i in range(c8, C):
                out[base + r * C + i] = cols[i * R + r]
    for r in range(r8, nr):
        for i in range(C):
            out[base + r * C + i] = cols[i * R + r]


@numba.njit(inline="always", error_model="numpy")
def _clip1(x):
    """min(max(x, -1), 1) for a number (comparisons: numba's float min/max are calls, not inlined)."""
    return -1.0 if x < -1.0 else (1.0 if x > 1.0 else x)


_N_NODE_PLANES = 13  # node_out planes the step computes (then demand): _NODE_OUT + next on_hand, next arrived
TILE = 64  # rows per tile of the fused one-SKU kernel (each inner loop runs over a tile's contiguous rows)


@numba.njit(error_model="numpy")
def _env_rows_k1(lo, hi, slot, dec, inputs, consts, outs, rew, obs_in):
    """Rows lo..hi-1 of decode + step + rewards + observation of the next state (one SKU), batch-innermost.

    State, outputs and exogenous inputs are planes ``[node or lane, (slot,) row]`` (see :class:`_PlaneBuffers`),
    so every stage of :func:`_step_rows` (same event order, same arithmetic in the same order: bit-identical
    results) runs as loops over TILE contiguous rows that LLVM turns into SIMD instructions (4 rows per AVX2
    operation), writing straight into the output planes. Only the actions (``[B, N, A]``), the rewards
    (``[B, N]``) and the observation (``[B, N, obs_dim]``) are row-major. False if some row has bad actions (a
    bad row is stepped on: outputs are fresh buffers, and the caller raises AgentSpaces.decode's error). Not
    inlined: the serial and the parallel kernel share one compiled copy (one call per chunk of rows)."""
    actions, order_idx, tr_idx, half_order, half_tr, up_to = dec
    t, flags, on_hand, backlog, pipeline, pipe_rate, arrived, hist, demand, lead = inputs
    node_i, lane_i, lane_f, capacity, holding, penalty, disrupted, scal = consts
    cost_out, node_out, lane_out, pipe_out, hist_next, orders = outs
    reward_mode, reward_weight, rewards = rew
    observe, template, varying, tiles, inv, vis, to, recv_onhand, recv_dos, src, src_dos, obs = obs_in
    N, B = on_hand.shape
    E, P, H = lane_i.shape[1], pipeline.shape[1], hist.shape[1]
    A = actions.shape[2]
    flat = actions.reshape(B, N * A)
    has_next, fixed_lt, pipeline_holding, backorder, is_sup, lt0 = _flags_and_nodes(flags, consts)
    lane_from, lane_to, lane_lead, lane_unit, lane_fixed, lane_cap = _lane_rows(consts)
    down_now, down_next, order_fixed, order_unit, supplier_holding = _period_scalars(t, consts)
    order_of, any_down, any_cap = _call_flags(t, consts)
    R = TILE
    # row scratch of a tile (values that are not outputs)
    rs = np.empty((5, N, R))
    asks, fnode, trref, inbound, frecv = rs[0], rs[1], rs[2], rs[3], rs[4]
    pipe, rate = np.empty((N, P, R)), np.empty((N, P, R))  # pipeline after this period's shipments
    trq, lord = np.empty((E, R)), np.empty((E, R))  # transfer asked, upstream-order part of the lane flow
    team = np.empty(R)
    # tile columns of input and output planes, contiguous [node or lane, row] (copied in and out per tile)
    oh, bl, arr, dem, ordq = np.empty((N, R)), np.empty((N, R)), np.empty((N, R)), np.empty((N, R)), np.empty((N, R))
    hc, shc, oc, tc = np.empty((N, R)), np.empty((N, R)), np.empty((N, R)), np.empty((N, R))
    nodes = np.empty((_N_NODE_PLANES, N, R))  # node_out planes of the tile
    sales, served, lost, blo, oho, in_tr, recv = nodes[0], nodes[1], nodes[2], nodes[3], nodes[4], nodes[5], nodes[6]
    oship, sup, shipped, refused, oh_next, arr_next = nodes[7], nodes[8], nodes[9], nodes[10], nodes[11], nodes[12]
    lship = np.empty((E, R))  # transfer part of the lane flow while capacities and stock scale it
    D = template.shape[1]
    M = to.shape[1]
    v = D - (0 if vis == 0 else (2 * M + 1 if vis == 1 else N))  # first visibility column
    ND = N * D
    # the tile's observations, column by column ([n * D + column, row]): the caller's buffer number ``slot``, whose
    # entries that are the same in every row hold the template (node features); those that change with the period
    # (forecast, time features) are written here
    cols = tiles[slot]
    if observe:
        for i in varying:
            x = template[i // D, i % D]
            for r in range(R):
                cols[i, r] = x
    flat_obs, flat_cols = obs.reshape(obs.size), cols.reshape(cols.size)
    ok = True
    for b0 in range(lo, hi, R):
        nr = min(R, hi - b0)
        ub = np.uint64(b0)  # unsigned indices: numba checks signed ones for wraparound (no SIMD then)
        # Inner loops index the arrays ([n, r], [n, p, ub + np.uint64(r)]) rather than take views (x = a[n]):
        # numba counts references of every view with an atomic instruction, which cost a third of the step.
        for n in range(N):  # this tile's columns of the input planes
            for r in range(nr):
                oh[n, r] = on_hand[n, ub + np.uint64(r)]
                bl[n, r] = backlog[n, ub + np.uint64(r)]
                arr[n, r] = arrived[n, ub + np.uint64(r)]
                dem[n, r] = demand[n, ub + np.uint64(r)]
            for p in range(P):
                for r in range(nr):
                    pipe[n, p, r] = pipeline[n, p, ub + np.uint64(r)]
                    rate[n, p, r] = pipe_rate[n, p, ub + np.uint64(r)]
        # decode (AgentSpaces.decode): actions are row-major, the only transposing read. Range check of every
        # entry (a count: vectorises, unlike a boolean and), then each order / transfer entry over the rows
        bad = 0
        for r in range(nr):
            for i in range(N * A):
                bad += 0 if abs(flat[ub + np.uint64(r), np.uint64(i)]) <= 1.0 + 1e-6 else 1  # 1 for NaN
        ok &= bad == 0
        for n in range(N):
            i, h = np.uint64(order_idx[n]), half_order[n]
            for r in range(nr):
                ordq[n, r] = (_clip1(flat[ub + np.uint64(r), i]) + 1.0) * h
        for e in range(E):
            i, h = np.uint64(tr_idx[e]), half_tr[e]
            for r in range(nr):
                trq[e, r] = (_clip1(flat[ub + np.uint64(r), i]) + 1.0) * h
        if up_to:  # the action is a target inventory position: order = max(target - IP, 0)
            for n in range(N):
                for r in range(nr):
                    pk = 0.0
                    for p in range(P):
                        pk += pipe[n, p, r]
                    ordq[n, r] = max(ordq[n, r] - (oh[n, r] + pk - bl[n, r]), 0.0)
        # 3a. disruption: a disrupted node's orders are refused
        for n in range(N):
            fed = is_sup[n] != 0 and not down_now[n]
            for r in range(nr):
                sup[n, r] = ordq[n, r] if fed else 0.0
                asks[n, r] = 0.0
        # 3b. lane capacity, shared by the upstream order and the transfers on the lane
        for e in range(E):
            rc = order_of[e]
            if any_down and (down_now[lane_from[e]] or down_now[lane_to[e]]):
                for r in range(nr):
                    lord[e, r] = 0.0
                    lship[e, r] = 0.0
            elif rc >= 0:
                cap = lane_cap[e]
                for r in range(nr):
                    qo = ordq[rc, r]
                    tr = trq[e, r]
                    need = qo + tr
                    f = min(max(cap / need, 0.0), 1.0) if need > cap else 1.0
                    lord[e, r] = qo * f
                    lship[e, r] = tr * f
            else:  # transfers only (the general formulas with qo = 0: same values; asks are never negative)
                cap = lane_cap[e]
                for r in range(nr):
                    tr = trq[e, r]
                    f = min(max(cap / tr, 0.0), 1.0) if tr > cap else 1.0
                    lord[e, r] = 0.0
                    lship[e, r] = tr * f
            if not any_cap:
                s = lane_from[e]
                for r in range(nr):
                    asks[s, r] += lord[e, r] + lship[e, r]
        # 3c. receiver storage capacity: all inbound asks scaled by room / inbound
        if any_cap:
            for n in range(N):
                for r in range(nr):
                    inbound[n, r] = sup[n, r]
                    frecv[n, r] = 1.0
            for e in range(E):
                rc = lane_to[e]
                for r in range(nr):
                    inbound[rc, r] += lord[e, r] + lship[e, r]
            for n in range(N):
                cap = capacity[n]
                if math.isfinite(cap):
                    for r in range(nr):
                        held = 0.0 + oh[n, r]
                        for p in range(P):
                            held += pipe[n, p, r]
                        room = max(cap - held, 0.0)
                        ib = inbound[n, r]
                        f = min(max(room / ib, 0.0), 1.0) if ib > room else 1.0
                        frecv[n, r] = f
                        sup[n, r] *= f
            for e in range(E):
                rc, s = lane_to[e], lane_from[e]
                for r in range(nr):
                    f = frecv[rc, r]
                    lord[e, r] *= f
                    lship[e, r] *= f
                    asks[s, r] += lord[e, r] + lship[e, r]
        # 3d. sender stock: every ask scaled by on_hand / asks (proportional rationing)
        for n in range(N):
            for r in range(nr):
                a, x = asks[n, r], oh[n, r]
                f = x / a if a > x else 1.0
                fnode[n, r] = f
                sh = a * f if a > x else a
                shipped[n, r] = sh
                trref[n, r] = 0.0
                oship[n, r] = sup[n, r]
                oho[n, r] = max(x - sh, 0.0)
                recv[n, r] = arr[n, r]
                oc[n, r] = 0.0
                tc[n, r] = 0.0
        # shipped units; lane costs: unit cost of upstream orders to the receiver, of transfers to the sender; one
        # fixed charge per lane used, with the upstream order when the lane carries one
        for e in range(E):
            s, rc = lane_from[e], lane_to[e]
            unit, fixed = lane_unit[e], lane_fixed[e]
            if order_of[e] >= 0:
                for r in range(nr):
                    f = fnode[s, r]
                    qo = lord[e, r] * f
                    tr = lship[e, r] * f
                    lord[e, r] = qo
                    lane_out[0, e, ub + np.uint64(r)] = tr  # final lane values go straight to the output planes
                    lane_out[1, e, ub + np.uint64(r)] = qo + tr
                    trref[s, r] += trq[e, r] - tr
                    tc[s, r] += tr * unit
                    if qo != 0.0:
                        oc[rc, r] += qo * unit
                for r in range(nr):
                    oship[rc, r] += lord[e, r]
            else:  # transfers only: lord stays 0 and the flow is the transfer
                for r in range(nr):
                    tr = lship[e, r] * fnode[s, r]
                    lane_out[0, e, ub + np.uint64(r)] = tr
                    lane_out[1, e, ub + np.uint64(r)] = tr
                    trref[s, r] += trq[e, r] - tr
                    tc[s, r] += tr * unit
            if fixed != 0.0:
                for r in range(nr):
                    if lord[e, r] > 1e-9:
                        oc[rc, r] += fixed
                    elif lane_out[0, e, ub + np.uint64(r)] > 1e-9:
                        tc[s, r] += fixed
        # arrivals, the lanes' flows in lane order then the supplier orders: lead 0 joins on-hand now (after all
        # shipping), longer ones the pipeline slot L - 1 (and its pipeline-holding rate). One loop for both: an
        # inlined helper taking the arrays reference-counted them per lane (atomic instructions, ~10% of a step)
        for k in range(E + N):
            lane = k < E
            if lane:
                dest, L, hold = lane_to[k], lane_lead[k], holding[lane_from[k], 0]
            else:
                dest = k - E
                if not is_sup[dest]:
                    continue
                if not fixed_lt:  # lead times drawn per row
                    for r in range(nr):
                        q = sup[dest, r]
                        lt = lead[dest, ub + np.uint64(r)]
                        if lt == 0:
                            oho[dest, r] += q
                            recv[dest, r] += q
                        else:
                            pipe[dest, lt - 1, r] += q
                            if pipeline_holding:
                                rate[dest, lt - 1, r] += q * supplier_holding
                    continue
                L, hold = lt0[dest], supplier_holding
            if L == 0:
                for r in range(nr):
                    q = lane_out[1, k, ub + np.uint64(r)] if lane else sup[dest, r]
                    oho[dest, r] += q
                    recv[dest, r] += q
            else:
                for r in range(nr):
                    pipe[dest, L - 1, r] += lane_out[1, k, ub + np.uint64(r)] if lane else sup[dest, r]
                if pipeline_holding:
                    for r in range(nr):
                        rate[dest, L - 1, r] += (lane_out[1, k, ub + np.uint64(r)] if lane else sup[dest, r]) * hold
        # 4. demand (backlog first in backorder mode) and 5. costs; then the advance: next period's arrivals
        # join on-hand (a disrupted node's arrivals wait in transit)
        for r in range(nr):
            team[r] = 0.0
        for n in range(N):
            hold, pen = holding[n, 0], penalty[n, 0]
            for r in range(nr):
                refused[n, r] = max(ordq[n, r] - oship[n, r], 0.0) + max(trref[n, r], 0.0)
                d = dem[n, r]
                if backorder:
                    due = bl[n, r] + d
                    sold = min(oho[n, r], due)
                    bo = due - sold
                    blo[n, r] = bo
                    served[n, r] = max(sold - bl[n, r], 0.0)
                    lost[n, r] = 0.0
                    short = 0.0 + bo * pen
                else:
                    sold = min(oho[n, r], d)
                    ls_ = d - sold
                    lost[n, r] = ls_
                    served[n, r] = sold
                    blo[n, r] = bl[n, r]
                    short = 0.0 + ls_ * pen
                sales[n, r] = sold
                left = oho[n, r] - sold
                oho[n, r] = left
                h = 0.0 + left * hold
                s = 0.0
                for p in range(P):
                    s += pipe[n, p, r]
                    if pipeline_holding:
                        h += rate[n, p, r]
                in_tr[n, r] = s
                hc[n, r] = h
                shc[n, r] = short
                qty = 0.0 + oship[n, r]
                c = order_unit * qty
                if order_fixed != 0.0 and qty > 1e-9:
                    c += order_fixed
                cost = oc[n, r] + c
                oc[n, r] = cost
                team[r] += h + short + cost + tc[n, r]
            for j in range(H - 1):
                for r in range(nr):
                    hist_next[n, j, ub + np.uint64(r)] = hist[n, j + 1, ub + np.uint64(r)]
            for r in range(nr):
                hist_next[n, H - 1, ub + np.uint64(r)] = dem[n, r]
            if has_next:
                for p in range(P - 1):
                    for r in range(nr):
                        pipe_out[0, n, p, ub + np.uint64(r)] = pipe[n, p + 1, r]
                        pipe_out[1, n, p, ub + np.uint64(r)] = rate[n, p + 1, r]
                for r in range(nr):
                    pipe_out[0, n, P - 1, ub + np.uint64(r)] = 0.0
                    pipe_out[1, n, P - 1, ub + np.uint64(r)] = 0.0
                if down_next[n]:
                    for r in range(nr):
                        pipe_out[0, n, 0, ub + np.uint64(r)] += pipe[n, 0, r]
                        pipe_out[1, n, 0, ub + np.uint64(r)] += rate[n, 0, r]
                        arr_next[n, r] = 0.0
                        oh_next[n, r] = oho[n, r] + 0.0
                else:
                    for r in range(nr):
                        arr_next[n, r] = pipe[n, 0, r]
                        oh_next[n, r] = oho[n, r] + pipe[n, 0, r]
            else:
                for p in range(P):
                    for r in range(nr):
                        pipe_out[0, n, p, ub + np.uint64(r)] = pipe[n, p, r]
                        pipe_out[1, n, p, ub + np.uint64(r)] = rate[n, p, r]
                for r in range(nr):
                    arr_next[n, r] = 0.0
                    oh_next[n, r] = oho[n, r]
        for n in range(N):  # the tile's columns of the output planes
            for r in range(nr):
                b = b0 + r
                orders[n, b] = ordq[n, r]
                cost_out[0, n, b] = hc[n, r]
                cost_out[1, n, b] = shc[n, r]
                cost_out[2, n, b] = oc[n, r]
                cost_out[3, n, b] = tc[n, r]
                node_out[_N_NODE_PLANES, n, b] = dem[n, r]
            for k in range(_N_NODE_PLANES):
                for r in range(nr):
                    node_out[k, n, ub + np.uint64(r)] = nodes[k, n, r]
        # rewards (row-major): team = -network cost, local = -own cost, mixed = w local + (1 - w) team
        for r in range(nr):
            b = b0 + r
            for n in range(N):
                if reward_mode == 0:
                    rewards[b, n] = -team[r]
                else:
                    own = -(hc[n, r] + shc[n, r] + oc[n, r] + tc[n, r])
                    rewards[b, n] = own if reward_mode == 1 else reward_weight * own + (1.0 - reward_weight) * -team[r]
        if observe:  # AgentSpaces.observe of the next state: entries that vary by row computed over the tile's
            # rows into their columns of cols (float32, as the observation), then cols transposed into the
            # tile's observation rows
            for n in range(N):
                c, at = inv[n], n * D
                for r in range(nr):
                    team[r] = 0.0  # the rewards are written: team is scratch now (sum of the next pipeline)
                for p in range(P):
                    for r in range(nr):
                        z = pipe_out[0, n, p, ub + np.uint64(r)]
                        team[r] += z
                        cols[at + 4 + p, r] = z * c
                for r in range(nr):
                    x, y = oh_next[n, r], blo[n, r]
                    cols[at, r] = x * c
                    cols[at + 1, r] = y * c
                    cols[at + 2, r] = (x + team[r] - y) * c
                for j in range(H):
                    for r in range(nr):
                        cols[at + 4 + P + j, r] = hist_next[n, j, ub + np.uint64(r)] * c
                if vis == 1:
                    for m in range(M):
                        src_n, co, cd = to[n, m], recv_onhand[n, m], recv_dos[n, m]
                        for r in range(nr):
                            cols[at + v + m, r] = oh_next[src_n, r] * co
                            cols[at + v + M + m, r] = oh_next[src_n, r] * cd
                    up, cs = src[n], src_dos[n]
                    for r in range(nr):
                        cols[at + v + 2 * M, r] = oh_next[up, r] * cs
                elif vis == 2:
                    for j in range(N):
                        cj = inv[j]
                        for r in range(nr):
                            cols[at + v + j, r] = oh_next[j, r] * cj
            _transpose_tile(flat_cols, R, nr, ND, flat_obs, b0 * ND)
    return ok


@numba.njit(cache=True, error_model="numpy")
def _env_kernel_k1(
    actions, order_idx, tr_idx, half_order, half_tr, up_to, t, flags, on_hand, backlog, pipeline, pipe_rate,
    arrived, hist, demand, lead, node_i, lane_i, lane_f, capacity, holding, penalty, disrupted, scal, cost_out,
    node_out, lane_out, pipe_out, hist_next, orders, reward_mode, reward_weight, rewards, observe, template,
    varying, tiles, inv, vis, to, recv_onhand, recv_dos, src, src_dos, obs,
):  # fmt: skip
    """Decode + step + rewards + observation of the next state (one SKU, planes), serial; False on bad actions."""
    dec = (actions, order_idx, tr_idx, half_order, half_tr, up_to)
    inputs = (t, flags, on_hand, backlog, pipeline, pipe_rate, arrived, hist, demand, lead)
    consts = (node_i, lane_i, lane_f, capacity, holding, penalty, disrupted, scal)
    outs = (cost_out, node_out, lane_out, pipe_out, hist_next, orders)
    rew = (reward_mode, reward_weight, rewards)
    obs_in = (observe, template, varying, tiles, inv, vis, to, recv_onhand, recv_dos, src, src_dos, obs)
    B = on_hand.shape[1]
    first = B - B  # an int64 like the parallel kernel's (a literal 0 would compile _env_rows_k1 twice)
    return _env_rows_k1(first, B, first, dec, inputs, consts, outs, rew, obs_in)


@numba.njit(cache=True, parallel=True, error_model="numpy")
def _env_kernel_k1_par(
    chunk, actions, order_idx, tr_idx, half_order, half_tr, up_to, t, flags, on_hand, backlog, pipeline,
    pipe_rate, arrived, hist, demand, lead, node_i, lane_i, lane_f, capacity, holding, penalty, disrupted, scal,
    cost_out, node_out, lane_out, pipe_out, hist_next, orders, reward_mode, reward_weight, rewards, observe,
    template, varying, tiles, inv, vis, to, recv_onhand, recv_dos, src, src_dos, obs,
):  # fmt: skip
    """:func:`_env_kernel_k1` over chunks of ``chunk`` rows in parallel (rows are independent: same results)."""
    dec = (actions, order_idx, tr_idx, half_order, half_tr, up_to)
    inputs = (t, flags, on_hand, backlog, pipeline, pipe_rate, arrived, hist, demand, lead)
    consts = (node_i, lane_i, lane_f, capacity, holding, penalty, disrupted, scal)
    outs = (cost_out, node_out, lane_out, pipe_out, hist_next, orders)
    rew = (reward_mode, reward_weight, rewards)
    obs_in = (observe, template, varying, tiles, inv, vis, to, recv_onhand, recv_dos, src, src_dos, obs)
    B = on_hand.shape[1]
    n_chunks = (B + chunk - 1) // chunk
    ok = np.ones(n_chunks, dtype=np.bool_)
    for i in numba.prange(n_chunks):
        ok[i] = _env_rows_k1(i * chunk, min((i + 1) * chunk, B), i, dec, inputs, consts, outs, rew, obs_in)
    return ok.all()


_COSTS = ("holding_cost", "shortage_cost", "order_cost", "transfer_cost")
_NODE_OUT = (  # [B, N, K] outputs of _step_kernel, in node_out order (then next on_hand, next arrived, demand)
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
)


class _NetConsts:
    """Per-network constant arrays of the kernels (computed once, cached on the Network)."""

    def __init__(self, net: Network) -> None:
        self.node_i = np.stack([net.is_supplier_fed.astype(np.int64), net.source_lane, net.lt_values[:, 0]]).astype(
            np.int64
        )
        self.lane_i = np.stack([net.lane_from, net.lane_to, net.lane_lead]).astype(np.int64).reshape(3, net.n_lanes)
        self.lane_f = np.stack([net.lane_unit, net.lane_fixed, net.lane_cap]).astype(float).reshape(3, net.n_lanes)
        self.capacity = net.capacity.astype(float)
        self.holding = np.ascontiguousarray(net.holding, dtype=float)
        self.penalty = np.ascontiguousarray(net.penalty, dtype=float)
        self.disrupted = np.zeros((net.periods + 1, net.n_nodes), dtype=np.bool_)  # row T: after the horizon
        self.disrupted[: net.periods] = net.disrupted
        self.scal = np.array([net.order_fixed, net.order_unit, net.supplier_holding], dtype=float)
        fixed_lt = net.fixed_lead_times  # as core.step: the exogenous draw is ignored
        self.fixed_lt = fixed_lt
        self.flags = [  # flags[t]: has_next depends on t
            np.array([t + 1 < net.periods, fixed_lt, net.pipeline_holding, net.backorder], dtype=np.int64)
            for t in range(net.periods)
        ]


def _consts(net: Network) -> _NetConsts:
    c = net.__dict__.get("_jit_consts")
    if c is None:
        c = _NetConsts(net)
        net.__dict__["_jit_consts"] = c  # Network is frozen; cache like functools.cached_property does
    return c


class _Buffers:
    """Fresh output arrays of one step; StepOutput and State fields are views into them."""

    def __init__(self, B: int, N: int, K: int, E: int, P: int, H: int) -> None:
        self.cost = np.empty((4, B, N))
        self.node = np.empty((len(_NODE_OUT) + 3, B, N, K))
        self.lane = np.empty((2, B, E, K))
        self.pipe = np.empty((2, B, N, K, P))
        self.hist = np.empty((B, N, K, H))

    def results(self, t: int, ordered: np.ndarray) -> tuple[State, StepOutput]:
        return _results(self.cost, self.node, self.lane, self.pipe, self.hist, t, ordered)


def _results(
    c: np.ndarray, node: np.ndarray, lane: np.ndarray, pipe: np.ndarray, hist: np.ndarray, t: int, ordered: np.ndarray
) -> tuple[State, StepOutput]:
    """The next State and the StepOutput as views of [4, B, N] costs, [17, B, N, K] node outputs, [2, B, E, K]
    lane flows, [2, B, N, K, P] pipeline and pipe rate and the [B, N, K, H] demand history."""
    out = _frozen(
        StepOutput,
        holding_cost=c[0],
        shortage_cost=c[1],
        order_cost=c[2],
        transfer_cost=c[3],
        demand=node[13],
        sales=node[0],
        served_now=node[1],
        lost_sales=node[2],
        backlog=node[3],
        on_hand=node[4],
        in_transit=node[5],
        received=node[6],
        ordered=ordered,
        order_shipped=node[7],
        supplier_in=node[8],
        lane_shipped=lane[0],
        lane_flow=lane[1],
        shipped_out=node[9],
        refused=node[10],
    )
    state = _frozen(
        State,
        t=t + 1,
        on_hand=node[11],
        backlog=node[3],
        pipeline=pipe[0],
        pipe_rate=pipe[1],
        arrived=node[12],
        demand_hist=hist,
    )
    return state, out


class _PlaneBuffers:
    """Output planes of one fused one-SKU step, batch axis last (``[4, N, B]`` costs, ``[17, N, B]`` node
    outputs in :class:`_Buffers`' order, ``[2, E, B]`` lanes, ``[2, N, P, B]`` pipeline and pipe rate,
    ``[N, H, B]`` demand history, ``[N, B]`` orders). StepOutput and State fields are ``[B, N, 1]`` (and
    ``[B, N, 1, P]``, ``[B, N, 1, H]``) transposed views of them: the values and shapes of :func:`step_jit`'s
    results, with the batch axis innermost in memory."""

    def __init__(self, B: int, N: int, E: int, P: int, H: int) -> None:
        self.cost = np.empty((4, N, B))
        self.node = np.empty((len(_NODE_OUT) + 3, N, B))
        self.lane = np.empty((2, E, B))
        self.pipe = np.empty((2, N, P, B))
        self.hist = np.empty((N, H, B))
        self.orders = np.empty((N, B))

    def results(self, t: int) -> tuple[State, StepOutput]:
        P, B = self.pipe.shape[2], self.pipe.shape[3]
        if B == 1:  # a [N, 1] plane is a [1, N] row: reshapes are cheaper than transposes (the PettingZoo env)
            N = self.orders.shape[0]
            return _results(
                self.cost.reshape(4, 1, N), self.node.reshape(-1, 1, N, 1), self.lane.reshape(2, 1, -1, 1),
                self.pipe.reshape(2, 1, N, 1, P), self.hist.reshape(1, N, 1, -1), t, self.orders.reshape(1, N, 1),
            )  # fmt: skip
        return _results(
            self.cost.transpose(0, 2, 1), self.node.transpose(0, 2, 1)[..., None],
            self.lane.transpose(0, 2, 1)[..., None], self.pipe.transpose(0, 3, 1, 2)[:, :, :, None, :],
            self.hist.transpose(2, 0, 1)[:, :, None, :], t, self.orders.T[:, :, None],
        )  # fmt: skip

    def state_planes(self) -> tuple[np.ndarray, ...]:
        """The next state's planes, in :meth:`JitStepper._planes` order."""
        n = self.node
        return n[11], n[3], self.pipe[0], self.pipe[1], n[12], self.hist


def _c(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """C-contiguous arrays (no copy when they are): one compiled specialisation instead of one per layout
    (``initial_state``'s broadcast copies come out F-ordered)."""
    return tuple(x if x.flags.c_contiguous else np.ascontiguousarray(x) for x in arrays)


def _frozen(cls: type, **values: object) -> Any:
    """``cls(**values)`` for a frozen dataclass without its per-field ``object.__setattr__`` (a third of a
    B = 1 step); every field is given (``_FIELDS`` checks the names once at import)."""
    obj = object.__new__(cls)
    obj.__dict__.update(values)
    return obj


_FIELDS = {cls: {f.name for f in fields(cls)} for cls in (State, StepOutput)}
assert _FIELDS[StepOutput] == set(_COSTS) | set(_NODE_OUT) | {"demand", "ordered", "lane_shipped", "lane_flow"}
assert _FIELDS[State] == {"t", "on_hand", "backlog", "pipeline", "pipe_rate", "arrived", "demand_hist"}


def _buffers(state: State, E: int) -> _Buffers:
    B, N, K, P = state.pipeline.shape
    return _Buffers(B, N, K, E, P, state.demand_hist.shape[3])


def step_jit(net: Network, state: State, action: Action, exo: Exogenous) -> tuple[State, StepOutput]:
    """:func:`invnet.envs.core.step` compiled: same contract (pure; same fields, shapes and dtypes)."""
    c = _consts(net)
    buf = _buffers(state, net.n_lanes)
    kernel = _step_kernel_k1 if net.n_skus == 1 else _step_kernel
    kernel(
        state.t, c.flags[state.t], *_c(state.on_hand, state.backlog, state.pipeline, state.pipe_rate, state.arrived,
        state.demand_hist, action.orders, action.transfers, exo.demand, exo.lead_time), c.node_i, c.lane_i, c.lane_f,
        c.capacity, c.holding, c.penalty, c.disrupted, c.scal, buf.cost, buf.node, buf.lane, buf.pipe, buf.hist,
    )  # fmt: skip
    return buf.results(state.t, action.orders)


PARALLEL_MIN_BATCH = 128  # batches this large step on all cores (smaller ones: serial, no thread-pool overhead)
PARALLEL_CHUNK = 128  # rows per parallel task (each task allocates its row scratch once)
_parallel: bool | None = None  # None: not yet tried; False: no thread-safe threading layer, serial for good


@numba.njit(cache=True, parallel=True)
def _probe_parallel(x):
    """Tiny parallel kernel: its first call loads numba's threading layer."""
    s = 0.0
    for i in numba.prange(x.shape[0]):
        s += x[i]
    return s


def parallel_available() -> bool:
    """True when the parallel kernel may run: numba loaded a thread-safe threading layer (tbb or omp).

    On the first call, unless numba's threading layer is already running or chosen by the user
    (``NUMBA_THREADING_LAYER``), asks for ``"threadsafe"``: the env may be stepped from several threads
    (the policy server's workers). If no such layer loads, or another one already runs, the batched env
    steps with the serial kernel for good (same results)."""
    global _parallel
    if _parallel is None:
        try:
            numba.threading_layer()
        except ValueError:  # not launched yet: choose a thread-safe layer unless the user chose one
            if numba.config.THREADING_LAYER == "default":
                numba.config.THREADING_LAYER = "threadsafe"
        try:
            _probe_parallel(np.ones(2))
            layer = numba.threading_layer()
        except ValueError:  # "No threading layer could be loaded"
            layer = None
        _parallel = layer in ("tbb", "omp")
    return _parallel


class JitStepper:
    """Decode + step + rewards + observe for :class:`~invnet.envs.batched.BatchedInventoryEnv` (numba backend).

    Batches of at least ``parallel_min_batch`` rows (one SKU) step with the parallel kernel when
    :func:`parallel_available`; smaller ones with the serial kernel.
    """

    _FORECAST_COLUMN = 3  # AgentSpaces.observe's forecast column for one SKU (3K..4K); time features at own_dim

    def __init__(
        self, spaces: AgentSpaces, reward_mode: str, reward_weight: float, parallel_min_batch: int = PARALLEL_MIN_BATCH
    ) -> None:
        self.spaces = spaces
        self.parallel_min_batch = parallel_min_batch
        net = spaces.net
        self.c = _consts(net)
        order_idx, tr_idx, half_order, half_tr = spaces._decode_index
        self._order_idx = order_idx.astype(np.int64)
        self._tr_idx = tr_idx.reshape(net.n_lanes, net.n_skus).astype(np.int64)
        self._order_idx1, self._tr_idx1 = self._order_idx[:, 0].copy(), self._tr_idx[:, 0].copy()  # SKU 0
        self._half_order = np.ascontiguousarray(half_order.reshape(net.n_nodes), dtype=float)
        self._half_tr = np.ascontiguousarray(half_tr.reshape(net.n_lanes), dtype=float)
        self._up_to = spaces.action_mode == "order_up_to"
        self._reward_name = reward_mode
        self._reward_mode = ("team", "local", "mixed").index(reward_mode)
        self._reward_weight = float(reward_weight)
        p = spaces._obs_plan
        N, M = net.n_nodes, net.max_out_lanes
        self._inv = np.ascontiguousarray(p["inv"].reshape(N))
        self._forecast = np.ascontiguousarray(p["forecast"])  # [T, N, K]
        self._feats = np.ascontiguousarray(spaces._node_features32)
        self._vis = _VISIBILITY[spaces.visibility]
        self._to = np.ascontiguousarray(p["to"], dtype=np.int64).reshape(N, M)
        self._recv_onhand = np.ascontiguousarray(p["recv_onhand"], dtype=float).reshape(N, M)
        self._recv_dos = np.ascontiguousarray(p["recv_dos"], dtype=float).reshape(N, M)
        self._src = p["src"].astype(np.int64)
        self._src_dos = np.ascontiguousarray(p["src_dos"], dtype=float)
        self._time = [spaces._time(_AtT(t)) for t in range(net.periods + 1)]  # [3] per t, as observe computes it
        self._own: tuple[State, tuple[np.ndarray, ...]] | None = None  # the last state advance() built, its planes
        self._exo: Exogenous | None = None
        self._exo_arrays: tuple[np.ndarray, ...] = ()
        self._templates: list[np.ndarray] = []
        o = spaces.own_dim  # flat observation columns that change with the period: forecast, time features
        per_node = (self._FORECAST_COLUMN, o, o + 1, o + 2)
        self._varying = np.array([n * spaces.obs_dim + j for n in range(N) for j in per_node])
        self._tiles = np.empty((0, N * spaces.obs_dim, TILE), dtype=np.float32)

    def decode(self, actions: np.ndarray, state: State) -> Action:
        """:meth:`AgentSpaces.decode` compiled (falls back to it to raise the same errors on bad input)."""
        sp = self.spaces
        B, N, K = state.on_hand.shape
        a = np.ascontiguousarray(actions, dtype=np.float64)
        if a.shape != (B, N, sp.action_dim):
            return sp.decode(actions, state)
        orders = np.empty((B, N, K))
        transfers = np.empty((B, sp.net.n_lanes, K))
        ok = _decode_kernel(
            a, self._order_idx, self._tr_idx, self._half_order, self._half_tr, self._up_to,
            *_c(state.on_hand, state.pipeline, state.backlog), orders, transfers,
        )  # fmt: skip
        if not ok:
            return sp.decode(actions, state)  # raises ValueError naming the problem
        return Action(orders=orders, transfers=transfers)

    def step(self, state: State, action: Action, exo: Exogenous) -> tuple[State, StepOutput]:
        return step_jit(self.spaces.net, state, action, exo)

    def advance(
        self, state: State, actions: np.ndarray, exo: Exogenous, observe: bool
    ) -> tuple[State, StepOutput, np.ndarray, np.ndarray | None]:
        """Decode ``actions`` [B, N, action_dim] in [-1, 1], step; returns (next state, outputs, rewards, obs)."""
        sp, c = self.spaces, self.c
        net = sp.net
        B, N, K = state.on_hand.shape
        if K != 1:  # several SKUs: three compiled calls (one fused kernel per SKU count would double compile time)
            new_state, out = self.step(state, self.decode(actions, state), exo)
            rewards = team_rewards(out.cost, self._reward_name, self._reward_weight)
            return new_state, out, rewards, (self.observe(new_state) if observe else None)
        a = np.ascontiguousarray(actions, dtype=np.float64)
        if a.shape != (B, N, sp.action_dim):
            sp.decode(actions, state)  # raises ValueError naming the shape
        t = state.t
        parallel = B >= self.parallel_min_batch and parallel_available()
        chunk = min(PARALLEL_CHUNK, B) if parallel else B  # rows per kernel call; one tile buffer per call
        buf = _PlaneBuffers(B, N, net.n_lanes, net.pipeline_len, state.demand_hist.shape[3])
        rewards = np.empty((B, N))
        obs = np.empty((B, N, sp.obs_dim) if observe else (0, 0, 0), dtype=np.float32)
        args = (
            a, self._order_idx1, self._tr_idx1, self._half_order, self._half_tr, self._up_to,
            t, c.flags[t], *self._planes(state), *self._exo_planes(exo, t), c.node_i, c.lane_i, c.lane_f, c.capacity,
            c.holding, c.penalty, c.disrupted, c.scal, buf.cost, buf.node, buf.lane, buf.pipe, buf.hist, buf.orders,
            self._reward_mode, self._reward_weight, rewards, observe, self._template(t + 1), self._varying,
            self._tile_buffers(-(-B // chunk)), self._inv, self._vis, self._to,
            self._recv_onhand, self._recv_dos, self._src, self._src_dos, obs,
        )  # fmt: skip
        if parallel:
            # dynamic scheduling (chunks handed out one at a time): a thread whose core is busy with another
            # process takes fewer chunks instead of holding up the step (static scheduling: 2-3x slower then)
            previous = numba.set_parallel_chunksize(1)
            try:
                ok = _env_kernel_k1_par(chunk, *args)
            finally:
                numba.set_parallel_chunksize(previous)
        else:
            ok = _env_kernel_k1(*args)
        if not ok:
            sp.decode(actions, state)  # raises ValueError naming the problem
            raise AssertionError("unreachable: the compiled decode refused actions that AgentSpaces.decode accepts")
        new_state, out = buf.results(t)
        self._own = (new_state, buf.state_planes())
        return new_state, out, rewards, (obs if observe else None)

    def _planes(self, state: State) -> tuple[np.ndarray, ...]:
        """The state as planes (on_hand, backlog [N, B]; pipeline, pipe_rate [N, P, B]; arrived [N, B]; demand
        history [N, H, B]): the buffers themselves for the state the last step built, else transposed copies."""
        if self._own is not None and state is self._own[0]:
            return self._own[1]
        return (
            *(np.ascontiguousarray(x[:, :, 0].T) for x in (state.on_hand, state.backlog)),
            *(np.ascontiguousarray(x[:, :, 0].transpose(1, 2, 0)) for x in (state.pipeline, state.pipe_rate)),
            np.ascontiguousarray(state.arrived[:, :, 0].T),
            np.ascontiguousarray(state.demand_hist[:, :, 0].transpose(1, 2, 0)),
        )

    def _exo_planes(self, exo: Exogenous, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Demand [N, B] and supplier lead times [N, B] of period t (transposed once per episode)."""
        if exo is not self._exo:
            demand = np.ascontiguousarray(exo.demand[:, :, :, 0].transpose(1, 2, 0))  # [T, N, B]
            if self.c.fixed_lt:  # the kernel never reads the draws
                lead = np.zeros((demand.shape[0], 1, 1), dtype=np.int64)
            else:
                lead = np.ascontiguousarray(exo.lead_time.transpose(1, 2, 0), dtype=np.int64)  # [T, N, B]
            self._exo, self._exo_arrays = exo, (demand, lead)
        demand, lead = self._exo_arrays
        return demand[t], lead[t]

    def _tile_buffers(self, slots: int) -> np.ndarray:
        """[slots, N * obs_dim, TILE] float32 observation tiles of the fused kernel (one per parallel chunk), kept
        between steps: entries that never change (node features) are written once, here."""
        if self._tiles.shape[0] < slots:
            tiles = np.empty((slots, *self._tiles.shape[1:]), dtype=np.float32)
            tiles[:] = self._template(0).reshape(-1)[None, :, None]
            self._tiles = tiles
        return self._tiles

    def _template(self, t: int) -> np.ndarray:
        """[N, obs_dim] float32 observation entries that are the same in every row at period t (forecast, time
        features, node features), zeros elsewhere: the fused kernel's tile buffers hold them."""
        while len(self._templates) <= t:
            k = len(self._templates)
            net, sp = self.spaces.net, self.spaces
            tmpl = np.zeros((net.n_nodes, sp.obs_dim), dtype=np.float32)
            o = sp.own_dim
            tmpl[:, self._FORECAST_COLUMN] = self._forecast[min(k, net.periods - 1), :, 0]
            tmpl[:, o : o + 3] = self._time[min(k, net.periods)]
            tmpl[:, o + 3 : o + 3 + self._feats.shape[1]] = self._feats
            self._templates.append(tmpl)
        return self._templates[t]

    def observe(self, state: State) -> np.ndarray:
        """:meth:`AgentSpaces.observe` compiled: [B, N, obs_dim] float32."""
        sp = self.spaces
        net = sp.net
        out = np.empty((state.batch_size, net.n_nodes, sp.obs_dim), dtype=np.float32)
        _observe_kernel(
            *_c(state.on_hand, state.backlog, state.pipeline, state.demand_hist),
            self._forecast[min(state.t, net.periods - 1)], self._inv, self._time[min(state.t, net.periods)],
            self._feats, self._vis, self._to, self._recv_onhand, self._recv_dos, self._src, self._src_dos, out,
        )  # fmt: skip
        return out


class _AtT:
    """Stand-in state carrying only ``t`` (AgentSpaces._time reads nothing else)."""

    def __init__(self, t: int) -> None:
        self.t = t
