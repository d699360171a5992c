"""Scenario validation (every error names its field) and demand generation."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from invnet.envs import (
    ScenarioError,
    compile_network,
    list_builtin_scenarios,
    load_scenario,
    parse_scenario,
)
from invnet.envs.demand import DemandSampler


def base() -> dict[str, Any]:
    """A valid hub-and-two-stores scenario to break one field at a time."""
    return {
        "name": "t",
        "periods": 10,
        "nodes": [
            {"id": "hub", "kind": "dc", "holding_cost": 0.5, "lead_time": 2, "initial_stock": 30, "capacity": 100},
            {"id": "s1", "holding_cost": 1.0, "source": "hub", "initial_stock": 5},
            {"id": "s2", "holding_cost": 1.0, "source": "hub", "initial_stock": 5},
        ],
        "lanes": [
            {"from": "hub", "to": "s1", "lead_time": 1},
            {"from": "hub", "to": "s2", "lead_time": 1},
            {"from": "s1", "to": "s2", "lead_time": 0, "unit_cost": 0.5},
        ],
        "demand": {"s1": {"dist": "poisson", "mean": 4}, "s2": {"dist": "poisson", "mean": 6}},
    }


def problems_of(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(data)
    return info.value.problems


def test_base_is_valid() -> None:
    sc = parse_scenario(base())
    assert sc.node_ids == ["hub", "s1", "s2"]


@pytest.mark.parametrize("name", list_builtin_scenarios())
def test_shipped_scenarios_load_and_compile(name: str) -> None:
    net = compile_network(load_scenario(name))
    assert net.n_nodes >= 1 and net.periods > net.warmup


def edit(path: str, value: Any) -> dict[str, Any]:
    """``base()`` with one field set; ``path`` like ``nodes.1.lead_time``."""
    data = copy.deepcopy(base())
    cur: Any = data
    parts = path.split(".")
    for p in parts[:-1]:
        cur = cur[int(p)] if p.isdigit() else cur[p]
    last = parts[-1]
    if last.isdigit():
        cur[int(last)] = value
    else:
        cur[last] = value
    return data


CASES = {
    "unknown node in a lane": (edit("lanes.2.to", "s9"), "lanes[2].to", "unknown node 's9'"),
    "unknown sender in a lane": (edit("lanes.2.from", "x"), "lanes[2].from", "unknown node 'x'"),
    "negative supplier lead time": (edit("nodes.0.lead_time", -1), "nodes[0:hub].lead_time", ">= 0"),
    "negative lane lead time": (edit("lanes.0.lead_time", -1), "lanes[0].lead_time", "greater than or equal to 0"),
    "negative lead time value": (
        edit("nodes.0.lead_time", {"values": [-1, 2], "probs": [0.5, 0.5]}),
        "nodes[0:hub].lead_time",
        ">= 0",
    ),
    "lead-time probabilities": (
        edit("nodes.0.lead_time", {"values": [1, 2], "probs": [0.5, 0.6]}),
        "nodes[0:hub].lead_time",
        "sum to 1",
    ),
    "capacity below initial stock": (edit("nodes.0.capacity", 20), "nodes[0:hub].capacity", "below the initial stock"),
    "missing demand for a store": (edit("demand", {"s1": {"dist": "poisson", "mean": 4}}), "demand.s2", "missing"),
    "lane from a node to itself": (edit("lanes.2.to", "s1"), "lanes[2]", "to itself"),
    "unknown field": (edit("nodes.1.colour", "red"), "nodes[1:s1].colour", "unknown field"),
    "unknown top-level field": (edit("horizon", 5), "horizon", "unknown field"),
    "missing required field": (edit("nodes.1", {"id": "s1", "source": "hub"}), "nodes[1:s1].holding_cost", "missing"),
    "negative binomial variance <= mean": (
        edit("demand.s1", {"dist": "negative_binomial", "mean": 2, "cv": 0.5}),
        "demand.s1",
        "variance > mean",
    ),
    "unknown distribution": (edit("demand.s1", {"dist": "weibull", "mean": 2}), "demand.s1.dist", "poisson"),
    "demand for an unknown node": (edit("demand.s7", {"dist": "poisson", "mean": 1}), "demand.s7", "unknown node"),
    "upstream source without a lane": (edit("lanes.1.from", "s1"), "nodes[2:s2].source", "no lane from 'hub'"),
    "unknown upstream source": (edit("nodes.1.source", "ghost"), "nodes[1:s1].source", "unknown node 'ghost'"),
    "lead time on a node fed by a lane": (edit("nodes.1.lead_time", 2), "nodes[1:s1].lead_time", "set it on the lane"),
    "duplicate node id": (edit("nodes.2.id", "s1"), "nodes[2].id", "duplicate"),
    "warm-up beyond horizon": (edit("warmup", 10), "warmup", "below periods"),
    "disruption of unknown node": (
        edit("disruptions", [{"node": "zz", "start": 1, "duration": 2}]),
        "disruptions[0].node",
        "unknown node",
    ),
    "shock on unknown node": (
        edit("demand.shocks", [{"nodes": ["zz"], "start": 1, "duration": 2, "multiplier": 2}]),
        "demand.shocks[0].nodes",
        "unknown node",
    ),
    "negative holding cost": (edit("nodes.1.holding_cost", -1), "nodes[1:s1].holding_cost", "greater than or equal"),
    "unknown reward mode": (edit("agents", {"reward": "selfish"}), "agents.reward", "team"),
    "base stock for unknown node": (edit("agents", {"base_stock": {"x": 3}}), "agents.base_stock.x", "unknown node"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_config_error_names_the_field(case: str) -> None:
    data, field, text = CASES[case]
    probs = problems_of(data)
    hits = [p for p in probs if p.startswith(f"{field}:") or p.startswith(f"{field} ")]
    assert hits, probs
    assert any(text in p for p in hits), probs


def test_cycle_of_upstream_sources() -> None:
    data = base()
    data["nodes"][0]["source"] = "s1"
    data["nodes"][0]["lead_time"] = 0
    data["lanes"].append({"from": "s1", "to": "hub"})
    probs = problems_of(data)
    assert any(p.startswith("nodes[0:hub].source: cycle of upstream sources") for p in probs), probs
    assert sum("cycle" in p for p in probs) == 1  # reported once, not once per member


def test_every_problem_is_reported_at_once() -> None:
    data = base()
    data["lanes"][2]["to"] = "s9"
    data["nodes"][0]["capacity"] = 1
    data["demand"]["s1"] = {"dist": "negative_binomial", "mean": 2, "cv": 0.1}
    probs = problems_of(data)
    assert len(probs) >= 3
    msg = str(ScenarioError(probs, "f.yaml"))
    assert msg.startswith("invalid scenario f.yaml (") and all(p in msg for p in probs)


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\nnodes: {")
    with pytest.raises(ScenarioError, match=r"\(file\): not valid YAML"):
        load_scenario(bad)
    with pytest.raises(ScenarioError, match="scenario: file not found"):
        load_scenario(tmp_path / "nope.yaml")
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ScenarioError, match="expected a mapping"):
        load_scenario(empty)


def test_overrides_and_names(tmp_path: Path) -> None:
    sc = load_scenario("single_node", overrides={"costs": {"shortage_penalty": 9.0}})
    assert sc.costs.shortage_penalty == 9.0
    f = tmp_path / "mine.yaml"
    f.write_text(yaml.safe_dump(base()))
    assert load_scenario(f).name == "t"


# ---- replayed demand ----------------------------------------------------------------------


def replay_table(periods: int, nodes: tuple[str, ...] = ("s1", "s2")) -> pd.DataFrame:
    rows = [
        {"period": t, "node": n, "sku": "sku", "demand": float(t + 10 * j)}
        for t in range(periods)
        for j, n in enumerate(nodes)
    ]
    return pd.DataFrame(rows)


def replay_scenario(path: Path) -> dict[str, Any]:
    data = base()
    data["demand"] = {"replay": str(path)}
    return data


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_replay_from_csv_and_parquet(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"history.{fmt}"
    df = replay_table(10)
    df.to_csv(path, index=False) if fmt == "csv" else df.to_parquet(path)
    net = compile_network(parse_scenario(replay_scenario(path)))
    d = DemandSampler(net.scenario, net.mean_demand).sample([0], 0)[0]  # [T, N, K]
    np.testing.assert_array_equal(d[:, 1, 0], np.arange(10.0))
    np.testing.assert_array_equal(d[:, 2, 0], np.arange(10.0) + 10)
    np.testing.assert_array_equal(d[:, 0, 0], 0.0)  # the hub has no rows: no external demand


def test_replay_longer_table_draws_a_window(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    replay_table(30).to_csv(path, index=False)
    net = compile_network(parse_scenario(replay_scenario(path)))
    d = DemandSampler(net.scenario, net.mean_demand).sample([4], 0)[0]
    start = d[0, 1, 0]
    np.testing.assert_array_equal(d[:, 1, 0], np.arange(start, start + 10))


def test_replay_relative_path_resolves_next_to_the_file(tmp_path: Path) -> None:
    replay_table(10).to_csv(tmp_path / "h.csv", index=False)
    f = tmp_path / "sc.yaml"
    f.write_text(yaml.safe_dump(replay_scenario(Path("h.csv"))))
    assert compile_network(load_scenario(f)).mean_demand[0, 1, 0] == pytest.approx(4.5)


def test_replay_missing_file(tmp_path: Path) -> None:
    probs = problems_of(replay_scenario(tmp_path / "nope.csv"))
    assert any(p.startswith("demand.replay: file not found") for p in probs), probs


@pytest.mark.parametrize(
    ("frame", "text"),
    [
        (replay_table(10).drop(columns=["demand"]), "lacks column(s) ['demand']"),
        (replay_table(10).rename(columns={"node": "store"}), "lacks column(s) ['node']"),
        (replay_table(4), "the scenario needs at least 10"),
        (replay_table(10, ("s1", "zz")), "unknown node(s) ['zz']"),
        (replay_table(10).assign(demand=-1.0), "numbers >= 0"),
    ],
)
def test_replay_bad_table(tmp_path: Path, frame: pd.DataFrame, text: str) -> None:
    path = tmp_path / "h.csv"
    frame.to_csv(path, index=False)
    probs = problems_of(replay_scenario(path))
    assert any(p.startswith("demand.replay:") and text in p for p in probs), probs


# ---- generated demand ---------------------------------------------------------------------


def sample_many(data: dict[str, Any], episodes: int) -> np.ndarray:
    """[E, T, N, K] demand paths from the scenario's sampler."""
    net = compile_network(parse_scenario(data))
    sampler = DemandSampler(net.scenario, net.mean_demand)
    return sampler.sample(np.arange(episodes), 0)


def test_seasonality_trend_and_shock_means() -> None:
    data = base()
    data["periods"] = 40
    data["demand"]["s1"] = {
        "dist": "poisson",
        "mean": 10,
        "seasonality": {"period": 20, "amplitude": 0.5, "phase": 3},
        "trend": 0.01,
    }
    data["demand"]["shocks"] = [{"nodes": ["s2"], "start": 5, "duration": 3, "multiplier": 1.4}]
    net = compile_network(parse_scenario(data))
    t = np.arange(40)
    expect = 10 * (1 + 0.5 * np.sin(2 * math.pi * (t - 3) / 20)) * (1 + 0.01 * t)
    np.testing.assert_allclose(net.mean_demand[:, 1, 0], expect)
    s2 = net.mean_demand[:, 2, 0]
    assert s2[4] == 6 and s2[8] == 6 and np.allclose(s2[5:8], 6 * 1.4)
    d = sample_many(data, 400)
    np.testing.assert_allclose(d[:, :, 1, 0].mean(axis=0), expect, rtol=0.12)
    assert d[:, 5:8, 2, 0].mean() == pytest.approx(8.4, rel=0.05)


@pytest.mark.parametrize("rho", [0.7, -0.6])
def test_correlation_sign(rho: float) -> None:
    data = base()
    data["periods"] = 200
    data["demand"]["s1"] = {"dist": "normal", "mean": 20, "std": 4}
    data["demand"]["s2"] = {"dist": "negative_binomial", "mean": 20, "cv": 0.4}
    data["demand"]["correlation"] = rho
    d = sample_many(data, 5)[:, :, 1:, 0].reshape(-1, 2)
    r = np.corrcoef(d[:, 0], d[:, 1])[0, 1]
    assert np.sign(r) == np.sign(rho) and abs(r - rho) < 0.15, r


def test_negative_binomial_mean_and_variance() -> None:
    data = base()
    data["periods"] = 500
    data["demand"]["s1"] = {"dist": "negative_binomial", "mean": 10, "cv": 0.6}
    x = sample_many(data, 10)[:, :, 1, 0].ravel()
    assert x.mean() == pytest.approx(10, rel=0.05)
    assert x.var() == pytest.approx((0.6 * 10) ** 2, rel=0.1)
    assert np.all(x == np.round(x)) and x.min() >= 0


def test_normal_demand_is_truncated_and_rounded_unless_asked() -> None:
    data = base()
    data["periods"] = 300
    data["demand"]["s1"] = {"dist": "normal", "mean": 2, "std": 3}
    data["demand"]["s2"] = {"dist": "normal", "mean": 2, "std": 3, "round": False}
    d = sample_many(data, 4)
    assert d.min() >= 0
    assert np.all(d[..., 1, 0] == np.round(d[..., 1, 0]))
    assert not np.all(d[..., 2, 0] == np.round(d[..., 2, 0]))


def test_multi_sku_demand_and_initial_stock() -> None:
    data = base()
    data["skus"] = ["a", "b"]
    data["nodes"][1]["initial_stock"] = {"a": 3, "b": 4}
    data["demand"]["s1"] = {"a": {"dist": "poisson", "mean": 2}, "b": {"dist": "poisson", "mean": 7}}
    net = compile_network(parse_scenario(data))
    assert net.initial_stock[1].tolist() == [3, 4]
    assert net.mean_demand[0, 1].tolist() == [2, 7]
    assert net.mean_demand[0, 2].tolist() == [6, 6]  # a per-node spec applies to every SKU
    probs = problems_of({**data, "demand": {**data["demand"], "s1": {"c": {"dist": "poisson", "mean": 1}}}})
    assert any(p.startswith("demand.s1.c: unknown SKU") for p in probs), probs
