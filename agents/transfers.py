"""Lateral transfer (transshipment) policies, combinable with any replenishment policy.

A transfer policy maps a batch of states and the orders just decided to transfers ``[B, E, K]`` on the
network's *lateral* lanes (lanes that are not some node's upstream source lane). Every policy:

- ships from a sender at most its on-hand minus what its children asked for this period (so transfers
  never exceed on-hand, and never starve downstream orders);
- respects lane capacity (shared by SKUs), receiver storage room, and disruptions (no lane touching a
  disrupted node ships);
- ships only where it pays: unit cost x q + fixed cost < expected shortage penalty avoided,
  ``p_i (E[(D - y)+] - E[(D - y - q)+])`` with D the receiver's demand over the policy's horizon
  (normal approximation, :func:`invnet.agents.analytic.expected_shortage`), y its projected stock.

Quantities are whole units. Projections: the receiver's stock when a transfer on lane e (lead time l)
arrives is ``y_e = on_hand - backlog + (arrivals by t+l) - mu l``; mu and sigma are the node's current
mean demand per period (own + downstream) and its standard deviation.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import numpy as np
from invnet.agents import analytic
from invnet.envs.core import State
from invnet.envs.network import Network


def _rows(x: np.ndarray | float) -> np.ndarray:
    """Scalar or per-row ``[B]`` parameter -> shape broadcastable to ``[B, *, K]``."""
    return np.asarray(x, dtype=float).reshape(-1, 1, 1)


def _param(value: Any, name: str, default: float, low: float = 0.0) -> np.ndarray:
    """A scalar transfer parameter (or ``[B]`` per-row array for tuning); ValueError naming it when invalid."""
    if value is None:
        value = default
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"transfer.{name}: expected a number, got {value!r}") from None
    if arr.ndim > 1 or not np.all(np.isfinite(arr)) or np.any(arr < low):
        raise ValueError(f"transfer.{name}: expected a finite number >= {low:g}, got {value!r}")
    return arr


def _scalar(x: np.ndarray) -> float | list[float]:
    return float(x) if x.ndim == 0 else [float(v) for v in x]


class TransferBase:
    """Shared projections and allocation. Subclasses implement :meth:`transfers`."""

    name = "none"

    def __init__(self, net: Network) -> None:
        self.net = net
        self.lat = np.flatnonzero(~net.is_source_lane)  # [El] lateral lane indices
        _, sd, _ = analytic.node_demand_moments(net)
        self.sd = sd  # [N, K] per-period demand standard deviation
        self.members = net.echelon_members.astype(float)

    @cached_property
    def _out_lat(self) -> np.ndarray:
        """[El, N] sender incidence of lateral lanes."""
        return self.net.lane_out_matrix[self.lat]

    @cached_property
    def _in_lat(self) -> np.ndarray:
        return self.net.lane_in_matrix[self.lat]

    def rate(self, t: int) -> np.ndarray:
        """[N, K] mean demand per period through each node at period t (own + downstream)."""
        tt = min(t, self.net.periods - 1)
        return self.members @ self.net.mean_demand[tt]

    def available(self, state: State, orders: np.ndarray) -> np.ndarray:
        """[B, N, K] on-hand a node can send: on-hand minus its children's orders this period."""
        net = self.net
        child = np.zeros_like(state.on_hand)
        if net.n_lanes:
            src = net.is_source_lane.astype(float)[:, None]  # [E, 1]
            lane_order = orders[:, net.lane_to, :] * src[None]  # [B, E, K]
            child = np.einsum("bek,en->bnk", lane_order, net.lane_out_matrix)
        return np.maximum(state.on_hand - child, 0.0)

    def receiver_position(self, state: State, rate: np.ndarray) -> np.ndarray:
        """[B, El, K] projected stock of each lateral lane's receiver when a transfer sent now arrives."""
        net = self.net
        lead = net.lane_lead[self.lat]  # [El]
        cum = np.concatenate([np.zeros((*state.pipeline.shape[:3], 1)), np.cumsum(state.pipeline, axis=3)], axis=3)
        to = net.lane_to[self.lat]
        idx = np.minimum(lead, cum.shape[3] - 1)[None, :, None, None]  # [1, El, 1, 1]
        cum_to = cum[:, to]  # [B, El, K, P+1]
        arrivals = np.take_along_axis(cum_to, np.broadcast_to(idx, (*cum_to.shape[:3], 1)), axis=3)[..., 0]
        net_stock = (state.on_hand - state.backlog)[:, to, :]
        return net_stock + arrivals - rate[to][None] * lead[None, :, None]

    def room(self, state: State, orders: np.ndarray) -> np.ndarray:
        """[B, N] storage room left after this period's inbound orders (inf where uncapped)."""
        net = self.net
        held = state.on_hand.sum(axis=2) + state.pipeline.sum(axis=(2, 3)) + orders.sum(axis=2)
        return np.maximum(net.capacity[None, :] - held, 0.0)

    def lane_open(self, t: int) -> np.ndarray:
        """[El] False where either end of the lane is disrupted at t."""
        d = self.net.disrupted[min(t, self.net.periods - 1)]
        return ~(d[self.net.lane_from[self.lat]] | d[self.net.lane_to[self.lat]])

    def allocate(
        self, give: np.ndarray, need_lane: np.ndarray, need_node: np.ndarray, room: np.ndarray, t: int
    ) -> np.ndarray:
        """[B, El, K] quantities: senders split ``give`` [B,N,K] over lanes in proportion to ``need_lane``;
        receivers take at most ``need_node`` [B,N,K] and ``room`` [B,N]; lane capacity; whole units."""
        net = self.net
        need_lane = need_lane * self.lane_open(t)[None, :, None]
        out_tot = np.einsum("bek,en->bnk", need_lane, self._out_lat)  # [B, N, K]
        frm = net.lane_from[self.lat]
        to = net.lane_to[self.lat]
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(out_tot[:, frm] > 0, need_lane / out_tot[:, frm], 0.0)
        q = np.minimum(need_lane, give[:, frm] * share)
        in_tot = np.einsum("bek,en->bnk", q, self._in_lat)
        with np.errstate(divide="ignore", invalid="ignore"):
            f_need = np.where(in_tot > need_node, need_node / np.where(in_tot > 0, in_tot, 1.0), 1.0)
            in_all = in_tot.sum(axis=2)
            f_room = np.where(in_all > room, room / np.where(in_all > 0, in_all, 1.0), 1.0)
        q = q * f_need[:, to] * f_room[:, to, None]
        cap = net.lane_cap[self.lat]
        tot = q.sum(axis=2)
        with np.errstate(divide="ignore", invalid="ignore"):
            f_cap = np.where(tot > cap[None], cap[None] / np.where(tot > 0, tot, 1.0), 1.0)
        return np.floor(q * f_cap[:, :, None] + 1e-9)

    def pays(self, q: np.ndarray, pos: np.ndarray, rate: np.ndarray, horizon: np.ndarray) -> np.ndarray:
        """[B, El, K] q where the expected penalty avoided exceeds the lane's unit + fixed cost, else 0.

        Avoided penalty = p_i (E[(D - y)+] - E[(D - y - q)+]), D ~ Normal(mu_i H, sigma_i sqrt(l + H)) the
        receiver's demand over the horizon H after arrival (Tagaras 1989's cost test, normal approximation).
        """
        net = self.net
        to = net.lane_to[self.lat]
        lead = net.lane_lead[self.lat][None, :, None]
        H = np.maximum(_rows(horizon), 1.0)
        mean = rate[to][None] * H
        sd = self.sd[to][None] * np.sqrt(lead + H)
        p = net.penalty[to][None]
        avoided = p * (analytic.expected_shortage(pos, mean, sd) - analytic.expected_shortage(pos + q, mean, sd))
        qt = q.sum(axis=2, keepdims=True)
        cost = net.lane_unit[self.lat][None, :, None] * q + net.lane_fixed[self.lat][None, :, None] * (
            q / np.where(qt > 0, qt, 1.0)
        )
        ok = (avoided.sum(axis=2, keepdims=True) > cost.sum(axis=2, keepdims=True)) & (q > 0)
        return np.where(ok, q, 0.0)

    def full(self, q_lat: np.ndarray) -> np.ndarray:
        """Lateral-lane quantities [B, El, K] -> all lanes [B, E, K]."""
        out = np.zeros((q_lat.shape[0], self.net.n_lanes, self.net.n_skus))
        out[:, self.lat] = q_lat
        return out

    def transfers(self, state: State, orders: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


class ThresholdTransfers(TransferBase):
    """Reactive threshold transfers (Tagaras 1989).

    A sender keeps ``hold_back`` periods of its mean demand; a receiver whose projected stock at arrival
    is below ``trigger`` periods of its demand asks for the difference; a lane ships only when its
    cost is below the expected penalty avoided over ``trigger`` periods.
    """

    name = "threshold"

    def __init__(self, net: Network, hold_back: Any = None, trigger: Any = None) -> None:
        super().__init__(net)
        self.hold_back = _param(hold_back, "hold_back", 1.0)
        self.trigger = _param(trigger, "trigger", 1.0)

    def transfers(self, state: State, orders: np.ndarray) -> np.ndarray:
        B = state.batch_size
        if self.lat.size == 0:
            return np.zeros((B, self.net.n_lanes, self.net.n_skus))
        rate = self.rate(state.t)
        give = np.maximum(self.available(state, orders) - _rows(self.hold_back) * rate[None], 0.0)
        pos = self.receiver_position(state, rate)
        to = self.net.lane_to[self.lat]
        need_lane = np.maximum(_rows(self.trigger) * rate[to][None] - pos, 0.0)
        need_max = np.zeros_like(give)
        for j, e in enumerate(to):  # few lanes; keeps the largest ask per receiver
            need_max[:, e] = np.maximum(need_max[:, e], need_lane[:, j])
        q = self.allocate(give, need_lane, need_max, self.room(state, orders), state.t)
        return self.full(self.pays(q, pos, rate, self.trigger))

    def params(self) -> dict[str, Any]:
        return {"hold_back": _scalar(self.hold_back), "trigger": _scalar(self.trigger)}


class TIETransfers(TransferBase):
    """Transshipment inventory equalisation (Banerjee, Burton & Banerjee 2003).

    Within each group of nodes linked by lateral lanes, when some node's days of supply
    (net stock / mean demand) fall below ``trigger``, stock moves from nodes above the pooled days of
    supply ``sum(x) / sum(mu)`` to nodes below it, where it pays.
    """

    name = "tie"

    def __init__(self, net: Network, trigger: Any = None) -> None:
        super().__init__(net)
        self.trigger = _param(trigger, "trigger", 1.0)
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        N = net.n_nodes
        frm, to = net.lane_from[self.lat], net.lane_to[self.lat]
        adj = coo_matrix((np.ones(len(frm)), (frm, to)), shape=(N, N))
        ncomp, label = connected_components(adj, directed=True, connection="weak")
        self.group = np.zeros((ncomp, N))  # [G, N]
        self.group[label, np.arange(N)] = 1.0

    def transfers(self, state: State, orders: np.ndarray) -> np.ndarray:
        B = state.batch_size
        if self.lat.size == 0:
            return np.zeros((B, self.net.n_lanes, self.net.n_skus))
        rate = self.rate(state.t)  # [N, K]
        x = self.available(state, orders) - state.backlog  # [B, N, K] net stock now
        g = self.group
        pooled = np.einsum("gn,bnk->bgk", g, x) / np.maximum(g @ rate, 1e-9)[None]  # [B, G, K] days of supply
        with np.errstate(divide="ignore", invalid="ignore"):
            dos = np.where(rate[None] > 0, x / np.where(rate > 0, rate, 1.0)[None], np.inf)
        min_dos = np.stack([np.where(g[c][None, :, None] > 0, dos, np.inf).min(axis=1) for c in range(g.shape[0])], 1)
        active = (min_dos < _rows(self.trigger)).astype(float)  # [B, G, K]
        target = np.einsum("gn,bgk->bnk", g, pooled) * rate[None]
        act_node = np.einsum("gn,bgk->bnk", g, active)
        excess = np.floor(np.maximum(x - target, 0.0)) * act_node
        short = np.maximum(target - x, 0.0) * act_node
        to = self.net.lane_to[self.lat]
        q = self.allocate(excess, short[:, to], short, self.room(state, orders), state.t)
        pos = self.receiver_position(state, rate)
        return self.full(self.pays(q, pos, rate, np.maximum(self.trigger, 1.0)))

    def params(self) -> dict[str, Any]:
        return {"trigger": _scalar(self.trigger)}


class MinCostTransfers(TransferBase):
    """Min-cost-flow rebalancing each period, solved as one LP over the batch (HiGHS via scipy).

    Nodes are supply (giving stock raises their expected shortage) and demand (receiving lowers it);
    each node's expected shortage cost over ``horizon`` periods, ``p E[(D_H - y)+]``, is convex in its
    stock y, so it is linearised in ``segments`` pieces of width ~ sigma_H / 2 on both sides of the
    projection. Arc cost = lane unit cost; the LP minimises lane cost + expected shortage cost, so a
    unit moves only when the shortage cost it avoids exceeds the transfer cost plus the shortage cost
    it creates at the sender. Constraints: sender on-hand (minus children's orders), lane capacity,
    receiver room. Fixed lane costs: after the LP a lane whose saving is below its fixed cost is dropped.
    ``margin`` (>= 0, per unit) is added to every lane's unit cost: the saving a move must clear (tuned;
    large values switch transfers off).
    (Min-cost-flow formulation: Paterson, Kiesmüller, Teunter & Glazebrook 2011, sec. 4.)
    """

    name = "mincost"

    def __init__(self, net: Network, horizon: Any = None, margin: Any = None, segments: int = 8) -> None:
        super().__init__(net)
        self.horizon = _param(horizon, "horizon", 1.0, low=1.0)
        self.margin = _param(margin, "margin", 1.0)
        if not isinstance(segments, int) or segments < 1:
            raise ValueError(f"transfer.segments: expected an integer >= 1, got {segments!r}")
        self.segments = segments

    @cached_property
    def _lp_templates(self) -> tuple[Any, Any]:
        """One batch row's constraint matrices (equality: node balance; inequality: stock, room, lane cap)."""
        from scipy import sparse

        net = self.net
        N, K, M = net.n_nodes, net.n_skus, self.segments
        El = self.lat.size
        frm, to = net.lane_from[self.lat], net.lane_to[self.lat]
        # variables per row: x [El, K], r [N, K, M], g [N, K, M]
        nx, nr = El * K, N * K * M
        V = nx + 2 * nr
        xi = np.arange(nx).reshape(El, K)
        ri = nx + np.arange(nr).reshape(N, K, M)
        gi = nx + nr + np.arange(nr).reshape(N, K, M)
        # equality per (n, k): in - out - sum r + sum g = 0
        eq_r, eq_c, eq_v = [], [], []
        for j in range(El):
            for k in range(K):
                eq_r += [to[j] * K + k, frm[j] * K + k]
                eq_c += [xi[j, k], xi[j, k]]
                eq_v += [1.0, -1.0]
        nn, kk, mm = np.meshgrid(np.arange(N), np.arange(K), np.arange(M), indexing="ij")
        eq_r += list((nn * K + kk).ravel()) * 2
        eq_c += list(ri[nn, kk, mm].ravel()) + list(gi[nn, kk, mm].ravel())
        eq_v += [-1.0] * nr + [1.0] * nr
        A1 = sparse.csr_matrix((eq_v, (eq_r, eq_c)), shape=(N * K, V))
        # inequalities: out(n,k) <= avail; sum_k in(n) <= room; sum_k x_e <= cap (K > 1)
        ub_r, ub_c, ub_v = [], [], []
        for j in range(El):
            for k in range(K):
                ub_r += [frm[j] * K + k, N * K + to[j]]
                ub_c += [xi[j, k], xi[j, k]]
                ub_v += [1.0, 1.0]
                if K > 1:
                    ub_r.append(N * K + N + j)
                    ub_c.append(xi[j, k])
                    ub_v.append(1.0)
        n_ub = N * K + N + (El if K > 1 else 0)
        U1 = sparse.csr_matrix((ub_v, (ub_r, ub_c)), shape=(n_ub, V))
        return A1, U1

    def _node_position(self, state: State, orders: np.ndarray, H: np.ndarray) -> np.ndarray:
        """[B, N, K] on-hand available now - backlog + arrivals in the next H-1 periods."""
        cum = np.concatenate([np.zeros((*state.pipeline.shape[:3], 1)), np.cumsum(state.pipeline, axis=3)], axis=3)
        h_idx = np.clip(np.floor(H).astype(int) - 1, 0, cum.shape[3] - 1)  # [B or 1]
        h_idx = np.broadcast_to(h_idx.reshape(-1), (state.batch_size,))
        arrivals = cum[np.arange(state.batch_size), ..., h_idx]  # [B, N, K]
        return self.available(state, orders) - state.backlog + arrivals

    def transfers(self, state: State, orders: np.ndarray) -> np.ndarray:
        from scipy import sparse
        from scipy.optimize import linprog

        net = self.net
        B, N, K, M = state.batch_size, net.n_nodes, net.n_skus, self.segments
        El = self.lat.size
        zero = np.zeros((B, net.n_lanes, K))
        if El == 0:
            return zero
        rate = self.rate(state.t)  # [N, K]
        H = np.maximum(_rows(self.horizon), 1.0)  # [B|1, 1, 1]
        Hb = np.broadcast_to(H, (B, 1, 1))
        y = self._node_position(state, orders, Hb[:, 0, 0])  # [B, N, K]
        mean = rate[None] * Hb
        sd = self.sd[None] * np.sqrt(Hb)
        w = np.maximum(np.ceil(sd / 2.0), 1.0)  # [B, N, K] segment width (units)
        p = net.penalty[None]
        steps = np.arange(M + 1)[None, None, None, :]  # [1,1,1,M+1]
        es_up = analytic.expected_shortage(y[..., None] + steps * w[..., None], mean[..., None], sd[..., None])
        es_dn = analytic.expected_shortage(y[..., None] - steps * w[..., None], mean[..., None], sd[..., None])
        gain = p[..., None] * (es_up[..., :-1] - es_up[..., 1:]) / w[..., None]  # [B, N, K, M] per unit received
        loss = p[..., None] * (es_dn[..., 1:] - es_dn[..., :-1]) / w[..., None]  # per unit given
        avail = self.available(state, orders)  # [B, N, K]
        room = self.room(state, orders)  # [B, N]
        open_ = self.lane_open(state.t)
        margin = np.broadcast_to(np.asarray(self.margin, dtype=float).reshape(-1), (B,))  # [B]
        unit = net.lane_unit[self.lat]
        cap = np.where(open_, net.lane_cap[self.lat], 0.0)
        # rows worth solving: some node gains more than the cheapest lane costs
        worth = (gain[..., 0].max(axis=(1, 2)) > unit.min() + margin + 1e-9) & (avail.sum(axis=(1, 2)) > 0)
        rows = np.flatnonzero(worth)
        if rows.size == 0:
            return zero
        R = rows.size
        frm, to = net.lane_from[self.lat], net.lane_to[self.lat]
        nx, nr = El * K, N * K * M
        V = nx + 2 * nr
        A1, U1 = self._lp_templates
        eye = sparse.identity(R, format="csr")
        A_eq = sparse.kron(eye, A1, format="csr")
        A_ub = sparse.kron(eye, U1, format="csr")
        room_r = np.where(np.isfinite(room[rows]), room[rows], 1e12)
        b_ub_parts = [avail[rows].reshape(R, N * K), room_r]
        if K > 1:
            b_ub_parts.append(np.broadcast_to(np.where(np.isfinite(cap), cap, 1e12), (R, El)))
        b_ub = np.concatenate(b_ub_parts, axis=1).ravel()
        c = np.concatenate(
            [
                (unit[None, :, None] + margin[rows, None, None] + np.zeros((R, El, K))).reshape(R, nx),
                -gain[rows].reshape(R, nr),
                loss[rows].reshape(R, nr),
            ],
            axis=1,
        ).ravel()
        xcap = np.minimum(np.where(np.isfinite(cap), cap, 1e12)[None, :, None], avail[rows][:, frm, :])
        wr = np.broadcast_to(w[rows][..., None], (R, N, K, M)).reshape(R, nr)
        ub = np.concatenate([xcap.reshape(R, nx), wr, wr], axis=1).ravel()
        res = linprog(
            c,
            A_ub=A_ub,
            b_ub=b_ub,
            A_eq=A_eq,
            b_eq=np.zeros(R * N * K),
            bounds=np.stack([np.zeros_like(ub), ub], 1),
            method="highs",
        )
        if res.status != 0:  # pragma: no cover - the LP is always feasible (all zero)
            return zero
        x = np.floor(res.x.reshape(R, V)[:, :nx].reshape(R, El, K) + 1e-6)
        # per-lane fixed-cost test on the saving of that lane alone
        if np.any(net.lane_fixed[self.lat] > 0):
            ya, ma, sa = y[rows], mean[rows], sd[rows]
            q = x
            recv = p[:, to] * (
                analytic.expected_shortage(ya[:, to], ma[:, to], sa[:, to])
                - analytic.expected_shortage(ya[:, to] + q, ma[:, to], sa[:, to])
            )
            send = p[:, frm] * (
                analytic.expected_shortage(ya[:, frm] - q, ma[:, frm], sa[:, frm])
                - analytic.expected_shortage(ya[:, frm], ma[:, frm], sa[:, frm])
            )
            saving = (recv - send - (unit[None, :, None] + margin[rows, None, None]) * q).sum(axis=2)
            x = np.where((saving > net.lane_fixed[self.lat][None])[:, :, None], x, 0.0)
        out = np.zeros((B, El, K))
        out[rows] = x
        return self.full(out)

    def params(self) -> dict[str, Any]:
        return {"horizon": _scalar(self.horizon), "margin": _scalar(self.margin), "segments": self.segments}


TRANSFERS: dict[str, type] = {
    "threshold": ThresholdTransfers,
    "tie": TIETransfers,
    "mincost": MinCostTransfers,
}
