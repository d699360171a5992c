"""The hindsight LP bound: hand-computed instances, validity against every baseline, speed."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from invnet.agents.bound import episode_lp, exogenous, hindsight_bound
from invnet.agents.registry import make_policy
from invnet.envs.network import compile_network
from invnet.envs.rollout import rollout
from invnet.envs.scenario import load_scenario, parse_scenario

POLICIES = ["base_stock", "echelon_base_stock", "capped_base_stock", "s_S", "constant_order"]
POLICIES += ["base_stock+threshold", "base_stock+tie", "base_stock+mincost"]


def one_node(**kw: object) -> dict:
    node = {"id": "n", "kind": "store", "holding_cost": 1.0, "source": "supplier", "lead_time": 0}
    node.update(kw.pop("node", {}))  # type: ignore[arg-type]
    data = {
        "name": "one",
        "periods": 10,
        "warmup": 0,
        "nodes": [node],
        "demand": {"n": {"dist": "normal", "mean": 8, "std": 0}},
        "costs": {"shortage_penalty": 4.0},
    }
    data.update(kw)
    return data


def test_storage_capacity_binds_hand_computed() -> None:
    """Capacity 5 < demand 8 (deterministic), lead 0: at most 5 sold per period -> 3 lost x p 4 = 12."""
    net = compile_network(parse_scenario(one_node(node={"capacity": 5})))
    b = hindsight_bound(net, 3, seed=0)
    np.testing.assert_allclose(b.per_episode, 12.0, atol=1e-6)
    pol = make_policy("base_stock", net, levels=5)
    np.testing.assert_allclose(rollout(net, pol, 3, seed=0).cost_per_period(), 12.0)


def test_backorders_and_lead_time_hand_computed() -> None:
    """Backorders, lead 1, no initial stock: period 0's demand (8) waits one period at b = 2 -> 16 / 10 periods."""
    net = compile_network(
        parse_scenario(one_node(node={"lead_time": 1}, shortage="backorder", costs={"shortage_penalty": 2.0}))
    )
    b = hindsight_bound(net, 2, seed=0)
    np.testing.assert_allclose(b.per_episode, 1.6, atol=1e-6)


def test_warmup_and_holding_hand_computed() -> None:
    """Initial stock 100 > all demand (80): holding of what is left after each period, from the warm-up on."""
    net = compile_network(parse_scenario(one_node(node={"initial_stock": 100}, warmup=5)))
    b = hindsight_bound(net, 1, seed=0)
    left = 100 - 8 * np.arange(1, 11)  # end-of-period on-hand
    assert b.total_cost == pytest.approx(left[5:].mean())


def test_disruption_blocks_flows() -> None:
    """A store fed by a DC that is disrupted for the whole horizon can sell only its initial stock."""
    data = one_node(node={"source": "dc", "initial_stock": 20, "lead_time": 0})
    data["nodes"] = [
        {"id": "dc", "kind": "dc", "holding_cost": 0.1, "source": "supplier", "initial_stock": 500},
        data["nodes"][0],
    ]
    data["lanes"] = [{"from": "dc", "to": "n", "lead_time": 0}]
    data["disruptions"] = [{"node": "dc", "start": 0, "duration": 10}]
    net = compile_network(parse_scenario(data))
    b = hindsight_bound(net, 1, seed=0)
    # 60 units lost over 10 periods (p 4); holding 500 x 0.1 at the DC and the store's leftovers
    store_left = np.maximum(20 - 8 * np.arange(1, 11), 0).sum()
    assert b.total_cost == pytest.approx((60 * 4 + 500 * 0.1 * 10 + store_left) / 10)


@pytest.mark.parametrize("scenario", ["two_stores", "hub_spoke", "serial_3stage", "disrupted", "launch_surge"])
def test_bound_below_every_baseline_per_episode(scenario: str) -> None:
    net = compile_network(load_scenario(scenario))
    E = 4
    b = hindsight_bound(net, E, seed=7)
    assert b.per_episode.shape == (E,)
    for name in POLICIES:
        cost = rollout(net, make_policy(name, net), E, seed=7).cost_per_period()
        assert np.all(b.per_episode <= cost + 1e-6), (name, b.per_episode, cost)


def test_bound_below_tuned_baseline_with_pipeline_holding() -> None:
    sc = load_scenario("hub_spoke", overrides={"costs": {"shortage_penalty": 8.0, "pipeline_holding": True}})
    net = compile_network(sc)
    from invnet.agents.tuning import tune

    res = tune(net, "base_stock", episodes=8, seed=1, max_seconds=5)
    cost = rollout(net, make_policy("base_stock", net, **res.params), 8, seed=1).cost_per_period()
    b = hindsight_bound(net, 8, seed=1)
    assert np.all(b.per_episode <= cost + 1e-6)


@pytest.mark.parametrize(("lead", "optimum"), [(2, 4.40), (1, 4.04)])
def test_bound_below_zipkin_optimum(lead: int, optimum: float) -> None:
    node = {"id": "store", "kind": "store", "holding_cost": 1.0, "source": "supplier", "lead_time": lead}
    net = compile_network(load_scenario("single_node", overrides={"nodes": [{**node, "initial_stock": 15}]}))
    b = hindsight_bound(net, 10, seed=0)
    assert b.total_cost + b.total_cost_ci95 < optimum


def test_bound_uses_rollout_paths() -> None:
    net = compile_network(load_scenario("two_stores"))
    exo = exogenous(net, 3, seed=11)
    traj = rollout(net, make_policy("base_stock", net), 3, seed=11)
    np.testing.assert_array_equal(exo.demand, traj["demand"])


def test_ten_node_episode_solves_fast() -> None:
    net = compile_network(load_scenario("network_10"))
    exo = exogenous(net, 1, seed=0)
    t0 = time.perf_counter()
    episode_lp(net, exo.demand[0], exo.lead_time[0])
    assert time.perf_counter() - t0 < 1.0


def test_cli_bound_json() -> None:
    from typer.testing import CliRunner

    from invnet.cli import app

    r = CliRunner().invoke(app, ["bound", "-s", "two_stores", "-n", "3", "--seed", "1", "--json"])
    assert r.exit_code == 0, r.output
    obj = json.loads(r.stdout)
    assert {"total_cost", "total_cost_ci95", "episodes"} <= set(obj) and obj["episodes"] == 3
    assert obj["total_cost"] == pytest.approx(
        hindsight_bound(compile_network(load_scenario("two_stores")), 3, 1).total_cost
    )
    r = CliRunner().invoke(app, ["bound", "-s", "no_such_scenario", "-n", "3"])
    assert r.exit_code == 2 and "file not found" in r.output


def test_two_skus_shared_lane_capacity() -> None:
    """Two SKUs sharing lane capacity 6 (one lane with lead time 1): every policy stays feasible and above the bound."""
    demand = {
        "store_a": {"x": {"dist": "poisson", "mean": 6}, "y": {"dist": "poisson", "mean": 3}},
        "store_b": {"x": {"dist": "poisson", "mean": 4}, "y": {"dist": "poisson", "mean": 5}},
    }
    lanes = [
        {"from": "store_a", "to": "store_b", "lead_time": 0, "unit_cost": 0.5, "capacity": 6},
        {"from": "store_b", "to": "store_a", "lead_time": 1, "unit_cost": 0.5, "capacity": 6},
    ]
    net = compile_network(load_scenario("two_stores", overrides={"skus": ["x", "y"], "demand": demand, "lanes": lanes}))
    b = hindsight_bound(net, 4, seed=0)
    for name in POLICIES:
        traj = rollout(net, make_policy(name, net), 4, seed=0)
        assert np.all(b.per_episode <= traj.cost_per_period() + 1e-6), name
        assert np.all(traj["lane_flow"].sum(axis=3) <= 6 + 1e-9), name


def test_pipeline_holding_hand_computed() -> None:
    """Lead 2, in-transit holding 0.5 per unit-period, demand 8, initial 16: 8 orders x 8 units x 2 x 0.5
    in transit + 8 units held at the end of period 0 -> (64 + 8) / 10. Base-stock S = 24 pays more
    (it also orders in the last two periods): (12 + 9 x 8) / 10."""
    costs = {"shortage_penalty": 4.0, "pipeline_holding": True, "supplier_holding_cost": 0.5}
    net = compile_network(parse_scenario(one_node(node={"lead_time": 2, "initial_stock": 16}, costs=costs)))
    assert hindsight_bound(net, 1, seed=0).total_cost == pytest.approx(7.2)
    cost = rollout(net, make_policy("base_stock", net, levels=24), 1, seed=0).cost_per_period()
    assert cost[0] == pytest.approx(8.4)
