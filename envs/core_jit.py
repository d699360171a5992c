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

Kernel organisation: each stage is an ``inline="always"`` function over a range of batch rows
(:func:`_decode_rows`, :func:`_step_rows`, :func:`_rewards_rows`, :func:`_observe_rows`) taking ``fixed_k``;
the cached entry points pass 1 (one SKU, the common case: LLVM then unrolls the SKU loops) or 0 (K read from
the arrays). The fused one-SKU step :func:`_env_rows_k1` runs the four stages block by block (``ROW_BLOCK``
rows), so a block's data stays in L1/L2 from its actions to its observation instead of four passes over the
whole batch (the step is compute-bound, so this saves little on one core; it is what lets the rows split into
independent chunks).
:func:`_env_kernel_k1` calls it for all rows; :func:`_env_kernel_k1_par` (``parallel=True``) for chunks of
``PARALLEL_CHUNK`` rows on all cores, used for batches of at least ``PARALLEL_MIN_BATCH`` rows when numba has a
thread-safe threading layer (tbb or omp, see :func:`parallel_available`); rows are independent, so both give
bit-identical results. Several-SKU networks step through three calls (decode, step, observe) rather than a
second fused kernel. Kernels are compiled on first use and cached on disk (``cache=True``, in
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

_VISIBILITY = {"own": 0, "neighbours": 1, "all": 2}


ROW_BLOCK = 16  # rows per block of the fused kernels: each stage runs over a block, whose data stays in L1/L2


@numba.njit(inline="always", error_model="numpy")
def _step_scratch(t, K, P, consts):
    """:func:`_step_rows`' per-call constants (the receiver whose order rides each lane, -1 if none; any
    disruption now; any finite storage capacity) and row scratch, allocated once per kernel call or parallel
    chunk and reused by every row."""
    node_i, lane_i, capacity, disrupted = consts[0], consts[1], consts[3], consts[6]
    source_lane = node_i[1]
    N = source_lane.shape[0]
    E = lane_i.shape[1]
    order_of = np.full(E, -1, dtype=np.int64)
    for n in range(N):
        if source_lane[n] >= 0:
            order_of[source_lane[n]] = n
    any_down = False
    any_cap = False
    for n in range(N):
        any_down = any_down or disrupted[t, n]
        any_cap = any_cap or math.isfinite(capacity[n])
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
    has_next, fixed_lt, pipeline_holding, backorder = flags[0] != 0, flags[1] != 0, flags[2] != 0, flags[3] != 0
    is_sup, lt0 = node_i[0], node_i[2]
    lane_from, lane_to, lane_lead = lane_i[0], lane_i[1], lane_i[2]
    lane_unit, lane_fixed, lane_cap = lane_f[0], lane_f[1], lane_f[2]
    down_now, down_next = disrupted[t], disrupted[t + 1]
    order_fixed, order_unit, supplier_holding = scal[0], scal[1], scal[2]
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


@numba.njit(inline="always", error_model="numpy")
def _rewards_rows(lo, hi, cost_out, mode, weight, rewards):
    """team_rewards of rows lo..hi-1: team = -network cost (mode 0), local = -own cost (1), mixed = w local +
    (1 - w) team (2)."""
    N = rewards.shape[1]
    for b in range(lo, hi):
        team = 0.0
        for n in range(N):
            team += cost_out[0, b, n] + cost_out[1, b, n] + cost_out[2, b, n] + cost_out[3, b, n]
        for n in range(N):
            own = -(cost_out[0, b, n] + cost_out[1, b, n] + cost_out[2, b, n] + cost_out[3, b, n])
            if mode == 0:
                rewards[b, n] = -team
            elif mode == 1:
                rewards[b, n] = own
            else:
                rewards[b, n] = weight * own + (1.0 - weight) * -team


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


@numba.njit(error_model="numpy")
def _env_rows_k1(lo, hi, dec, inputs, consts, outs, rew, obs_in):
    """Rows lo..hi-1 of decode + step + rewards + observation of the next state (one SKU), ROW_BLOCK rows at a
    time: a block's data stays in L1/L2 from its actions to its observation. False if some row has bad actions
    (a bad row is stepped on: outputs are fresh buffers, and the caller raises AgentSpaces.decode's error).
    Not inlined: the serial and the parallel kernel share one compiled copy (one call per chunk of rows)."""
    actions, dec_i, tr_idx, half_order, half_tr, up_to, orders = dec
    t, flags, on_hand, backlog, pipeline, pipe_rate, arrived, hist, demand_all, lead_all = inputs
    cost_out, node_out, lane_out, pipe_out, hist_next = outs
    reward_mode, reward_weight, rewards = rew
    observe, forecast, inv, time3, feats, vis, to, recv_onhand, recv_dos, src, src_dos, obs = obs_in
    B, N = on_hand.shape[0], on_hand.shape[1]
    flat = actions.reshape(B, actions.shape[1] * actions.shape[2])
    scratch = _step_scratch(t, 1, pipeline.shape[3], consts)
    transfers = np.empty((ROW_BLOCK, lane_out.shape[2], 1))  # the block's transfers (not an output)
    stock = np.empty(N)
    on_hand_next, backlog_next, pipeline_next = node_out[11], node_out[3], pipe_out[0]
    ok = True
    for b0 in range(lo, hi, ROW_BLOCK):
        b1 = min(b0 + ROW_BLOCK, hi)
        ok &= _decode_rows(
            1, b0, b1, b0, flat, dec_i, tr_idx, half_order, half_tr, up_to, on_hand, pipeline, backlog, orders,
            transfers,
        )  # fmt: skip
        _step_rows(
            1, b0, b1, b0, t, flags, on_hand, backlog, pipeline, pipe_rate, arrived, hist, orders, transfers,
            demand_all, lead_all, consts, cost_out, node_out, lane_out, pipe_out, hist_next, scratch,
        )  # fmt: skip
        _rewards_rows(b0, b1, cost_out, reward_mode, reward_weight, rewards)
        if observe:
            _observe_rows(
                1, b0, b1, on_hand_next, backlog_next, pipeline_next, hist_next, forecast, inv, time3, feats, vis,
                to, recv_onhand, recv_dos, src, src_dos, obs, stock,
            )  # fmt: skip
    return ok


@numba.njit(cache=True, error_model="numpy")
def _env_kernel_k1(
    actions, dec_i, tr_idx, half_order, half_tr, up_to, orders, t, flags, on_hand, backlog, pipeline,
    pipe_rate, arrived, hist, demand_all, lead_all, node_i, lane_i, lane_f, capacity, holding, penalty, disrupted,
    scal, cost_out, node_out, lane_out, pipe_out, hist_next, reward_mode, reward_weight, rewards, observe,
    forecast, inv, time3, feats, vis, to, recv_onhand, recv_dos, src, src_dos, obs,
):  # fmt: skip
    """Decode + step + rewards + observation of the next state (one SKU), serial; False on bad actions."""
    dec = (actions, dec_i, tr_idx, half_order, half_tr, up_to, orders)
    inputs = (t, flags, on_hand, backlog, pipeline, pipe_rate, arrived, hist, demand_all, lead_all)
    consts = (node_i, lane_i, lane_f, capacity, holding, penalty, disrupted, scal)
    outs = (cost_out, node_out, lane_out, pipe_out, hist_next)
    rew = (reward_mode, reward_weight, rewards)
    obs_in = (observe, forecast, inv, time3, feats, vis, to, recv_onhand, recv_dos, src, src_dos, obs)
    return _env_rows_k1(0, on_hand.shape[0], dec, inputs, consts, outs, rew, obs_in)


@numba.njit(cache=True, parallel=True, error_model="numpy")
def _env_kernel_k1_par(
    chunk, actions, dec_i, tr_idx, half_order, half_tr, up_to, orders, t, flags, on_hand, backlog, pipeline,
    pipe_rate, arrived, hist, demand_all, lead_all, node_i, lane_i, lane_f, capacity, holding, penalty, disrupted,
    scal, cost_out, node_out, lane_out, pipe_out, hist_next, reward_mode, reward_weight, rewards, observe,
    forecast, inv, time3, feats, vis, to, recv_onhand, recv_dos, src, src_dos, obs,
):  # fmt: skip
    """:func:`_env_kernel_k1` over chunks of ``chunk`` rows in parallel (rows are independent: same results)."""
    dec = (actions, dec_i, tr_idx, half_order, half_tr, up_to, orders)
    inputs = (t, flags, on_hand, backlog, pipeline, pipe_rate, arrived, hist, demand_all, lead_all)
    consts = (node_i, lane_i, lane_f, capacity, holding, penalty, disrupted, scal)
    outs = (cost_out, node_out, lane_out, pipe_out, hist_next)
    rew = (reward_mode, reward_weight, rewards)
    obs_in = (observe, forecast, inv, time3, feats, vis, to, recv_onhand, recv_dos, src, src_dos, obs)
    B = on_hand.shape[0]
    n_chunks = (B + chunk - 1) // chunk
    ok = np.ones(n_chunks, dtype=np.bool_)
    for i in numba.prange(n_chunks):
        ok[i] = _env_rows_k1(i * chunk, min((i + 1) * chunk, B), dec, inputs, consts, outs, rew, obs_in)
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
        fixed_lt = bool(np.all(net.lt_cdf[:, 0] >= 1.0))  # as core.step: the exogenous draw is ignored
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
        node, lane = self.node, self.lane
        c = self.cost
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
            pipeline=self.pipe[0],
            pipe_rate=self.pipe[1],
            arrived=node[12],
            demand_hist=self.hist,
        )
        return state, out


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
PARALLEL_CHUNK = 64  # rows per parallel task (each task allocates its row scratch once)
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
        self._own_state: State | None = None  # the last state advance() built (C-contiguous by construction)
        self._exo: Exogenous | None = None
        self._exo_arrays: tuple[np.ndarray, ...] = ()

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
        E, t = net.n_lanes, state.t
        orders = np.empty((B, N, K))
        buf = _buffers(state, E)
        rewards = np.empty((B, N))
        obs = np.empty((B, N, sp.obs_dim) if observe else (0, 0, 0), dtype=np.float32)
        args = (
            a, self._order_idx, self._tr_idx, self._half_order, self._half_tr, self._up_to, orders, t, c.flags[t],
            *self._inputs(state, exo), c.node_i, c.lane_i, c.lane_f, c.capacity, c.holding, c.penalty, c.disrupted,
            c.scal, buf.cost, buf.node, buf.lane, buf.pipe, buf.hist, self._reward_mode, self._reward_weight, rewards,
            observe, self._forecast[min(t + 1, net.periods - 1)], self._inv, self._time[t + 1], self._feats,
            self._vis, self._to, self._recv_onhand, self._recv_dos, self._src, self._src_dos, obs,
        )  # fmt: skip
        if B >= self.parallel_min_batch and parallel_available():
            # dynamic scheduling (chunks handed out one at a time): a thread whose core is busy with another
            # process takes fewer chunks instead of holding up the step (static scheduling: 2-3x slower then)
            previous = numba.set_parallel_chunksize(1)
            try:
                ok = _env_kernel_k1_par(min(PARALLEL_CHUNK, B), *args)
            finally:
                numba.set_parallel_chunksize(previous)
        else:
            ok = _env_kernel_k1(*args)
        if not ok:
            sp.decode(actions, state)  # raises ValueError naming the problem
            raise AssertionError("unreachable: the compiled decode refused actions that AgentSpaces.decode accepts")
        new_state, out = buf.results(t, orders)
        self._own_state = new_state
        return new_state, out, rewards, (obs if observe else None)

    def _inputs(self, state: State, exo: Exogenous) -> tuple[np.ndarray, ...]:
        """State and exogenous arrays for the kernel, C-contiguous (checked unless this stepper made them)."""
        if exo is not self._exo:
            self._exo, self._exo_arrays = exo, _c(exo.demand, exo.lead_time)
        fields = (state.on_hand, state.backlog, state.pipeline, state.pipe_rate, state.arrived, state.demand_hist)
        return (*(fields if state is self._own_state else _c(*fields)), *self._exo_arrays)

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
