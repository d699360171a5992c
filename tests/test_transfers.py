"""Transfer heuristics: feasibility (on-hand, lane capacity, disruptions), pay-off test, hand cases."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from invnet.agents.registry import make_policy
from invnet.agents.transfers import TRANSFERS
from invnet.envs.batched import BatchedInventoryEnv
from invnet.envs.core import State, initial_state
from invnet.envs.network import Network, compile_network
from invnet.envs.scenario import load_scenario

COMBOS = [f"base_stock+{t}" for t in TRANSFERS]
_NETS: dict[str, Network] = {}


def net_of(name: str) -> Network:
    if name not in _NETS:
        _NETS[name] = compile_network(load_scenario(name))
    return _NETS[name]


def check_feasible(net: Network, state: State, orders: np.ndarray, transfers: np.ndarray) -> None:
    """Transfers: >= 0, whole units, only lateral lanes, within lane capacity, never above sender on-hand."""
    assert np.all(transfers >= 0)
    np.testing.assert_array_equal(transfers, np.round(transfers))
    assert np.all(transfers[:, net.is_source_lane] == 0)
    assert np.all(transfers.sum(axis=2) <= net.lane_cap[None] + 1e-9)
    out = np.einsum("bek,en->bnk", transfers, net.lane_out_matrix)
    assert np.all(out <= state.on_hand + 1e-9)
    # and together with the children's orders shipped from the same sender, where the stock allows
    lane_order = orders[:, net.lane_to, :] * net.is_source_lane[None, :, None]
    child = np.einsum("bek,en->bnk", lane_order, net.lane_out_matrix)
    assert np.all(out <= np.maximum(state.on_hand - child, 0.0) + 1e-9)
    down = net.disrupted[min(state.t, net.periods - 1)]
    touched = down[net.lane_from] | down[net.lane_to]
    assert np.all(transfers[:, touched] == 0)


@pytest.mark.parametrize("scenario", ["two_stores", "hub_spoke", "disrupted", "network_10", "launch_surge"])
@pytest.mark.parametrize("name", COMBOS)
def test_transfers_feasible_along_episodes(scenario: str, name: str) -> None:
    net = net_of(scenario)
    pol = make_policy(name, net, transfer={"trigger": 3.0} if not name.endswith("mincost") else {"horizon": 3.0})
    env = BatchedInventoryEnv(net, 6, seed=1)
    env.reset(observe=False)
    shipped = 0.0
    while not env.done:
        a = pol.act(env.state)
        check_feasible(net, env.state, a.orders, a.transfers)
        _, _, _, out = env.step_quantities(a, observe=False)
        np.testing.assert_allclose(out.lane_shipped[:, ~net.is_source_lane], a.transfers[:, ~net.is_source_lane])
        shipped += a.transfers.sum()
    assert shipped > 0  # the policies do move stock on these networks


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    scenario=st.sampled_from(["hub_spoke", "network_10", "disrupted"]),
    name=st.sampled_from(COMBOS),
    seed=st.integers(0, 10_000),
    t=st.integers(0, 51),
)
def test_transfers_feasible_on_random_states(scenario: str, name: str, seed: int, t: int) -> None:
    """Any state (random on-hand, backlog-free pipeline): transfers stay within on-hand and lane capacity."""
    net = net_of(scenario)
    rng = np.random.default_rng(seed)
    s0 = initial_state(net, 5)
    scale = net.scale[None, :, None]
    on_hand = np.floor(rng.random(s0.on_hand.shape) * 3 * scale) * (rng.random(s0.on_hand.shape) > 0.3)
    pipeline = np.floor(rng.random(s0.pipeline.shape) * scale[..., None])
    s = State(t, on_hand, s0.backlog, pipeline, s0.pipe_rate, s0.arrived, s0.demand_hist)
    pol = make_policy(name, net, transfer={"trigger": 2.0} if not name.endswith("mincost") else {"horizon": 2.0})
    a = pol.act(s)
    check_feasible(net, s, a.orders, a.transfers)


def two_stores(unit_cost: float = 0.5, cap: float = 50, fixed: float = 0.0) -> Network:
    lanes = [
        {
            "from": "store_a",
            "to": "store_b",
            "lead_time": 0,
            "unit_cost": unit_cost,
            "capacity": cap,
            "fixed_cost": fixed,
        },
        {
            "from": "store_b",
            "to": "store_a",
            "lead_time": 0,
            "unit_cost": unit_cost,
            "capacity": cap,
            "fixed_cost": fixed,
        },
    ]
    return compile_network(load_scenario("two_stores", overrides={"lanes": lanes}))


def lopsided(net: Network, a: float, b: float) -> State:
    s = initial_state(net, 1)
    on_hand = np.array([[[a], [b]]], dtype=float)
    return State(0, on_hand, s.backlog, s.pipeline, s.pipe_rate, s.arrived, s.demand_hist)


@pytest.mark.parametrize("name", COMBOS)
def test_surplus_moves_to_the_empty_store(name: str) -> None:
    net = two_stores()
    s = lopsided(net, 80, 0)
    a = make_policy(name, net, levels=0).act(s)  # no orders: only the transfer policy acts
    assert a.transfers[0, 0, 0] > 0 and a.transfers[0, 1, 0] == 0  # a -> b only
    assert a.transfers[0, 0, 0] <= 80


@pytest.mark.parametrize("name", COMBOS)
def test_lane_capacity_is_respected(name: str) -> None:
    net = two_stores(cap=3)
    a = make_policy(name, net, levels=0).act(lopsided(net, 80, 0))
    assert 0 < a.transfers[0, 0, 0] <= 3


@pytest.mark.parametrize("name", COMBOS)
def test_no_transfer_when_it_costs_more_than_the_penalty(name: str) -> None:
    """Lane unit cost 12 > lost-sale penalty 10: a transfer can never pay, so nothing moves."""
    net = two_stores(unit_cost=12.0)
    a = make_policy(name, net, levels=0).act(lopsided(net, 80, 0))
    assert a.transfers.sum() == 0


@pytest.mark.parametrize("name", COMBOS)
def test_fixed_cost_blocks_small_benefits(name: str) -> None:
    """A fixed cost of 1,000 per shipment exceeds any one-period saving on this network."""
    net = two_stores(fixed=1000.0)
    a = make_policy(name, net, levels=0).act(lopsided(net, 80, 0))
    assert a.transfers.sum() == 0


def test_transfer_parameters_validated() -> None:
    net = two_stores()
    with pytest.raises(ValueError, match="transfer.trigger"):
        make_policy("base_stock+tie", net, transfer={"trigger": -1})
    with pytest.raises(ValueError, match="transfer.horizon"):
        make_policy("base_stock+mincost", net, transfer={"horizon": 0.5})
    with pytest.raises(ValueError, match="transfer: expected a mapping"):
        make_policy("base_stock+threshold", net, transfer=3)
