"""evaluate(): the tidy frame, common random numbers, warm-up handling, and the statistics."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from invnet.agents.simple import DoNothing, OrderUpTo
from invnet.envs.network import compile_network
from invnet.envs.rollout import COST_TERMS, rollout
from invnet.envs.scenario import load_scenario
from invnet.evaluation import evaluate, kpis, stats
from scipy import stats as sps

EPISODES = 6


@pytest.fixture(scope="module")
def net():  # noqa: ANN201
    return compile_network(load_scenario("hub_spoke"))


@pytest.fixture(scope="module")
def frame(net) -> pd.DataFrame:  # noqa: ANN001
    pols = {"out": OrderUpTo(net), "out_again": OrderUpTo(net), "idle": DoNothing(net)}
    return evaluate(net, pols, EPISODES, seed=3, level="period")


def test_period_frame_is_tidy(net, frame: pd.DataFrame) -> None:  # noqa: ANN001
    T = net.periods - net.warmup
    assert len(frame) == 3 * EPISODES * T * net.n_nodes
    assert not frame.duplicated(["policy", "episode", "period", "node"]).any()
    assert list(frame["policy"].cat.categories) == ["out", "out_again", "idle"]
    assert list(frame["node"].cat.categories) == net.node_ids
    # warm-up periods are excluded and stated
    assert frame["period"].min() == net.warmup and frame["period"].max() == net.periods - 1
    assert frame.attrs["warmup"] == net.warmup and frame.attrs["seed"] == 3 and frame.attrs["episodes"] == EPISODES


def test_levels(net) -> None:  # noqa: ANN001
    pols = {"out": OrderUpTo(net), "idle": DoNothing(net)}
    ep = evaluate(net, pols, 3, seed=1)
    assert len(ep) == 2 * 3 and set(kpis.KPIS) <= set(ep.columns)
    nd = evaluate(net, pols, 3, seed=1, level="node")
    assert len(nd) == 2 * 3 * net.n_nodes
    with pytest.raises(ValueError, match="level"):
        evaluate(net, pols, 3, level="lane")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="policies"):
        evaluate(net, {}, 3)


def test_costs_match_rollout(net, frame: pd.DataFrame) -> None:  # noqa: ANN001
    ep = kpis.episode_kpis(frame)
    traj = rollout(net, OrderUpTo(net), EPISODES, seed=3)
    got = ep[ep["policy"] == "out"].sort_values("episode")
    np.testing.assert_allclose(got["total_cost"], traj.cost_per_period(), rtol=1e-12)
    for k in COST_TERMS:
        np.testing.assert_allclose(got[k], traj.term_per_period(k), rtol=1e-12)


def test_common_random_numbers(frame: pd.DataFrame) -> None:
    # every policy sees the same demand path, episode by episode
    d = {p: g.sort_values(["episode", "period", "node"])["demand"].to_numpy() for p, g in frame.groupby("policy")}
    np.testing.assert_array_equal(d["out"], d["idle"])
    # two identical policies: exactly zero paired difference, zero CI
    ep = kpis.episode_kpis(frame)
    diff = stats.paired_differences(ep, "out").set_index(["policy", "kpi"])
    for k in ("total_cost", "fill_rate", "holding_cost", "days_of_supply"):
        assert diff.loc[("out_again", k), "diff"] == 0.0
        assert diff.loc[("out_again", k), "ci95"] == 0.0
    assert diff.loc[("idle", "total_cost"), "diff"] > 0  # doing nothing costs more


def test_conservation_in_frame(net) -> None:  # noqa: ANN001
    # network units: start + supplier deliveries - sales = end (on-hand + in transit), warm-up included
    sc = load_scenario("hub_spoke", overrides={"warmup": 0})
    n0 = compile_network(sc)
    f = evaluate(n0, {"out": OrderUpTo(n0)}, 2, seed=0, level="period")
    per = f.groupby(["episode", "period"])[["on_hand", "in_transit", "supplier_in", "sales"]].sum()
    stock = per["on_hand"] + per["in_transit"]
    start = n0.initial_stock.sum()
    for e in range(2):
        s = per.loc[e]
        expected = start + s["supplier_in"].cumsum() - s["sales"].cumsum()
        np.testing.assert_allclose(stock.loc[e], expected, atol=1e-6)


def test_mean_ci_matches_scipy() -> None:
    x = np.random.default_rng(0).normal(10, 3, size=25)
    m, h, n = stats.mean_ci(x)
    lo, hi = sps.t.interval(0.95, df=len(x) - 1, loc=x.mean(), scale=sps.sem(x))
    assert n == 25 and m == pytest.approx(x.mean())
    assert m - h == pytest.approx(lo) and m + h == pytest.approx(hi)
    # NaNs (undefined KPIs) are dropped; all-NaN gives NaN
    m2, _, n2 = stats.mean_ci(np.append(x, np.nan))
    assert n2 == 25 and m2 == pytest.approx(m)
    assert math.isnan(stats.mean_ci([np.nan, np.nan])[0])


def test_paired_difference_ci_matches_scipy() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(100, 10, 30)
    b = a - 2 + rng.normal(0, 1, 30)
    df = pd.DataFrame({"policy": ["a"] * 30 + ["b"] * 30, "episode": list(range(30)) * 2, "cost": np.r_[a, b]})
    r = stats.paired_differences(df, "a").set_index("policy").loc["b"]
    d = b - a
    lo, hi = sps.t.interval(0.95, df=29, loc=d.mean(), scale=sps.sem(d))
    assert r["diff"] == pytest.approx(d.mean())
    assert r["diff"] - r["ci95"] == pytest.approx(lo) and r["diff"] + r["ci95"] == pytest.approx(hi)
    assert r["rel"] == pytest.approx(d.mean() / a.mean())
    with pytest.raises(ValueError, match="reference: unknown policy 'zz'"):
        stats.paired_differences(df, "zz")


def test_gap_closed() -> None:
    assert stats.gap_closed(100.0, 100.0, 80.0) == 0.0
    assert stats.gap_closed(100.0, 80.0, 80.0) == 1.0
    assert stats.gap_closed(100.0, 95.0, 80.0) == pytest.approx(0.25)
    assert stats.gap_closed(100.0, 110.0, 80.0) == pytest.approx(-0.5)
    assert math.isnan(stats.gap_closed(80.0, 80.0, 80.0))


def test_results_dict(frame: pd.DataFrame) -> None:
    ep = kpis.episode_kpis(frame)
    cost = ep[ep["policy"] == "out"].sort_values("episode")["total_cost"].to_numpy()
    bound = cost - 10.0
    res = stats.results(ep, reference="out", bound=bound, node_kpis=kpis.node_kpis(frame))
    assert list(res["policies"]) == ["out", "out_again", "idle"]
    assert res["warmup"] == frame.attrs["warmup"] and res["seed"] == 3
    out = res["policies"]["out"]
    assert out["total_cost"]["mean"] == pytest.approx(cost.mean())
    assert out["gmroi"]["mean"] is None  # no prices in hub_spoke: null, not NaN
    assert "vs_reference" not in out and res["policies"]["idle"]["vs_reference"]["total_cost"]["diff"] > 0
    assert res["bound"]["total_cost"]["mean"] == pytest.approx(cost.mean() - 10)
    assert res["bound"]["vs_reference"]["total_cost"]["diff"] == pytest.approx(-10)
    assert out["gap_closed"] == 0.0 and res["policies"]["out_again"]["gap_closed"] == 0.0
    assert set(res["nodes"]["out"]) == set(frame["node"].cat.categories)


def test_gmroi_and_multi_sku_end_to_end() -> None:
    """Prices on one node give GMROI there (and network GMROI from it); SKUs are summed per node."""
    import yaml
    from invnet.envs.scenario import parse_scenario, resolve_scenario_path

    data = yaml.safe_load(resolve_scenario_path("two_stores").read_text())
    data["skus"] = ["a", "b"]
    data["nodes"][0].update(price=5.0, unit_cost=2.0)
    net = compile_network(parse_scenario(data))
    f = evaluate(net, {"out": OrderUpTo(net)}, 2, seed=0, level="period")
    traj = rollout(net, OrderUpTo(net), 2, seed=0)
    w = net.warmup
    np.testing.assert_allclose(
        f.sort_values(["episode", "period", "node"])["sales"].to_numpy(),
        traj["sales"][:, w:].sum(axis=3).reshape(-1),  # [E, T', N] summed over the 2 SKUs
    )
    nd = kpis.node_kpis(f).set_index(["episode", "node"])
    g = f[(f["node"] == "store_a") & (f["episode"] == 0)]
    expected = (g["sales"] * 3.0).sum() / (g["on_hand"] * 2.0).mean()
    assert nd.loc[(0, "store_a"), "gmroi"] == pytest.approx(expected)
    assert math.isnan(nd.loc[(0, "store_b"), "gmroi"])
    ep = kpis.episode_kpis(f).set_index("episode")
    assert ep.loc[0, "gmroi"] == pytest.approx(expected)
