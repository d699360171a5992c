"""Hindsight (perfect-information) lower bound: one LP per episode over its realised demand.

For each episode the LP chooses supplier orders, lane flows (upstream shipments and transfers), sales
and stock knowing the whole demand path and the realised supplier lead times, under the event order of
``envs/core.py``:

- ``H[t] = I[t-1] + A[t]``: on-hand at decision time (arrivals A at the start of t; an arrival due at a
  disrupted node waits until its first period without disruption);
- shipments leave from ``H[t]`` (``out[t] <= H[t]``); lead-time-0 lane flows and lead-time-0 supplier
  orders arrive before demand; ``I[t] = H[t] - out[t] + in0[t] - sales[t] >= 0``;
- lost sales: ``sales[t] <= d[t]``; backorders: ``B[t] = B[t-1] + d[t] - sales[t] >= 0``;
- lane capacity (all SKUs), node storage ``I[t-1] + A[t] + in-transit + inbound[t] <= capacity``
  (the env's refusal rule), no flow to or from a disrupted node;
- cost, counted from the warm-up on: holding on end-of-period on-hand (+ in-transit units at the
  sender's rate when ``pipeline_holding``), lost-sale penalty or backorder cost, order unit cost on
  supplier orders, lane unit cost on every lane flow.

Relaxations (each keeps it a valid lower bound, since every policy's decisions are feasible for the LP
at no lower cost): fixed order and lane costs are dropped; quantities are continuous; sales may fall short
of what is on hand; flows on a node's source lane are charged as transfers (no order unit cost; the env
lets a sender push stock on that lane too). So ``bound <= cost of any policy on the same paths``,
episode by episode; averaged over paths it bounds every policy's expected cost.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from invnet.envs.batched import BatchedInventoryEnv
from invnet.envs.core import Exogenous
from invnet.envs.network import Network, compile_network
from invnet.envs.rollout import mean_ci95
from invnet.envs.scenario import Scenario
from scipy import sparse
from scipy.optimize import linprog


@dataclass(frozen=True)
class BoundResult:
    """Hindsight bound over E episodes (cost per period after warm-up, like ``Trajectory.cost_per_period``)."""

    per_episode: np.ndarray  # [E]
    total_cost: float
    total_cost_ci95: float
    seconds: float


def _next_open(net: Network) -> np.ndarray:
    """[T+1, N] first period >= t in which node n is not disrupted (T = never within the horizon)."""
    T, N = net.periods, net.n_nodes
    out = np.full((T + 1, N), T, dtype=int)
    for t in range(T - 1, -1, -1):
        out[t] = np.where(net.disrupted[t], out[t + 1], t)
    return out


def episode_lp(net: Network, demand: np.ndarray, lead_time: np.ndarray) -> tuple[float, int]:
    """Solve one episode's LP. ``demand`` [T, N, K], ``lead_time`` [T, N]. Returns (cost per period, vars)."""
    T, N, K, E = net.periods, net.n_nodes, net.n_skus, net.n_lanes
    w = net.warmup
    nxt = _next_open(net)
    # ---- variables ----------------------------------------------------------------------------
    nX, nN = T * E * K, T * N * K
    X = np.arange(nX).reshape(T, E, K)
    U = nX + np.arange(nN).reshape(T, N, K)
    Ivar = nX + nN + np.arange(nN).reshape(T, N, K)
    S = nX + 2 * nN + np.arange(nN).reshape(T, N, K)
    nv = nX + 3 * nN
    if net.backorder:
        Bk = nv + np.arange(nN).reshape(T, N, K)
        nv += nN
    tt = np.arange(T)
    # arrival period of every flow (T = not within the horizon)
    lead_e = net.lane_lead  # [E]
    a_x = np.where(lead_e[None] == 0, tt[:, None], nxt[np.minimum(tt[:, None] + lead_e[None], T), net.lane_to[None]])
    a_u = np.where(lead_time == 0, tt[:, None], nxt[np.minimum(tt[:, None] + lead_time, T), np.arange(N)[None]])
    # ---- bounds -------------------------------------------------------------------------------
    lo = np.zeros(nv)
    hi = np.full(nv, np.inf)
    down = net.disrupted  # [T, N]
    lane_down = down[:, net.lane_from] | down[:, net.lane_to]  # [T, E]
    xcap = np.where(lane_down, 0.0, net.lane_cap[None] if K == 1 else np.inf)
    hi[X] = np.broadcast_to(xcap[:, :, None], (T, E, K))
    ucap = np.where(down | ~net.is_supplier_fed[None], 0.0, np.inf)
    hi[U] = np.broadcast_to(ucap[:, :, None], (T, N, K))
    if not net.backorder:
        hi[S] = demand
    # ---- equality rows: balance (and backlog) --------------------------------------------------
    rows, cols, vals = [], [], []

    def add(r: np.ndarray, c: np.ndarray, v: float | np.ndarray) -> None:
        r, c = np.broadcast_arrays(np.asarray(r), np.asarray(c))
        rows.append(r.ravel())
        cols.append(c.ravel())
        vals.append(np.broadcast_to(np.asarray(v, dtype=float), r.shape).ravel())

    bal = np.arange(nN).reshape(T, N, K)
    add(bal, Ivar, 1.0)
    add(bal[1:], Ivar[:-1], -1.0)
    add(bal, S, 1.0)
    add(bal[:, net.lane_from, :], X, 1.0)  # shipped out
    ok = a_x < T
    tx, ex = np.nonzero(ok)
    add(bal[a_x[tx, ex], net.lane_to[ex]], X[tx, ex], -1.0)  # arrives (lead 0: same period)
    tu, iu = np.nonzero(a_u < T)
    add(bal[a_u[tu, iu], iu], U[tu, iu], -1.0)
    b_eq = np.zeros(nN)
    b_eq[bal[0].ravel()] = net.initial_stock.ravel()
    n_eq = nN
    if net.backorder:
        bo = n_eq + np.arange(nN).reshape(T, N, K)
        add(bo, Bk, 1.0)
        add(bo[1:], Bk[:-1], -1.0)
        add(bo, S, 1.0)
        b_eq = np.concatenate([b_eq, demand.ravel()])
        n_eq += nN
    A_eq = sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n_eq, nv))
    # ---- inequality rows: shipping from H[t], lane capacity (K > 1), node storage --------------
    rows, cols, vals = [], [], []
    ship = np.arange(nN).reshape(T, N, K)
    add(ship[:, net.lane_from, :], X, 1.0)
    add(ship[1:], Ivar[:-1], -1.0)
    st = (a_x < T) & (lead_e[None] > 0)
    tx, ex = np.nonzero(st)
    add(ship[a_x[tx, ex], net.lane_to[ex]], X[tx, ex], -1.0)
    st = (a_u < T) & (lead_time > 0)
    tu, iu = np.nonzero(st)
    add(ship[a_u[tu, iu], iu], U[tu, iu], -1.0)
    b_ub = [np.zeros(nN)]
    b_ub[0][ship[0].ravel()] = net.initial_stock.ravel()
    n_ub = nN
    if K > 1:
        finite = np.flatnonzero(np.isfinite(net.lane_cap))
        if finite.size:
            lc = n_ub + np.arange(T * finite.size).reshape(T, finite.size)
            add(lc[:, :, None], X[:, finite, :], 1.0)
            b_ub.append(np.broadcast_to(net.lane_cap[finite], (T, finite.size)).ravel())
            n_ub += T * finite.size
    capped = np.flatnonzero(np.isfinite(net.capacity))
    if capped.size:
        pos = -np.ones(N, dtype=int)
        pos[capped] = np.arange(capped.size)
        nc = n_ub + np.arange(T * capped.size).reshape(T, capped.size)
        # I[t-1] (all SKUs)
        add(nc[1:, :, None], Ivar[:-1, capped, :], 1.0)
        # flows into a capped node count from their shipping period t to min(arrival, T-1)
        for var, dest, arr in (
            (X, np.broadcast_to(net.lane_to[None], (T, E)), a_x),
            (U, np.broadcast_to(np.arange(N)[None], (T, N)), a_u),
        ):
            ts, js = np.nonzero(pos[dest] >= 0)
            if ts.size == 0:
                continue
            last = np.minimum(arr[ts, js], T - 1)
            span = last - ts + 1
            rep_t = np.repeat(ts, span) + (np.arange(span.sum()) - np.repeat(np.cumsum(span) - span, span))
            rep_j = np.repeat(js, span)
            rep_src = np.repeat(ts, span)
            r = nc[rep_t, pos[dest[rep_src, rep_j]]]
            add(r[:, None], var[rep_src, rep_j][:, :], 1.0)
        rhs = np.broadcast_to(net.capacity[capped], (T, capped.size)).copy()
        rhs[0] -= net.initial_stock[capped].sum(axis=1)
        b_ub.append(rhs.ravel())
        n_ub += T * capped.size
    A_ub = sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n_ub, nv))
    # ---- objective (periods >= warm-up) --------------------------------------------------------
    c = np.zeros(nv)
    live = (tt >= w).astype(float)  # [T]
    c[Ivar] = live[:, None, None] * net.holding[None]
    unit_x = net.lane_unit.copy()
    c[X] = live[:, None, None] * unit_x[None, :, None]
    c[U] = live[:, None, None] * net.order_unit
    const = 0.0
    if net.backorder:
        c[Bk] = live[:, None, None] * net.penalty[None]
    else:
        c[S] = -live[:, None, None] * net.penalty[None]
        const = float((live[:, None, None] * net.penalty[None] * demand).sum())
    if net.pipeline_holding:
        # periods counted in transit: max(t, w) .. min(a, T) - 1
        n_x = np.maximum(np.minimum(a_x, T) - np.maximum(tt[:, None], w), 0)
        c[X] += (n_x[:, :, None] * net.holding[net.lane_from][None]) * (lead_e[None, :, None] > 0)
        n_u = np.maximum(np.minimum(a_u, T) - np.maximum(tt[:, None], w), 0)
        c[U] += n_u[:, :, None] * net.supplier_holding
    res = linprog(
        c,
        A_ub=A_ub,
        b_ub=np.concatenate(b_ub),
        A_eq=A_eq,
        b_eq=b_eq,
        bounds=np.stack([lo, hi], axis=1),
        method="highs",
    )
    if res.status != 0:
        raise RuntimeError(f"hindsight LP failed: {res.message}")
    return (float(res.fun) + const) / (T - w), nv


def exogenous(net: Network, episodes: int, seed: int) -> Exogenous:
    """The demand and lead-time paths ``rollout(net, policy, episodes, seed)`` uses (episode e keyed seed + e)."""
    env = BatchedInventoryEnv(net, episodes, seed=seed)
    env.reset(observe=False)
    assert env.exo is not None
    return env.exo


def hindsight_bound(scenario: Scenario | Network, episodes: int, seed: int = 0) -> BoundResult:
    """Perfect-information lower bound over the paths of ``rollout(net, policy, episodes, seed)``."""
    if episodes < 1:
        raise ValueError(f"episodes: must be >= 1, got {episodes}")
    net = scenario if isinstance(scenario, Network) else compile_network(scenario)
    t0 = time.perf_counter()
    exo = exogenous(net, episodes, seed)
    per = np.array([episode_lp(net, exo.demand[e], exo.lead_time[e])[0] for e in range(episodes)])
    m, ci = mean_ci95(per)
    return BoundResult(per_episode=per, total_cost=m, total_cost_ci95=ci, seconds=time.perf_counter() - t0)
