"""Hand-computed tiny cases that pin the simulator's event order, rationing rules and costs,
and the serial reference instance (Snyder & Shen Example 6.1)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from conftest import fixed_exo, make_net
from invnet.envs import compile_network, load_scenario, mean_ci95, rollout
from invnet.envs.core import Action, State, initial_state, step
from invnet.envs.network import Network


def act(net: Network, orders: dict[str, float] | None = None, transfers: dict[tuple[str, str], float] | None = None):
    """An Action for a batch of one from readable dicts."""
    o = np.zeros((1, net.n_nodes, net.n_skus))
    t = np.zeros((1, net.n_lanes, net.n_skus))
    for n, q in (orders or {}).items():
        o[0, net.node_ids.index(n), 0] = q
    lanes = [(net.node_ids[a], net.node_ids[b]) for a, b in zip(net.lane_from, net.lane_to, strict=True)]
    for key, q in (transfers or {}).items():
        t[0, lanes.index(key), 0] = q
    return Action(orders=o, transfers=t)


def at(arr: np.ndarray, net: Network, node: str) -> float:
    """Value of a [1, N, ...] array for one node, summed over the rest."""
    return float(np.sum(arr[0, net.node_ids.index(node)]))


def start(net: Network, on_hand: dict[str, float], backlog: dict[str, float] | None = None) -> State:
    s = initial_state(net, 1)
    oh = np.zeros_like(s.on_hand)
    bl = np.zeros_like(s.backlog)
    for n, q in on_hand.items():
        oh[0, net.node_ids.index(n), 0] = q
    for n, q in (backlog or {}).items():
        bl[0, net.node_ids.index(n), 0] = q
    return replace(s, on_hand=oh, backlog=bl)


def two_stores(lead: int = 0, **extra) -> Network:
    nodes = [
        {"id": "a", "holding_cost": 1.0, "initial_stock": 10},
        {"id": "b", "holding_cost": 1.0, "initial_stock": 0},
    ]
    return make_net(nodes, [{"from": "a", "to": "b", "lead_time": lead}], **extra)


def test_lead_time_zero_transfer_serves_this_periods_demand() -> None:
    net = two_stores(lead=0)
    s1, out = step(net, start(net, {"a": 10}), act(net, transfers={("a", "b"): 5}), fixed_exo(net, [[0, 4]]))
    assert at(out.sales, net, "b") == 4 and at(out.lost_sales, net, "b") == 0
    assert at(out.on_hand, net, "b") == 1 and at(out.on_hand, net, "a") == 5
    assert at(out.received, net, "b") == 5 and at(out.shipped_out, net, "a") == 5
    assert at(out.lane_shipped, net, "a") == 5  # lane 0 (a -> b)


def test_lead_time_one_transfer_arrives_next_period() -> None:
    net = two_stores(lead=1)
    s1, out = step(net, start(net, {"a": 10}), act(net, transfers={("a", "b"): 5}), fixed_exo(net, [[0, 4], [0, 0]]))
    assert at(out.sales, net, "b") == 0 and at(out.lost_sales, net, "b") == 4
    assert at(out.in_transit, net, "b") == 5
    # joins on-hand at the start of period 1, before that period's decisions
    assert s1.t == 1 and at(s1.on_hand, net, "b") == 5 and at(s1.arrived, net, "b") == 5


def test_proportional_rationing_when_asks_exceed_on_hand() -> None:
    nodes = [
        {"id": "a", "holding_cost": 1.0, "initial_stock": 6},
        {"id": "b", "holding_cost": 1.0},
        {"id": "c", "holding_cost": 1.0, "source": "a"},
    ]
    lanes = [{"from": "a", "to": "b"}, {"from": "a", "to": "c"}]
    net = make_net(nodes, lanes)
    # asks on a: transfer 6 to b + c's upstream order 3 = 9 > 6 on hand -> every ask scaled by 6/9
    _, out = step(net, start(net, {"a": 6}), act(net, {"c": 3}, {("a", "b"): 6}), fixed_exo(net, [[0, 0, 0]]))
    assert at(out.received, net, "b") == pytest.approx(4.0)
    assert at(out.order_shipped, net, "c") == pytest.approx(2.0)
    assert at(out.on_hand, net, "a") == pytest.approx(0.0)
    # refused is counted on the node that asked: a for its transfer, c for its order
    assert at(out.refused, net, "a") == pytest.approx(2.0)
    assert at(out.refused, net, "c") == pytest.approx(1.0)


def test_receiver_capacity_refuses_at_decision_time_and_counts_it() -> None:
    nodes = [
        {"id": "a", "holding_cost": 1.0, "initial_stock": 10},
        {"id": "b", "holding_cost": 1.0, "capacity": 10, "lead_time": 1, "initial_stock": 4},
    ]
    net = make_net(nodes, [{"from": "a", "to": "b"}])
    s0 = start(net, {"a": 10, "b": 4})
    s0 = replace(s0, pipeline=s0.pipeline + np.array([0.0, 2.0])[None, :, None, None])  # 2 units coming to b
    # room at b = 10 - (4 + 2) = 4; inbound asks = supplier order 3 + transfer 3 = 6 -> scaled by 4/6
    _, out = step(net, s0, act(net, {"b": 3}, {("a", "b"): 3}), fixed_exo(net, [[0, 0]]))
    assert at(out.supplier_in, net, "b") == pytest.approx(2.0)
    assert at(out.lane_shipped, net, "a") == pytest.approx(2.0)
    assert at(out.refused, net, "b") == pytest.approx(1.0)
    assert at(out.refused, net, "a") == pytest.approx(1.0)
    # nothing dropped: a keeps what it did not ship
    assert at(out.on_hand, net, "a") == pytest.approx(8.0)
    assert at(out.on_hand, net, "b") + at(out.in_transit, net, "b") == pytest.approx(10.0)


def test_lane_capacity_scales_orders_and_transfers_together() -> None:
    nodes = [
        {"id": "a", "holding_cost": 1.0, "initial_stock": 100},
        {"id": "b", "holding_cost": 1.0, "source": "a"},
    ]
    net = make_net(nodes, [{"from": "a", "to": "b", "capacity": 5}])
    _, out = step(net, start(net, {"a": 100}), act(net, {"b": 6}, {("a", "b"): 4}), fixed_exo(net, [[0, 0]]))
    assert at(out.order_shipped, net, "b") == pytest.approx(3.0)
    assert at(out.lane_shipped, net, "a") == pytest.approx(2.0)
    assert float(out.lane_flow.sum()) == pytest.approx(5.0)


def test_backlog_is_served_before_new_demand() -> None:
    net = make_net([{"id": "a", "holding_cost": 1.0}], shortage="backorder")
    # start with 3 backordered units; 4 on hand; demand 2: backlog first -> 3 + 1 of the new demand
    _, out = step(net, start(net, {"a": 4}, {"a": 3}), act(net), fixed_exo(net, [[2]]))
    assert at(out.sales, net, "a") == 4
    assert at(out.served_now, net, "a") == 1
    assert at(out.backlog, net, "a") == 1
    assert at(out.lost_sales, net, "a") == 0


def test_lost_sales_mode_drops_unmet_demand() -> None:
    net = make_net([{"id": "a", "holding_cost": 1.0}], shortage="lost_sales")
    s1, out = step(net, start(net, {"a": 2}), act(net), fixed_exo(net, [[5]]))
    assert at(out.sales, net, "a") == 2 and at(out.lost_sales, net, "a") == 3 and at(out.backlog, net, "a") == 0
    assert at(s1.backlog, net, "a") == 0


@pytest.mark.parametrize("lead", [0, 1, 2, 3])
def test_supplier_lead_time_arrives_at_start_of_t_plus_l(lead: int) -> None:
    net = make_net([{"id": "a", "holding_cost": 1.0, "lead_time": lead}])
    exo = fixed_exo(net, np.zeros((6, 1)))
    s = start(net, {"a": 0})
    s, out = step(net, s, act(net, {"a": 7}), exo)
    if lead == 0:
        assert at(out.on_hand, net, "a") == 7  # before this period's demand
        return
    assert at(out.on_hand, net, "a") == 0 and at(out.in_transit, net, "a") == 7
    for _ in range(lead - 1):
        assert at(s.on_hand, net, "a") == 0
        s, out = step(net, s, act(net), exo)
    assert s.t == lead and at(s.on_hand, net, "a") == 7 and at(s.arrived, net, "a") == 7


def test_random_supplier_lead_time_uses_the_drawn_value() -> None:
    net = make_net([{"id": "a", "holding_cost": 1.0, "lead_time": {"values": [1, 3], "probs": [0.5, 0.5]}}])
    lt = np.full((1, net.periods, 1), 3)
    exo = fixed_exo(net, np.zeros((6, 1)), lead_time=lt)
    s, _ = step(net, start(net, {"a": 0}), act(net, {"a": 4}), exo)
    s, _ = step(net, s, act(net), exo)
    assert at(s.on_hand, net, "a") == 0
    s, _ = step(net, s, act(net), exo)
    assert s.t == 3 and at(s.on_hand, net, "a") == 4


def test_disrupted_node_neither_ships_nor_receives_and_arrivals_wait() -> None:
    nodes = [
        {"id": "a", "holding_cost": 1.0, "lead_time": 1, "initial_stock": 10},
        {"id": "b", "holding_cost": 1.0, "initial_stock": 10},
    ]
    lanes = [{"from": "a", "to": "b"}, {"from": "b", "to": "a"}]
    net = make_net(nodes, lanes, disruptions=[{"node": "a", "start": 1, "duration": 1}])
    exo = fixed_exo(net, np.zeros((6, 2)))
    s = start(net, {"a": 10, "b": 10})
    s, _ = step(net, s, act(net, {"a": 5}), exo)  # t=0: order 5 with lead 1 -> due at the start of t=1
    assert s.t == 1 and at(s.on_hand, net, "a") == 10  # a is down at t=1: the arrival waits in transit
    assert at(s.pipeline, net, "a") == 5
    s, out = step(net, s, act(net, {"a": 3}, {("a", "b"): 2, ("b", "a"): 4}), exo)
    assert at(out.shipped_out, net, "a") == 0 and at(out.shipped_out, net, "b") == 0
    assert at(out.supplier_in, net, "a") == 0
    assert at(out.refused, net, "a") == 5 and at(out.refused, net, "b") == 4  # order 3 + transfer 2; transfer 4
    assert s.t == 2 and at(s.on_hand, net, "a") == 15 and at(s.arrived, net, "a") == 5  # up again: arrives


def test_costs_by_hand() -> None:
    nodes = [
        {"id": "hub", "kind": "dc", "holding_cost": 0.5, "lead_time": 0, "initial_stock": 20},
        {"id": "s1", "holding_cost": 2.0, "source": "hub", "initial_stock": 1},
        {"id": "s2", "holding_cost": 3.0, "source": "hub", "initial_stock": 8},
    ]
    lanes = [
        {"from": "hub", "to": "s1", "unit_cost": 0.1, "fixed_cost": 1.0},
        {"from": "hub", "to": "s2", "unit_cost": 0.1, "fixed_cost": 1.0},
        {"from": "s2", "to": "s1", "unit_cost": 0.5, "fixed_cost": 2.0},
    ]
    net = make_net(
        nodes,
        lanes,
        demand={"s1": {"dist": "poisson", "mean": 3}, "s2": {"dist": "poisson", "mean": 3}},
        costs={"shortage_penalty": 9.0, "order_fixed": 4.0, "order_unit": 0.25},
    )
    a = act(net, {"hub": 10, "s1": 4}, {("s2", "s1"): 3})
    _, out = step(net, start(net, {"hub": 20, "s1": 1, "s2": 8}), a, fixed_exo(net, [[0, 6, 7]]))
    # hub: 20 - 4 shipped to s1 + 10 from the supplier (lead 0) = 26 on hand
    assert at(out.on_hand, net, "hub") == 26
    # s1: 1 + 4 + 3 = 8, demand 6 -> 2 left; s2: 8 - 3 = 5, demand 7 -> 5 sold, 2 lost
    assert at(out.on_hand, net, "s1") == 2 and at(out.on_hand, net, "s2") == 0 and at(out.lost_sales, net, "s2") == 2
    h = {n: float(out.holding_cost[0, i]) for i, n in enumerate(net.node_ids)}
    assert h == pytest.approx({"hub": 26 * 0.5, "s1": 2 * 2.0, "s2": 0.0})
    assert float(out.shortage_cost[0].sum()) == pytest.approx(2 * 9.0)
    assert at(out.shortage_cost, net, "s2") == pytest.approx(18.0)
    # ordering: fixed 4 per node with an order + 0.25 per unit; an upstream order also pays its lane (0.1/unit + 1)
    assert at(out.order_cost, net, "hub") == pytest.approx(4 + 0.25 * 10)
    assert at(out.order_cost, net, "s1") == pytest.approx(4 + 0.25 * 4 + 0.1 * 4 + 1.0)
    assert at(out.order_cost, net, "s2") == 0
    # transfer: lane unit + fixed, charged to the sender
    assert at(out.transfer_cost, net, "s2") == pytest.approx(0.5 * 3 + 2.0)
    assert at(out.transfer_cost, net, "hub") == 0 and at(out.transfer_cost, net, "s1") == 0
    total = 13 + 4 + 18 + (4 + 2.5) + (4 + 1 + 0.4 + 1) + 3.5
    assert float(out.cost.sum()) == pytest.approx(total)


def test_backorder_cost_is_per_unit_of_end_of_period_backlog() -> None:
    net = make_net([{"id": "a", "holding_cost": 1.0}], shortage="backorder", costs={"shortage_penalty": 5.0})
    _, out = step(net, start(net, {"a": 1}, {"a": 2}), act(net), fixed_exo(net, [[3]]))
    assert at(out.backlog, net, "a") == 4
    assert at(out.shortage_cost, net, "a") == pytest.approx(20.0)
    assert at(out.holding_cost, net, "a") == 0


def test_pipeline_holding_charges_in_transit_at_the_senders_rate() -> None:
    nodes = [
        {"id": "a", "holding_cost": 2.0, "lead_time": 2, "initial_stock": 10},
        {"id": "b", "holding_cost": 5.0},
    ]
    net = make_net(
        nodes,
        [{"from": "a", "to": "b", "lead_time": 1}],
        costs={"pipeline_holding": True, "supplier_holding_cost": 0.5},
    )
    exo = fixed_exo(net, np.zeros((6, 2)))
    s1, out = step(net, start(net, {"a": 10}), act(net, {"a": 6}, {("a", "b"): 4}), exo)
    # a: 6 on hand x 2 + 6 supplier units in transit x 0.5; b: 4 in transit from a at a's rate 2
    assert at(out.holding_cost, net, "a") == pytest.approx(6 * 2.0 + 6 * 0.5)
    assert at(out.holding_cost, net, "b") == pytest.approx(4 * 2.0)
    _, out2 = step(net, s1, act(net), exo)  # b's units arrived (on hand at 5); a's order still in transit
    assert at(out2.holding_cost, net, "b") == pytest.approx(4 * 5.0)
    assert at(out2.holding_cost, net, "a") == pytest.approx(6 * 2.0 + 6 * 0.5)


def test_step_is_pure() -> None:
    net = two_stores(lead=1)
    s0 = start(net, {"a": 10})
    before = {k: np.copy(getattr(s0, k)) for k in ("on_hand", "backlog", "pipeline", "arrived")}
    a = act(net, transfers={("a", "b"): 5})
    step(net, s0, a, fixed_exo(net, [[1, 1]]))
    for k, v in before.items():
        np.testing.assert_array_equal(getattr(s0, k), v)


class _EchelonBaseStock:
    """Stand-in echelon base-stock (order = level - echelon inventory position; Snyder & Shen sec. 6.2)."""

    name = "echelon_base_stock_standin"

    def __init__(self, net: Network, levels: dict[str, float]) -> None:
        self.net = net
        self.levels = np.array([levels[n] for n in net.node_ids])
        self.members = net.echelon_members.astype(float)  # [N, N]

    def act(self, state: State) -> Action:
        ip = state.on_hand + state.pipeline.sum(axis=3) - state.backlog  # [B, N, K]
        echelon_ip = np.einsum("ij,bjk->bik", self.members, ip)
        orders = np.maximum(self.levels[None, :, None] - echelon_ip, 0.0)
        return Action(orders=orders, transfers=np.zeros((state.batch_size, self.net.n_lanes, self.net.n_skus)))

    def params(self) -> dict:
        return {}


def test_serial_reference_snyder_shen_6_1() -> None:
    """Optimal echelon levels (6.49, 12.02, 22.71) reproduce Snyder & Shen's policy-dependent cost 17.65.

    invnet charges the 5 units/period Snyder counts in transit to stage 1 on stage 2's shelf at stage 2's
    rate 4 (policy-independent 20/period); see docs/env.md "Serial reference convention".
    """
    net = compile_network(load_scenario("serial_3stage"))
    pol = _EchelonBaseStock(net, {"stage1": 6.49, "stage2": 12.02, "stage3": 22.71})
    traj = rollout(net, pol, episodes=400, seed=0)
    in_transit_equivalent = 4.0 * 5.0  # h'_2 x mean demand x L_1 (Snyder's in-transit holding to stage 1)
    mean, ci = mean_ci95(traj.cost_per_period() - in_transit_equivalent)
    assert abs(mean - 17.65) <= ci, (mean, ci)
    assert traj.term_per_period("shortage_cost").mean() == pytest.approx(4.51, abs=0.15)
    assert traj.term_per_period("holding_cost").mean() - in_transit_equivalent == pytest.approx(13.14, abs=0.1)
    # the units on stage 2's shelf at the end of a period are what it ships next period (mean 5)
    w = net.warmup
    assert traj["lane_flow"][:, w:].mean(axis=(0, 1)) == pytest.approx([5.0, 5.0], abs=0.02)


def _snyder_serial_sim(levels: tuple[float, float, float], episodes: int, periods: int, warmup: int, seed: int):
    """Independent simulation of Snyder & Shen's serial model (sec. 6.2 timing): demand, then orders at
    the end of the period arrive at the start of t+L, upstream backorders, in-transit held at the
    upstream rate. Returns mean on-hand per stage [3] and mean stage-1 backlog (stage 1 first)."""
    rng = np.random.default_rng(seed)
    lead = (1, 1, 2)
    on_hand = np.tile([7.0, 6.0, 11.0], (episodes, 1))
    backlog = np.zeros(episodes)
    owed = [None, np.zeros(episodes), np.zeros(episodes)]  # owed[j]: stage j+1's unfilled orders at stage j
    pipe = [np.zeros((episodes, L)) for L in lead]  # pipe[i][:, k] arrives at the start of t+1+k
    oh_sum, bl_sum = np.zeros(3), 0.0
    for t in range(periods):
        for i in range(3):
            on_hand[:, i] += pipe[i][:, 0]
            pipe[i] = np.concatenate([pipe[i][:, 1:], np.zeros((episodes, 1))], axis=1)
        due = backlog + np.maximum(rng.normal(5.0, 1.0, episodes), 0.0)
        sold = np.minimum(on_hand[:, 0], due)
        on_hand[:, 0] -= sold
        backlog = due - sold
        ip = [on_hand[:, i] + pipe[i].sum(axis=1) + (owed[i + 1] if i < 2 else 0.0) for i in range(3)]
        ip[0] = ip[0] - backlog
        echelon = [ip[0], ip[0] + ip[1] - owed[1], ip[0] + ip[1] - owed[1] + ip[2] - owed[2]]
        orders = [np.maximum(levels[i] - echelon[i], 0.0) for i in range(3)]
        pipe[2][:, lead[2] - 1] += orders[2]
        for i, up in ((1, 2), (0, 1)):
            ask = owed[up] + orders[i]
            ship = np.minimum(on_hand[:, up], ask)
            on_hand[:, up] -= ship
            owed[up] = ask - ship
            pipe[i][:, lead[i] - 1] += ship
        if t >= warmup:
            oh_sum += on_hand.mean(axis=0)
            bl_sum += backlog.mean()
    n = periods - warmup
    return oh_sum / n, bl_sum / n


def test_serial_mapping_matches_an_independent_simulation_of_snyders_model() -> None:
    """Stock per stage and backorders agree: invnet's stage-2 shelf = Snyder's stage 2 + in transit to 1."""
    levels = {"stage1": 6.49, "stage2": 12.02, "stage3": 22.71}
    snyder_oh, snyder_bl = _snyder_serial_sim((6.49, 12.02, 22.71), episodes=2000, periods=250, warmup=50, seed=7)
    net = compile_network(load_scenario("serial_3stage"))
    traj = rollout(net, _EchelonBaseStock(net, levels), episodes=1000, seed=123)
    w = net.warmup
    oh = {n: traj["on_hand"][:, w:, i].mean() for i, n in enumerate(net.node_ids)}
    assert oh["stage1"] == pytest.approx(snyder_oh[0], abs=0.03)
    assert oh["stage2"] - 5.0 == pytest.approx(snyder_oh[1], abs=0.03)  # minus Snyder's in transit to stage 1
    assert oh["stage3"] == pytest.approx(snyder_oh[2], abs=0.03)
    assert traj["backlog"][:, w:].sum(axis=(2, 3)).mean() == pytest.approx(snyder_bl, abs=0.01)
