"""Replenishment baselines and their tuning, against published optima (../shared/domain.md)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from invnet.agents.baselines import REPLENISHMENT, echelon_position
from invnet.agents.registry import make_policy, policy_names
from invnet.agents.transfers import TRANSFERS
from invnet.agents.tuning import best_baseline, tune
from invnet.envs.batched import BatchedInventoryEnv
from invnet.envs.core import initial_state
from invnet.envs.network import Network, compile_network
from invnet.envs.rollout import mean_ci95, rollout
from invnet.envs.scenario import load_scenario

ALL = list(REPLENISHMENT) + [f"{r}+{t}" for r in REPLENISHMENT for t in TRANSFERS]


def zipkin(lead: int, penalty: float) -> Network:
    """Zipkin (2008) lost-sales instance: Poisson(5), h = 1, lead time ``lead``, penalty ``penalty``."""
    node = {"id": "store", "kind": "store", "holding_cost": 1.0, "source": "supplier", "lead_time": lead}
    node["initial_stock"] = 15
    return compile_network(
        load_scenario("single_node", overrides={"nodes": [node], "costs": {"shortage_penalty": penalty}})
    )


def test_all_baselines_registered() -> None:
    names = policy_names()
    for n in ("base_stock", "echelon_base_stock", "s_S", "capped_base_stock", "constant_order"):
        assert n in names
    for n in ("base_stock+threshold", "base_stock+tie", "base_stock+mincost"):
        assert n in names


@pytest.mark.parametrize("scenario", ["hub_spoke", "two_stores", "serial_3stage"])
def test_params_round_trip_through_json(scenario: str) -> None:
    """make_policy(name, net, **params) rebuilds the same policy, also after a JSON round trip."""
    net = compile_network(load_scenario(scenario))
    env = BatchedInventoryEnv(net, 4, seed=3)
    env.reset(observe=False)
    for _ in range(3):
        env.step_quantities(make_policy("base_stock", net).act(env.state), observe=False)
    for name in ALL:
        pol = make_policy(name, net)
        again = make_policy(name, net, **json.loads(json.dumps(pol.params())))
        assert again.params() == pol.params()
        a, b = pol.act(env.state), again.act(env.state)
        np.testing.assert_array_equal(a.orders, b.orders)
        np.testing.assert_array_equal(a.transfers, b.transfers)
        assert a.orders.shape == (4, net.n_nodes, net.n_skus) and np.all(a.orders >= 0)
        assert a.transfers.shape == (4, net.n_lanes, net.n_skus) and np.all(a.transfers >= 0)


def test_base_stock_orders_up_to_level_on_inventory_position() -> None:
    net = compile_network(load_scenario("hub_spoke"))
    s = initial_state(net, 2)
    levels = {n: 100.0 + i for i, n in enumerate(net.node_ids)}
    a = make_policy("base_stock", net, levels=levels).act(s)
    ip = s.on_hand + s.pipeline.sum(axis=3) - s.backlog
    expected = np.maximum(np.array(list(levels.values()))[None, :, None] - ip, 0)
    np.testing.assert_allclose(a.orders, expected)


def test_echelon_position_sums_downstream_positions() -> None:
    net = compile_network(load_scenario("serial_3stage"))
    s = initial_state(net, 1)
    eip = echelon_position(net, s)[0, :, 0]
    ip = s.inventory_position[0, :, 0]
    i3, i2, i1 = (net.node_ids.index(x) for x in ("stage3", "stage2", "stage1"))
    assert eip[i1] == ip[i1]
    assert eip[i2] == ip[i1] + ip[i2]
    assert eip[i3] == ip.sum()


def test_s_S_orders_only_at_or_below_reorder_point_and_capped_respects_cap() -> None:
    net = compile_network(load_scenario("single_node"))
    s = initial_state(net, 1)  # IP = 15
    assert make_policy("s_S", net, s=14, S=30).act(s).orders.sum() == 0
    assert make_policy("s_S", net, s=15, S=30).act(s).orders.sum() == 15
    assert make_policy("capped_base_stock", net, levels=30, caps=4).act(s).orders.sum() == 4
    assert make_policy("constant_order", net, quantities=3).act(s).orders.sum() == 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"levels": {"nowhere": 3}}, "levels.nowhere: unknown node"),
        ({"levels": -1}, "levels: values must be finite and >= 0"),
        ({"level": 3}, "unknown parameter(s) level"),
        ({"levels": [1, 2]}, "levels: expected shape"),
    ],
)
def test_bad_parameters_name_the_field(kwargs: dict, message: str) -> None:
    net = compile_network(load_scenario("hub_spoke"))
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_policy("base_stock", net, **kwargs)


def test_s_S_rejects_S_below_s() -> None:
    net = compile_network(load_scenario("single_node"))
    with pytest.raises(ValueError, match="S: every order-up-to level"):
        make_policy("s_S", net, s=10, S=5)


@pytest.mark.parametrize(("lead", "level", "cost"), [(2, 16, 4.64), (1, 12, 4.16)])
def test_zipkin_tuned_base_stock(lead: int, level: float, cost: float) -> None:
    """Zipkin (2008), p = 4: the best constant base-stock level and its cost, reproduced by tuning."""
    net = zipkin(lead, 4.0)
    res = tune(net, "base_stock", episodes=100, seed=0)
    assert res.params["levels"]["store"] == [level]
    traj = rollout(net, make_policy("base_stock", net, **res.params), 300, seed=10_000)  # fresh paths
    mean, ci = mean_ci95(traj.cost_per_period())
    assert abs(mean - cost) <= ci, (mean, ci)


def test_zipkin_capped_base_stock_beats_base_stock() -> None:
    """Xin (2021): capped base-stock closes most of the gap to the optimum (4.40 for L = 2, p = 4)."""
    net = zipkin(2, 4.0)
    bs = tune(net, "base_stock", episodes=100, seed=0)
    cap = tune(net, "capped_base_stock", episodes=100, seed=0)
    assert cap.total_cost < bs.total_cost - 0.1
    traj = rollout(net, make_policy("capped_base_stock", net, **cap.params), 300, seed=10_000)
    mean, ci = mean_ci95(traj.cost_per_period())
    assert mean == pytest.approx(4.40, abs=ci + 0.05)


def test_snyder_shen_serial_echelon_levels() -> None:
    """Snyder & Shen Example 6.1: echelon levels (6.49, 12.02, 22.71) give the optimal policy-dependent cost 17.65.

    invnet charges the 5 units/period Snyder counts in transit to stage 1 on stage 2's shelf (rate 4):
    a policy-independent 20.00 per period (configs/scenarios/serial_3stage.yaml), so the cost is 37.65.
    """
    net = compile_network(load_scenario("serial_3stage"))
    pol = make_policy("echelon_base_stock", net, levels={"stage1": 6.49, "stage2": 12.02, "stage3": 22.71})
    traj = rollout(net, pol, 300, seed=0)
    mean, ci = mean_ci95(traj.cost_per_period() - 4.0 * 5.0)
    assert abs(mean - 17.65) <= ci, (mean, ci)


def test_two_stores_pooling_beats_no_transfers_paired() -> None:
    """Pooling: tuned base_stock + transfers costs less than tuned base_stock on the same (fresh) paths."""
    net = compile_network(load_scenario("two_stores"))
    alone = tune(net, "base_stock", episodes=64, seed=0)
    for name in ("base_stock+threshold", "base_stock+tie"):
        pooled = tune(net, name, episodes=64, seed=0)
        a = rollout(net, make_policy("base_stock", net, **alone.params), 200, seed=5_000).cost_per_period()
        b = rollout(net, make_policy(name, net, **pooled.params), 200, seed=5_000).cost_per_period()
        diff, ci = mean_ci95(b - a)
        assert diff + ci < 0, (name, diff, ci)


def test_tuning_improves_on_analytic_start_and_reports_ci() -> None:
    net = compile_network(load_scenario("network_10"))
    t0 = time.perf_counter()
    res = tune(net, "base_stock", episodes=32, seed=0)
    assert time.perf_counter() - t0 < 60
    start = rollout(net, make_policy("base_stock", net), 32, seed=0).cost_per_period().mean()
    replay = rollout(net, make_policy("base_stock", net, **res.params), 32, seed=0).cost_per_period()
    assert res.total_cost == pytest.approx(replay.mean())  # reported cost = replay on the same paths
    assert res.total_cost < start
    assert res.total_cost_ci95 == pytest.approx(mean_ci95(replay)[1])
    assert all(float(v[0]).is_integer() for v in res.params["levels"].values())


def test_tuning_network_10_within_a_minute() -> None:
    net = compile_network(load_scenario("network_10"))
    res = tune(net, "base_stock", episodes=100, seed=0, max_seconds=1e9)
    assert res.seconds < 60, res.seconds


def test_best_baseline_picks_the_cheapest() -> None:
    net = zipkin(2, 4.0)
    best = best_baseline(net, episodes=50, seed=0, candidates=["base_stock", "capped_base_stock", "constant_order"])
    costs = {n: tune(net, n, episodes=50, seed=0).total_cost for n in ("base_stock", "constant_order")}
    assert best.total_cost <= min(costs.values())


def test_unknown_policy_cannot_be_tuned() -> None:
    with pytest.raises(ValueError, match="policy: cannot tune 'order_up_to'"):
        tune(zipkin(1, 4.0), "order_up_to", episodes=2)


# ---- CLI ---------------------------------------------------------------------------------------


def test_cli_tune_writes_params_that_simulate_replays(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from invnet.cli import app

    runner = CliRunner()
    out = tmp_path / "tuned.json"
    args = ["baselines", "tune", "-s", "two_stores", "-p", "base_stock+tie", "-n", "16", "--seed", "2"]
    r = runner.invoke(app, [*args, "--json", "--out", str(out)])
    assert r.exit_code == 0, r.output
    obj = json.loads(r.stdout)
    assert {"policy", "params", "total_cost", "total_cost_ci95"} <= set(obj)
    assert json.loads(out.read_text())["params"] == obj["params"]
    assert not list(tmp_path.glob(".*tmp"))  # atomic write leaves no temp file
    sim = runner.invoke(
        app,
        ["simulate", "-s", "two_stores", "-p", "base_stock+tie", "--params", str(out), "-n", "16", "--seed", "2"]
        + ["--json"],
    )
    assert sim.exit_code == 0, sim.output
    assert json.loads(sim.stdout)["total_cost"] == pytest.approx(obj["total_cost"])


def test_cli_errors_are_clear() -> None:
    from typer.testing import CliRunner

    from invnet.cli import app

    r = CliRunner().invoke(app, ["baselines", "tune", "-s", "two_stores", "-p", "nope"])
    assert r.exit_code == 2
    assert "cannot tune 'nope'" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["simulate", "-s", "two_stores", "-p", "base_stock", "--params", "/nonexistent.json"])
    assert r.exit_code == 2


def test_snyder_shen_tuned_echelon_levels_reach_the_optimum() -> None:
    """Tuning from the analytic echelon levels finds Snyder & Shen's optimal levels and cost (37.65 = 17.65 + 20)."""
    net = compile_network(load_scenario("serial_3stage"))
    res = tune(net, "echelon_base_stock", episodes=100, seed=0)
    got = [res.params["levels"][s][0] for s in ("stage1", "stage2", "stage3")]
    np.testing.assert_allclose(got, [6.49, 12.02, 22.71], atol=0.5)
    traj = rollout(net, make_policy("echelon_base_stock", net, **res.params), 200, seed=10_000)
    mean, ci = mean_ci95(traj.cost_per_period())
    assert abs(mean - 37.65) <= ci + 0.05, (mean, ci)


@pytest.mark.parametrize("name", ["base_stock+threshold", "s_S+tie", "capped_base_stock+mincost"])
def test_batched_candidates_equal_separate_rollouts(name: str) -> None:
    """Candidates stacked on the batch axis cost exactly what each costs in its own rollout (same paths)."""
    from invnet.agents.tuning import Evaluator, build, start_point

    net = compile_network(load_scenario("hub_spoke"))
    ev = Evaluator(net, 3, seed=4)
    x0 = start_point(net, name)
    cands = []
    for shift in (0.0, 5.0, -5.0):
        c = {k: v.copy() for k, v in x0.items()}
        first = next(iter(c))
        c[first] = np.maximum(c[first] + shift, 0.0)
        cands.append(c)
    batched = ev.costs(name, cands)
    for c, row in zip(cands, batched, strict=True):
        single = rollout(net, build(net, name, c), 3, seed=4).cost_per_period()
        np.testing.assert_allclose(row, single, rtol=1e-12)
