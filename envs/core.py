"""The simulator core: one period of B independent copies of a network, as pure array functions.

Shapes: B batch, N nodes, K SKUs, E lanes, P pipeline slots (``pipeline[..., j]`` arrives at the
start of period t+1+j), T periods. All quantities are float64 units; nothing is rounded.

Event order in period t (``../shared/domain.md``; tests pin it):

1. Arrivals due at the start of t have joined on-hand (done at the end of the previous step and at
   reset, so policies observe post-arrival stock). A disrupted node's arrivals wait in transit.
2. Every node decides an order (to the supplier or its upstream node) and one transfer per outbound lane.
3. Shipping, all senders at once from their post-arrival on-hand. Refusals, in this order, each
   counted in ``refused`` for the node that asked:
   a. disruption: a disrupted node neither ships nor receives;
   b. lane capacity: if the asks on a lane (the receiver's order + the sender's transfer) exceed its
      capacity, both are scaled by ``capacity / asks``;
   c. receiver capacity: if ``on_hand + in_transit + inbound`` would exceed the node's storage
      capacity, all its inbound asks are scaled by ``room / inbound`` (refused at decision time);
   d. sender stock (per SKU): if the asks on a sender exceed its on-hand, every ask is scaled by
      ``on_hand / asks`` (proportional rationing).
   Shipped units leave on-hand now; a lane of lead time 0 delivers before this period's demand,
   longer lead times (and supplier orders, whose lead time is drawn per order) go into the pipeline.
4. Demand is served from on-hand: backlog first (backorder mode), otherwise unmet demand is lost.
5. Costs per node: holding on end-of-period on-hand (+ in-transit units at the sender's holding
   rate when ``pipeline_holding``), shortage (lost-sale penalty per unit, or backorder cost per unit
   of end-of-period backlog), ordering (fixed per node-period with any order + per unit, plus the
   source lane's unit/fixed cost), transfer (lane unit cost + fixed cost per lane used, charged to
   the sender).
Then t advances and the next period's arrivals join on-hand.

Timing conventions that follow from this order (tests/test_core.py pins them; docs/env.md details them):

- A supplier order placed in period t with lead time L joins on-hand at the start of t+L: usable for
  demand in t+L (protection interval L+1) and shippable onward by the t+L decisions.
- A lane of lead time 0 delivers after every sender has shipped: the units serve this period's demand
  but the receiver can forward them only from the next period on (senders ship from post-arrival,
  pre-shipment on-hand).
- Serial reference (Snyder & Shen Example 6.1, "order at the end of t arrives at the start of t+L"):
  an inter-stage lead time L maps to a lane of lead L-1, a retailer's supplier lead time to L-1, and a
  supplier-fed stage that only forwards stock keeps L. Holding is charged before the next period's
  shipments, so units Snyder counts in transit on an inter-stage link with L = 1 sit on the sender's
  shelf at the sender's rate (Snyder's in-transit rate). ``serial_3stage`` reproduces Snyder's
  policy-dependent optimum 17.65 plus that constant 20 (4 x 5 per period).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np
from invnet.envs.network import Network


@dataclass(frozen=True)
class State:
    """Network state at decision time of period ``t`` (after arrivals)."""

    t: int
    on_hand: np.ndarray  # [B, N, K] units physically at the node
    backlog: np.ndarray  # [B, N, K] unmet demand waiting (backorder mode; 0 otherwise)
    pipeline: np.ndarray  # [B, N, K, P] units in transit to the node, slot j arrives at start of t+1+j
    pipe_rate: np.ndarray  # [B, N, K, P] holding cost per period of those in-transit units
    arrived: np.ndarray  # [B, N, K] units that joined on-hand at the start of t
    demand_hist: np.ndarray  # [B, N, K, H] last H periods' demand, most recent last

    @property
    def batch_size(self) -> int:
        return int(self.on_hand.shape[0])

    @property
    def inventory_position(self) -> np.ndarray:
        """[B, N, K] on-hand + in transit - backlog."""
        return self.on_hand + self.pipeline.sum(axis=3) - self.backlog

    def row(self, b: int) -> State:
        """The state of batch row ``b`` as a batch of one."""
        return replace(self, **{f.name: getattr(self, f.name)[b : b + 1] for f in fields(self) if f.name != "t"})


@dataclass(frozen=True)
class Action:
    """Decisions for a batch: non-negative quantities asked."""

    orders: np.ndarray  # [B, N, K] units each node orders from its source
    transfers: np.ndarray  # [B, E, K] units each lane's sender asks to ship on it


@dataclass(frozen=True)
class Exogenous:
    """Pre-drawn randomness of a batch of episodes (common random numbers)."""

    demand: np.ndarray  # [B, T, N, K]
    lead_time: np.ndarray  # [B, T, N] int supplier lead time of an order placed in period t


@dataclass(frozen=True)
class StepOutput:
    """Per-period flows and costs of one step (shapes with batch axis B)."""

    holding_cost: np.ndarray  # [B, N]
    shortage_cost: np.ndarray  # [B, N]
    order_cost: np.ndarray  # [B, N]
    transfer_cost: np.ndarray  # [B, N]
    demand: np.ndarray  # [B, N, K]
    sales: np.ndarray  # [B, N, K] units sold (backlog served + new demand served)
    served_now: np.ndarray  # [B, N, K] this period's demand served this period (fill rate)
    lost_sales: np.ndarray  # [B, N, K] (0 in backorder mode)
    backlog: np.ndarray  # [B, N, K] end-of-period backlog (0 in lost-sales mode)
    on_hand: np.ndarray  # [B, N, K] end-of-period on-hand
    in_transit: np.ndarray  # [B, N, K] end-of-period units in transit to the node
    received: np.ndarray  # [B, N, K] arrivals at the start of t + lead-time-0 inbound
    ordered: np.ndarray  # [B, N, K] order asked
    order_shipped: np.ndarray  # [B, N, K] order actually shipped (supplier or upstream)
    supplier_in: np.ndarray  # [B, N, K] units the external supplier shipped (enter the network)
    lane_shipped: np.ndarray  # [B, E, K] lateral transfer units actually shipped on each lane
    lane_flow: np.ndarray  # [B, E, K] all units on each lane (upstream orders + transfers)
    shipped_out: np.ndarray  # [B, N, K] units that left the node (upstream shipments + transfers)
    refused: np.ndarray  # [B, N, K] units asked by the node that were refused (capacity, stock, disruption)

    @property
    def cost(self) -> np.ndarray:
        """[B, N] total cost per node."""
        return self.holding_cost + self.shortage_cost + self.order_cost + self.transfer_cost


def observed_state(
    t: int, on_hand: np.ndarray, backlog: np.ndarray, pipeline: np.ndarray, demand_hist: np.ndarray
) -> State:
    """A decision-time state from observed stock (server requests, pyfunc input): nothing in transit is
    charged pipeline holding and no arrival is recorded for period ``t``."""
    return State(
        t=t,
        on_hand=on_hand,
        backlog=backlog,
        pipeline=pipeline,
        pipe_rate=np.zeros_like(pipeline),
        arrived=np.zeros_like(on_hand),
        demand_hist=demand_hist,
    )


def initial_state(net: Network, batch_size: int, history: int = 4) -> State:
    """State at decision time of period 0: initial stock, empty pipeline, no history."""
    B, N, K, P = batch_size, net.n_nodes, net.n_skus, net.pipeline_len
    on_hand = np.broadcast_to(net.initial_stock, (B, N, K)).astype(float)
    return State(
        t=0,
        on_hand=on_hand,
        backlog=np.zeros((B, N, K)),
        pipeline=np.zeros((B, N, K, P)),
        pipe_rate=np.zeros((B, N, K, P)),
        arrived=np.zeros((B, N, K)),
        demand_hist=np.broadcast_to(net.mean_demand[0][None, :, :, None], (B, N, K, history)).astype(float),
    )


def _ratio(room: np.ndarray, asked: np.ndarray) -> np.ndarray:
    """min(1, room / asked) with 1 where nothing is asked."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # discarded branches may overflow
        r = np.where(asked > room, room / np.where(asked > 0, asked, 1.0), 1.0)
    return np.clip(r, 0.0, 1.0)


class _Plan:
    """Per-network constants of :func:`step`, computed once (index arrays, flags that skip no-op stages).

    Lane -> node sums use ``np.bincount`` on precomputed flat indices rather than a matmul with the
    incidence matrix: on a busy 2-core machine OpenBLAS's threads make small matmuls 10-100x slower.
    """

    def __init__(self, net: Network) -> None:
        E = net.n_lanes
        self.N = net.n_nodes
        self.down_any = net.disrupted.any(axis=1)  # [T] any node down in period t
        self.src = np.flatnonzero(net.is_source_lane)  # lanes carrying upstream orders
        self.src_to = net.lane_to[self.src]  # their receivers
        self.has_src = self.src.size > 0
        self.sup_f = net.is_supplier_fed.astype(float)[None, :, None]  # [1, N, 1]
        self.has_sup = bool(net.is_supplier_fed.any())
        self.all_sup = bool(net.is_supplier_fed.all())
        self.lane_cap_finite = bool(np.isfinite(net.lane_cap).any())
        self.node_cap_finite = bool(np.isfinite(net.capacity).any())
        leads = np.unique(net.lane_lead)
        # (lead, lanes with that lead or None for all lanes, their receivers)
        self.lead_groups = [
            (int(lead), None if leads.size == 1 else np.flatnonzero(net.lane_lead == lead), None) for lead in leads
        ]
        self.lead_groups = [
            (lead, lanes, net.lane_to if lanes is None else net.lane_to[lanes]) for lead, lanes, _ in self.lead_groups
        ]
        self.lane_unit = net.lane_unit
        self.lane_fixed = net.lane_fixed
        self.any_fixed = bool(E and net.lane_fixed.any())
        self.any_unit = bool(E and net.lane_unit.any())
        self.sender_h = net.holding[net.lane_from] if E else np.zeros((0, net.n_skus))  # [E, K]
        self.node_idx = np.arange(self.N)[None, :]  # [1, N]
        # fixed supplier lead times (every exogenous draw equals the only value): nodes grouped by lead
        self.fixed_lt = net.fixed_lead_times
        sup_lt = net.lt_values[:, 0]
        self.sup_groups = [
            (int(lead), np.flatnonzero(net.is_supplier_fed & (sup_lt == lead)))
            for lead in np.unique(sup_lt[net.is_supplier_fed])
        ]
        self._flat: dict[tuple[int, int, int, int], np.ndarray] = {}

    def scatter(self, x: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Sum lane quantities ``x`` [B, E', K] into nodes [B, N, K]; ``idx`` [E'] is each lane's node."""
        B, E, K = x.shape
        if E == 0:
            return np.zeros((B, self.N, K))
        key = (id(idx), E, B, K)
        flat = self._flat.get(key)
        if flat is None:
            flat = ((np.arange(B)[:, None, None] * self.N + idx[None, :, None]) * K + np.arange(K)).ravel()
            self._flat[key] = flat
        return np.bincount(flat, weights=x.ravel(), minlength=B * self.N * K).reshape(B, self.N, K)


def _at_nodes(q: np.ndarray, nodes: np.ndarray, n: int) -> np.ndarray:
    """[B, n, K] zeros with ``q`` [B, len(nodes), K] placed at ``nodes``."""
    out = np.zeros((q.shape[0], n, q.shape[2]))
    out[:, nodes] = q
    return out


def _plan(net: Network) -> _Plan:
    plan = net.__dict__.get("_core_plan")
    if plan is None:
        plan = _Plan(net)
        net.__dict__["_core_plan"] = plan  # Network is frozen; cache like functools.cached_property does
    return plan


def validate_action(net: Network, action: Action, batch_size: int) -> None:
    """Raise ValueError naming the field when an action has the wrong shape, NaN or negative values."""
    for name, arr, shape in (
        ("orders", action.orders, (batch_size, net.n_nodes, net.n_skus)),
        ("transfers", action.transfers, (batch_size, net.n_lanes, net.n_skus)),
    ):
        if arr.shape != shape:
            raise ValueError(f"action.{name}: expected shape {shape}, got {arr.shape}")
        if arr.size and not arr.min() >= 0.0:  # False for NaN too
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"action.{name}: contains NaN or infinite values")
            raise ValueError(f"action.{name}: quantities must be >= 0")
        if arr.size and not np.isfinite(arr.max()):
            raise ValueError(f"action.{name}: contains NaN or infinite values")


def step(net: Network, state: State, action: Action, exo: Exogenous) -> tuple[State, StepOutput]:
    """Advance every batch row by one period (event order in the module docstring). Pure.

    Stages that cannot bind for this network (no capacities, no disruption this period, no upstream
    lanes) are skipped; the result is the same as applying them.
    """
    plan = _plan(net)
    t = state.t
    B, N, K = state.on_hand.shape
    orders = action.orders
    transfers = action.transfers
    E = transfers.shape[1]
    # (a) disruption: a disrupted sender or receiver refuses the lane entirely; a disrupted node's orders
    # are refused. Upstream orders ride their source lane.
    src_ok = None
    if plan.down_any[t]:
        up_ok = ~net.disrupted[t]  # [N]
        orders = orders * up_ok[None, :, None]
        lane_ok = (up_ok[net.lane_from] & up_ok[net.lane_to]).astype(float)  # [E]
        transfers = transfers * lane_ok[None, :, None]
        src_ok = lane_ok[plan.src][None, :, None]
    sup_order = orders if plan.all_sup else orders * plan.sup_f  # [B, N, K]
    lane_tr = transfers  # [B, E, K]
    if plan.has_src:
        src_order = orders[:, plan.src_to, :]  # [B, S, K] upstream orders on their source lanes
        if src_ok is not None:
            src_order = src_order * src_ok
        lane_order = np.zeros((B, E, K))
        lane_order[:, plan.src, :] = src_order
        lane_flow = lane_order + lane_tr
    else:
        lane_order = None
        lane_flow = lane_tr
    # (b) lane capacity, shared by SKUs and by orders + transfers
    if plan.lane_cap_finite and E:
        asks = lane_flow.sum(axis=2)  # [B, E]
        if np.any(asks > net.lane_cap[None, :]):
            f_lane = _ratio(net.lane_cap[None, :], asks)[:, :, None]  # [B, E, 1]
            lane_tr = lane_tr * f_lane
            if lane_order is not None:
                lane_order = lane_order * f_lane
            lane_flow = lane_tr if lane_order is None else lane_order + lane_tr
    # (c) receiver storage capacity: room for everything it holds or has coming
    if plan.node_cap_finite:
        inbound = plan.scatter(lane_flow, net.lane_to) + sup_order  # [B, N, K]
        room = np.maximum(net.capacity[None, :] - (state.on_hand.sum(axis=2) + state.pipeline.sum(axis=(2, 3))), 0.0)
        asked_in = inbound.sum(axis=2)  # [B, N]
        if np.any(asked_in > room):
            f_recv = _ratio(room, asked_in)  # [B, N]
            sup_order = sup_order * f_recv[:, :, None]
            f_recv_lane = f_recv[:, net.lane_to][:, :, None]
            lane_tr = lane_tr * f_recv_lane
            if lane_order is not None:
                lane_order = lane_order * f_recv_lane
            lane_flow = lane_tr if lane_order is None else lane_order + lane_tr
    # (d) sender stock, per SKU, proportional rationing
    if E:
        asks_out = plan.scatter(lane_flow, net.lane_from)  # [B, N, K]
        asks_before = asks_out if lane_flow is action.transfers else None
        over = asks_out > state.on_hand
        if over.any():
            f_node = np.where(over, state.on_hand / np.where(over, asks_out, 1.0), 1.0)  # [B, N, K] in [0, 1)
            f_send = f_node[:, net.lane_from, :]  # [B, E, K]
            lane_tr = lane_tr * f_send
            if lane_order is not None:
                lane_order = lane_order * f_send
            lane_flow = lane_tr if lane_order is None else lane_order + lane_tr
            shipped_out = asks_out * f_node
        else:
            shipped_out = asks_out
        if lane_order is not None:
            transfer_refused = plan.scatter(action.transfers - lane_tr, net.lane_from)
        elif asks_before is not None:  # no stage before rationing touched the transfers
            transfer_refused = asks_before - shipped_out
        else:
            transfer_refused = plan.scatter(action.transfers, net.lane_from) - shipped_out
        order_shipped = sup_order if lane_order is None else sup_order + plan.scatter(lane_order, net.lane_to)
        refused = np.maximum(action.orders - order_shipped, 0.0) + np.maximum(transfer_refused, 0.0)
        on_hand = np.maximum(state.on_hand - shipped_out, 0.0)
    else:
        shipped_out = np.zeros((B, N, K))
        order_shipped = sup_order
        refused = np.maximum(action.orders - order_shipped, 0.0)
        on_hand = state.on_hand.copy()

    pipeline = state.pipeline.copy()
    pipe_rate = state.pipe_rate.copy() if net.pipeline_holding else state.pipe_rate
    received = state.arrived
    for lead, lanes, to in plan.lead_groups:  # lane deliveries, grouped by lane lead time
        flow = lane_flow if lanes is None else lane_flow[:, lanes]
        q = plan.scatter(flow, to)  # [B, N, K]
        if lead == 0:
            on_hand = on_hand + q
            received = received + q
        else:
            pipeline[..., lead - 1] += q
            if net.pipeline_holding:
                h_lane = plan.sender_h if lanes is None else plan.sender_h[lanes]  # [E', K]
                pipe_rate[..., lead - 1] += plan.scatter(flow * h_lane[None], to)
    if plan.has_sup and plan.fixed_lt:  # supplier orders, fixed lead time per node
        for lead, nodes in plan.sup_groups:
            q = sup_order if nodes.size == N else sup_order[:, nodes]
            if lead == 0:
                on_hand = on_hand + q if nodes.size == N else on_hand + _at_nodes(q, nodes, N)
                received = received + q if nodes.size == N else received + _at_nodes(q, nodes, N)
            else:
                slot = pipeline[..., lead - 1]  # [B, N, K] view
                slot[:, nodes] += q
                if net.pipeline_holding:
                    rate = pipe_rate[..., lead - 1]
                    rate[:, nodes] += q * net.supplier_holding
    elif plan.has_sup:  # supplier orders: lead time drawn per order (exogenous)
        lt = exo.lead_time[:, t, :]  # [B, N]
        now = (lt == 0)[:, :, None]
        if now.any():
            on_hand = on_hand + sup_order * now
            received = received + sup_order * now
        later = sup_order * ~now  # [B, N, K]
        slot = np.maximum(lt - 1, 0)  # [B, N]
        bi = np.arange(B)[:, None]
        pipeline[bi, plan.node_idx, :, slot] += later  # one slot per (b, n): no repeated index
        if net.pipeline_holding:
            pipe_rate[bi, plan.node_idx, :, slot] += later * net.supplier_holding

    # 4. demand
    d = exo.demand[:, t]  # [B, N, K]
    if net.backorder:
        due = state.backlog + d
        sales = np.minimum(on_hand, due)
        backlog = due - sales
        served_now = np.maximum(sales - state.backlog, 0.0)
        lost = np.zeros(d.shape)
    else:
        sales = np.minimum(on_hand, d)
        lost = d - sales
        served_now = sales
        backlog = state.backlog
    on_hand = on_hand - sales

    # 5. costs [B, N]
    if K == 1:
        holding = on_hand[:, :, 0] * net.holding[None, :, 0]
        shortage = (backlog if net.backorder else lost)[:, :, 0] * net.penalty[None, :, 0]
        order_qty = order_shipped[:, :, 0]
    else:
        holding = (on_hand * net.holding[None]).sum(axis=2)
        shortage = ((backlog if net.backorder else lost) * net.penalty[None]).sum(axis=2)
        order_qty = order_shipped.sum(axis=2)
    if net.pipeline_holding:
        holding = holding + pipe_rate.sum(axis=(2, 3))
    order_cost = net.order_unit * order_qty
    if net.order_fixed:
        order_cost = order_cost + net.order_fixed * (order_qty > 1e-9)
    if E and (plan.any_unit or plan.any_fixed):
        lt_q = lane_tr.sum(axis=2, keepdims=True)  # [B, E, 1]
        if plan.any_unit:
            transfer_cost = plan.scatter(lt_q * plan.lane_unit[None, :, None], net.lane_from)[:, :, 0]
        else:
            transfer_cost = np.zeros((B, N))
        if lane_order is not None:
            lo = lane_order.sum(axis=2, keepdims=True)
            if plan.any_unit:
                order_cost = order_cost + plan.scatter(lo * plan.lane_unit[None, :, None], net.lane_to)[:, :, 0]
            if plan.any_fixed:
                lo_used = lo > 1e-9
                order_cost = order_cost + plan.scatter(lo_used * plan.lane_fixed[None, :, None], net.lane_to)[:, :, 0]
                # one fixed charge per lane used: it goes with the upstream order when the lane carries one
                tr_used = (lt_q > 1e-9) & ~lo_used
                transfer_cost = (
                    transfer_cost + plan.scatter(tr_used * plan.lane_fixed[None, :, None], net.lane_from)[:, :, 0]
                )
        elif plan.any_fixed:
            transfer_cost = (
                transfer_cost + plan.scatter((lt_q > 1e-9) * plan.lane_fixed[None, :, None], net.lane_from)[:, :, 0]
            )
    else:
        transfer_cost = np.zeros((B, N))

    out = StepOutput(
        holding_cost=holding,
        shortage_cost=shortage,
        order_cost=order_cost,
        transfer_cost=transfer_cost,
        demand=d,
        sales=sales,
        served_now=served_now,
        lost_sales=lost,
        backlog=backlog,
        on_hand=on_hand,
        in_transit=pipeline.sum(axis=3),
        received=received,
        ordered=action.orders,
        order_shipped=order_shipped,
        supplier_in=sup_order,
        lane_shipped=lane_tr,
        lane_flow=lane_flow,
        shipped_out=shipped_out,
        refused=refused,
    )

    # advance: next period's arrivals join on-hand (a disrupted node's arrivals wait in transit)
    t1 = t + 1
    hist = np.concatenate([state.demand_hist[..., 1:], d[..., None]], axis=3)
    if t1 < net.periods:
        shifted = np.empty_like(pipeline)
        shifted[..., :-1] = pipeline[..., 1:]
        shifted[..., -1] = 0.0
        if plan.down_any[t1]:
            hold = net.disrupted[t1][None, :, None]  # [1, N, 1]
            arrived = np.where(hold, 0.0, pipeline[..., 0])
            shifted[..., 0] += pipeline[..., 0] - arrived
            if net.pipeline_holding:
                w_rate = np.where(hold, pipe_rate[..., 0], 0.0)
        else:
            arrived = pipeline[..., 0].copy()
        if net.pipeline_holding:
            rate = np.empty_like(pipe_rate)
            rate[..., :-1] = pipe_rate[..., 1:]
            rate[..., -1] = 0.0
            if plan.down_any[t1]:
                rate[..., 0] += w_rate
            pipe_rate = rate
        pipeline = shifted
        on_hand = on_hand + arrived
    else:
        arrived = np.zeros_like(on_hand)
    new_state = State(
        t=t1,
        on_hand=on_hand,
        backlog=backlog,
        pipeline=pipeline,
        pipe_rate=pipe_rate,
        arrived=arrived,
        demand_hist=hist,
    )
    return new_state, out
