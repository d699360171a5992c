"""Per-agent observations and action decoding, as pure functions over a batch of core states.

Used by the PettingZoo env, the batched env, the SB3/MAPPO trainers and the policy server, so a
policy sees exactly the same vector wherever it runs.

Action decoding (every agent has the same ``Box(-1, 1, (K * (1 + M),))``, M = most outbound lanes
of any node; reshaped to ``[K, 1 + M]``, ``u = (a + 1) / 2``):

- column 0, ``quantity`` mode: order = ``u * max_order[node]``;
  ``order_up_to`` mode: target inventory position ``u * max_level[node]``, order = ``max(0, target - IP)``;
- column 1 + j: transfer on the node's j-th outbound lane (scenario order) = ``u * max_transfer[lane]``;
  padded columns (nodes with fewer lanes) are masked and never ship.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from invnet.envs.core import Action, State
from invnet.envs.network import Network


def _per_node(value: float | dict[str, float] | None, net: Network, default: np.ndarray) -> np.ndarray:
    if value is None:
        return default
    if isinstance(value, dict):
        return np.array([value.get(n, d) for n, d in zip(net.node_ids, default, strict=True)], dtype=float)
    return np.full(net.n_nodes, float(value))


@dataclass(frozen=True, eq=False)
class AgentSpaces:
    """Observation layout and action decoding of one network (per-agent, padded to equal size)."""

    net: Network
    action_mode: str = "quantity"
    visibility: str = "neighbours"

    # ---- bounds ---------------------------------------------------------------------------
    @cached_property
    def max_order(self) -> np.ndarray:
        """[N] order bound per period (default ceil(4 x throughput per period))."""
        a = self.net.scenario.agents
        return _per_node(a.max_order, self.net, np.ceil(4.0 * self.net.scale))

    @cached_property
    def max_level(self) -> np.ndarray:
        """[N] order-up-to bound (default 2 x throughput x (lead time + 1) + 10)."""
        a = self.net.scenario.agents
        lt = self.net.lead_time_mean
        return _per_node(a.max_level, self.net, np.ceil(2.0 * self.net.scale * (lt + 1.0) + 10.0))

    @cached_property
    def max_transfer(self) -> np.ndarray:
        """[E] transfer bound per lane and period (default min(lane capacity, 2 x sender throughput))."""
        a = self.net.scenario.agents
        base = (
            np.full(self.net.n_lanes, a.max_transfer)
            if a.max_transfer
            else np.ceil(2.0 * self.net.scale[self.net.lane_from])
        )
        return np.minimum(base, self.net.lane_cap)

    @cached_property
    def lane_slots(self) -> np.ndarray:
        """[N, M] lane index of each agent's outbound slot, -1 for padding."""
        M = self.net.max_out_lanes
        out = -np.ones((self.net.n_nodes, M), dtype=int)
        for i, lanes in enumerate(self.net.outbound):
            out[i, : len(lanes)] = lanes
        return out

    @property
    def action_dim(self) -> int:
        return self.net.n_skus * (1 + self.net.max_out_lanes)

    # ---- action decoding --------------------------------------------------------------------
    @cached_property
    def _decode_index(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Flat action-vector indices of every order [N, K] and lane transfer [E, K], and half the bounds."""
        net = self.net
        N, K, M = net.n_nodes, net.n_skus, net.max_out_lanes
        width = K * (1 + M)
        k = np.arange(K)
        order_idx = np.arange(N)[:, None] * width + k[None, :] * (1 + M)  # [N, K]
        tr_idx = np.zeros((net.n_lanes, K), dtype=int)
        for n, lanes in enumerate(net.outbound):
            for j, e in enumerate(lanes):
                tr_idx[e] = n * width + k * (1 + M) + 1 + j
        half_order = (self.max_level if self.action_mode == "order_up_to" else self.max_order) / 2.0
        return order_idx, tr_idx, half_order[None, :, None], (self.max_transfer / 2.0)[None, :, None]

    def decode(self, actions: np.ndarray, state: State) -> Action:
        """Map per-agent actions ``[B, N, action_dim]`` in [-1, 1] to quantities (module docstring)."""
        net = self.net
        B, N = state.batch_size, net.n_nodes
        a = np.asarray(actions, dtype=float)
        if a.shape != (B, N, self.action_dim):
            raise ValueError(f"actions: expected shape {(B, N, self.action_dim)}, got {a.shape}")
        peak = np.abs(a).max() if a.size else 0.0
        if not peak <= 1.0:  # also catches NaN
            if not np.all(np.isfinite(a)):
                raise ValueError("actions: contain NaN or infinite values")
            if peak > 1.0 + 1e-6:
                raise ValueError("actions: must lie in the action space [-1, 1]")
            a = np.clip(a, -1.0, 1.0)
        order_idx, tr_idx, half_order, half_tr = self._decode_index
        flat = a.reshape(B, -1)
        # u = (a + 1) / 2 in [0, 1]; quantity = u * bound = (a + 1) * bound / 2
        first = (flat[:, order_idx] + 1.0) * half_order  # [B, N, K]
        if self.action_mode == "order_up_to":
            orders = np.maximum(first - state.inventory_position, 0.0)
        else:
            orders = first
        transfers = (flat[:, tr_idx] + 1.0) * half_tr  # [B, E, K]
        return Action(orders=orders, transfers=transfers)

    def encode(self, action: Action, state: State) -> np.ndarray:
        """Inverse of :meth:`decode` (quantities beyond the bounds saturate at 1)."""
        net = self.net
        B, N, K, M = state.batch_size, net.n_nodes, net.n_skus, net.max_out_lanes
        u = np.zeros((B, N, K, 1 + M))
        if self.action_mode == "order_up_to":
            lvl = action.orders + state.inventory_position
            u[..., 0] = lvl / self.max_level[None, :, None]
        else:
            u[..., 0] = action.orders / np.maximum(self.max_order[None, :, None], 1e-9)
        slots = self.lane_slots
        ii, jj = np.nonzero(slots >= 0)
        if ii.size:
            lanes = slots[ii, jj]
            ut = np.zeros((B, N, M, K))
            ut[:, ii, jj, :] = action.transfers[:, lanes, :] / np.maximum(self.max_transfer[lanes][None, :, None], 1e-9)
            u[..., 1:] = ut.transpose(0, 1, 3, 2)
        return (np.clip(u, 0.0, 1.0) * 2.0 - 1.0).reshape(B, N, self.action_dim)

    # ---- observations -----------------------------------------------------------------------
    @cached_property
    def season_period(self) -> float:
        s = self.net.scenario
        for node in s.nodes:
            for sku in s.skus:
                spec = s.demand_spec(node.id, sku)
                if spec is not None and spec.seasonality is not None:
                    return spec.seasonality.period
        return 52.0

    @cached_property
    def node_features(self) -> np.ndarray:
        """[N, F] static features: cost ratios, lead time, supplier-fed flag, capacity, one-hot id, lane slots."""
        net = self.net
        N, M, P = net.n_nodes, net.max_out_lanes, net.pipeline_len
        pen = np.maximum(net.penalty.mean(axis=1), 1e-9)
        cap = np.where(np.isfinite(net.capacity), net.capacity / (10.0 * net.scale), 1.0)
        feats = [
            (net.holding.mean(axis=1) / pen)[:, None],
            (net.lead_time_mean / P)[:, None],
            net.is_supplier_fed.astype(float)[:, None],
            np.minimum(cap, 1.0)[:, None],
            (np.log1p(net.scale) / 10.0)[:, None],
            np.eye(N),
        ]
        slots = self.lane_slots
        mask = (slots >= 0).astype(float)
        safe = np.maximum(slots, 0)
        lane_lt = np.where(slots >= 0, net.lane_lead[safe] / P, 0.0)
        lane_c = np.where(slots >= 0, net.lane_unit[safe] / pen[:, None], 0.0)
        if M:
            feats += [mask, lane_lt, lane_c]
        return np.concatenate(feats, axis=1)

    @cached_property
    def _node_features32(self) -> np.ndarray:
        return self.node_features.astype(np.float32)

    @property
    def own_dim(self) -> int:
        net = self.net
        return net.n_skus * (4 + net.pipeline_len + net.scenario.agents.demand_history)

    @property
    def visibility_dim(self) -> int:
        net = self.net
        if self.visibility == "own":
            return 0
        if self.visibility == "all":
            return net.n_nodes
        return 2 * net.max_out_lanes + 1

    @property
    def obs_dim(self) -> int:
        return self.own_dim + 3 + self.node_features.shape[1] + self.visibility_dim

    @property
    def state_dim(self) -> int:
        return self.net.n_nodes * self.own_dim + 3

    @cached_property
    def _obs_plan(self) -> dict[str, np.ndarray]:
        """Constants of :meth:`observe`: inverse scales, forecasts and visibility gather indices."""
        net = self.net
        inv = 1.0 / net.scale  # [N]
        slots = self.lane_slots
        mask = (slots >= 0).astype(float)  # [N, M]
        to = net.lane_to[np.maximum(slots, 0)] if slots.size else np.zeros(slots.shape, dtype=int)  # [N, M]
        src = net.source_node
        return {
            "inv": inv[None, :, None],  # [1, N, 1]
            "forecast": net.mean_demand * inv[None, :, None],  # [T, N, K] normalised forecast
            "to": to,
            "recv_onhand": mask * inv[:, None],  # receivers' stock / the observing node's scale
            "recv_dos": mask * inv[to],  # receivers' stock / their own scale (periods of supply)
            "src": np.maximum(src, 0),
            "src_dos": np.where(src >= 0, inv[np.maximum(src, 0)], 0.0),
        }

    def _own(self, state: State) -> np.ndarray:
        """[B, N, own_dim] own stock features normalised by the node's throughput."""
        B, N = state.batch_size, self.net.n_nodes
        p = self._obs_plan
        t = min(state.t, self.net.periods - 1)
        ip = state.on_hand + state.pipeline.sum(axis=3) - state.backlog
        forecast = np.broadcast_to(p["forecast"][t][None], state.on_hand.shape) if B > 1 else p["forecast"][t][None]
        raw = np.concatenate(
            (
                state.on_hand,
                state.backlog,
                ip,
                forecast,
                state.pipeline.reshape(B, N, -1),
                state.demand_hist.reshape(B, N, -1),
            ),
            axis=2,
        )
        raw[..., : 3 * self.net.n_skus] *= p["inv"]
        raw[..., 4 * self.net.n_skus :] *= p["inv"]
        return raw

    def _time(self, state: State) -> np.ndarray:
        ang = 2.0 * math.pi * state.t / self.season_period
        return np.array([math.sin(ang), math.cos(ang), state.t / self.net.periods])

    def observe(self, state: State, own: np.ndarray | None = None) -> np.ndarray:
        """[B, N, obs_dim] float32 per-agent observations (layout: own, time, node features, visibility)."""
        net = self.net
        B, N = state.batch_size, net.n_nodes
        out = np.empty((B, N, self.obs_dim), dtype=np.float32)
        o = self.own_dim
        f = self.node_features.shape[1]
        if own is None:  # the own block of _own(), multiplied straight into the float32 buffer
            K, p = net.n_skus, self._obs_plan
            inv = p["inv"]
            t = min(state.t, net.periods - 1)
            ip = state.on_hand + state.pipeline.sum(axis=3) - state.backlog
            lanes = ((state.on_hand, 0), (state.backlog, K), (ip, 2 * K))
            for x, at in lanes:
                np.multiply(x, inv, out=out[:, :, at : at + K], casting="unsafe")
            out[:, :, 3 * K : 4 * K] = p["forecast"][t]
            P = state.pipeline.shape[3]
            np.multiply(state.pipeline.reshape(B, N, -1), inv, out=out[:, :, 4 * K : 4 * K + K * P], casting="unsafe")
            np.multiply(state.demand_hist.reshape(B, N, -1), inv, out=out[:, :, 4 * K + K * P : o], casting="unsafe")
        else:
            out[:, :, :o] = own
        out[:, :, o : o + 3] = self._time(state)
        out[:, :, o + 3 : o + 3 + f] = self._node_features32
        v = o + 3 + f
        if self.visibility == "own":
            return out
        stock = state.on_hand.sum(axis=2) if net.n_skus > 1 else state.on_hand[:, :, 0]  # [B, N]
        p = self._obs_plan
        if self.visibility == "neighbours":
            M = net.max_out_lanes
            recv = stock[:, p["to"]]  # [B, N, M]
            np.multiply(recv, p["recv_onhand"], out=out[:, :, v : v + M], casting="unsafe")
            np.multiply(recv, p["recv_dos"], out=out[:, :, v + M : v + 2 * M], casting="unsafe")
            np.multiply(stock[:, p["src"]], p["src_dos"], out=out[:, :, v + 2 * M], casting="unsafe")
        else:  # all: every node's days of supply
            out[:, :, v:] = (stock * p["inv"][:, :, 0])[:, None, :]
        return out

    def global_state(self, state: State) -> np.ndarray:
        """[B, state_dim] float32 global state for centralised critics."""
        own = self._own(state)
        B = state.batch_size
        return np.concatenate([own.reshape(B, -1), np.broadcast_to(self._time(state), (B, 3))], axis=1).astype(
            np.float32
        )


def team_rewards(cost: np.ndarray, mode: str, weight: float) -> np.ndarray:
    """[B, N] rewards from per-node costs: team = -network cost, local = -own cost, mixed = blend."""
    team = np.repeat(-cost.sum(axis=1, keepdims=True), cost.shape[1], axis=1)
    if mode == "team":
        return team
    if mode == "local":
        return -cost
    return weight * -cost + (1.0 - weight) * team
