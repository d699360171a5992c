"""The counter-based random streams and inversion sampling of envs/demand.py."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from invnet.envs import BatchedInventoryEnv, parse_scenario
from invnet.envs.demand import (
    _GUIDE,
    DEMAND_STREAM,
    LEAD_TIME_STREAM,
    DemandSampler,
    _invert_kernel,
    cell_hash,
    uniforms,
)
from invnet.envs.network import compile_network
from scipy import stats

MASK = (1 << 64) - 1


def splitmix_mix(z: int) -> int:
    """SplitMix64 output function in plain Python integers (independent of the compiled kernel)."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def reference_uniform(seed: int, episode: int, stream: int, cell: int, t: int) -> float:
    g = 0x9E3779B97F4A7C15
    key = splitmix_mix((splitmix_mix((splitmix_mix((seed + g) & MASK) + episode + g) & MASK) + stream + g) & MASK)
    x = splitmix_mix((splitmix_mix(key ^ cell) + (t + 1) * g) & MASK)
    return ((x >> 12) + 0.5) / 2.0**52


def scenario(demand: dict[str, Any], nodes: tuple[str, ...] = ("a", "b"), periods: int = 20) -> dict[str, Any]:
    return {
        "name": "streams",
        "periods": periods,
        "nodes": [{"id": n, "holding_cost": 1.0, "lead_time": 1, "initial_stock": 5} for n in nodes],
        "demand": demand,
        "costs": {"shortage_penalty": 4.0},
    }


def draws(demand: dict[str, Any], rows: int, nodes: tuple[str, ...] = ("a", "b"), episode: int = 0) -> np.ndarray:
    net = compile_network(parse_scenario(scenario(demand, nodes)))
    return DemandSampler(net.scenario, net.mean_demand).sample(np.arange(rows), episode)  # [B, T, N, K]


def test_uniforms_follow_the_documented_splitmix64_stream() -> None:
    """The stream is pinned: the same numbers in every process, NumPy version and platform."""
    cells = [cell_hash("a", "sku"), cell_hash("zz")]
    u = uniforms([0, 7, -3], 2, DEMAND_STREAM, cells, 4)
    for b, seed in enumerate([0, 7, -3]):
        for c, cell in enumerate(cells):
            for t in range(4):
                assert u[b, t, c] == reference_uniform(seed & MASK, 2, DEMAND_STREAM, cell, t)
    assert cell_hash("a", "sku") == cell_hash("a", "sku") != cell_hash("a", "sku2")


def test_uniforms_are_uniform_and_independent() -> None:
    u = uniforms(np.arange(200), 0, DEMAND_STREAM, [cell_hash(str(c)) for c in range(5)], 100)  # [200, 100, 5]
    assert 0.0 < u.min() and u.max() < 1.0
    assert stats.kstest(u.ravel(), "uniform").pvalue > 1e-3
    corr = np.corrcoef(u.reshape(-1, 5).T)
    assert np.abs(corr - np.eye(5)).max() < 0.02  # 20,000 pairs: sd of a correlation ~0.007
    lag = np.corrcoef(u[:, :-1, 0].ravel(), u[:, 1:, 0].ravel())[0, 1]  # consecutive periods
    assert abs(lag) < 0.02
    other = uniforms(np.arange(200), 0, LEAD_TIME_STREAM, [cell_hash("0")], 100)[..., 0]
    assert abs(np.corrcoef(u[..., 0].ravel(), other.ravel())[0, 1]) < 0.02  # demand vs lead-time streams


@pytest.mark.parametrize("mean", [0.3, 5.0, 40.0, 800.0])
def test_poisson_inversion_matches_the_distribution(mean: float) -> None:
    x = draws({"a": {"dist": "poisson", "mean": mean}, "b": {"dist": "poisson", "mean": 1.0}}, 1000)[:, :, 0, 0].ravel()
    assert np.all(x == np.round(x)) and x.min() >= 0
    lo, hi = stats.poisson.ppf([0.001, 0.999], mean)
    bins = np.arange(lo, hi + 2)  # chi-square over the central 99.8% in unit bins (pooled where small)
    observed = np.array([np.sum(x == k) for k in bins[:-1]])
    expected = stats.poisson.pmf(bins[:-1], mean) * x.size
    big = expected >= 5
    chi2 = ((observed[big] - expected[big]) ** 2 / expected[big]).sum()
    assert stats.chi2.sf(chi2, big.sum() - 1) > 1e-4, (chi2, big.sum())
    assert abs(x.mean() - mean) < 4 * np.sqrt(mean / x.size)


def test_negative_binomial_inversion_matches_the_distribution() -> None:
    mean, cv = 12.0, 0.8
    x = draws({"a": {"dist": "negative_binomial", "mean": mean, "cv": cv}, "b": {"mean": 1.0}}, 2000)
    x = x[:, :, 0, 0].ravel()
    var = (cv * mean) ** 2
    n, p = mean**2 / (var - mean), mean / var
    ks = np.arange(0, 60)
    expected = stats.nbinom.pmf(ks, n, p) * x.size
    observed = np.array([np.sum(x == k) for k in ks])
    big = expected >= 5
    chi2 = ((observed[big] - expected[big]) ** 2 / expected[big]).sum()
    assert stats.chi2.sf(chi2, big.sum() - 1) > 1e-4
    assert x.var() == pytest.approx(var, rel=0.05)


def test_normal_demand_by_inversion() -> None:
    x = draws({"a": {"dist": "normal", "mean": 50.0, "std": 10.0, "round": False}, "b": {"mean": 1.0}}, 2000)
    x = x[:, :, 0, 0].ravel()
    assert stats.kstest(x, "norm", args=(50.0, 10.0)).pvalue > 1e-3


def test_inversion_is_monotone_in_the_mean() -> None:
    """Same uniforms, larger mean -> demand never smaller (synchronised common random numbers)."""
    low = draws({"a": {"mean": 10.0}, "b": {"mean": 1.0}}, 50)[:, :, 0]
    high = draws({"a": {"mean": 12.0}, "b": {"mean": 1.0}}, 50)[:, :, 0]
    assert np.all(high >= low) and high.sum() > low.sum()


def test_a_nodes_demand_does_not_depend_on_the_other_nodes() -> None:
    two = draws({"a": {"mean": 10.0}, "b": {"mean": 3.0}}, 20, nodes=("a", "b"))
    three = draws({"a": {"mean": 10.0}, "b": {"mean": 3.0}, "c": {"mean": 7.0}}, 20, nodes=("c", "a", "b"))
    np.testing.assert_array_equal(two[:, :, 0], three[:, :, 1])
    np.testing.assert_array_equal(two[:, :, 1], three[:, :, 2])


def test_rows_are_seeds_and_episodes_differ() -> None:
    d = {"a": {"mean": 10.0}, "b": {"mean": 3.0}}
    net = compile_network(parse_scenario(scenario(d)))
    sampler = DemandSampler(net.scenario, net.mean_demand)
    batch = sampler.sample([5, 6, 7], 3)
    for b, s in enumerate([5, 6, 7]):
        np.testing.assert_array_equal(batch[b], sampler.sample([s], 3)[0])
    assert not np.array_equal(sampler.sample([5], 3), sampler.sample([5], 4))


def test_random_lead_times_follow_their_distribution() -> None:
    data = scenario({"a": {"mean": 5.0}, "b": {"mean": 5.0}}, periods=100)
    data["nodes"][0]["lead_time"] = {"values": [1, 2, 4], "probs": [0.2, 0.5, 0.3]}
    env = BatchedInventoryEnv(parse_scenario(data), 200, seed=0, backend="numpy")
    env.reset(observe=False)
    lt = env.exo.lead_time[:, :, 0].ravel()
    freq = [np.mean(lt == v) for v in (1, 2, 4)]
    assert freq == pytest.approx([0.2, 0.5, 0.3], abs=0.01)
    assert np.all(env.exo.lead_time[:, :, 1] == 1)


def test_discrete_tables_are_shared_by_equal_means() -> None:
    """One table per distinct (distribution, mean, cv): a 52-period constant mean builds one table."""
    net = compile_network(parse_scenario(scenario({"a": {"mean": 10.0}, "b": {"mean": 10.0}}, periods=52)))
    cell_table = DemandSampler(net.scenario, net.mean_demand)._tables[0]
    assert cell_table.shape == (52, 2) and np.unique(cell_table).tolist() == [0]


def test_draws_are_pinned() -> None:
    """Demand of seeds 0, 1, -7 in episode 2, periods 0-7 (node a Poisson 10, node b NB 6 cv 1.5): any change to
    the streams, tables or inversion shows here (the values of the first inversion sampler, kept since)."""
    pinned = {
        0: [[15, 2], [11, 2], [10, 0], [7, 15], [14, 6], [10, 13], [11, 9], [16, 0]],
        1: [[14, 0], [9, 0], [8, 26], [5, 1], [13, 27], [6, 3], [9, 0], [14, 7]],
        -7: [[13, 19], [13, 3], [9, 0], [16, 0], [7, 2], [12, 2], [13, 16], [4, 1]],
    }
    net = compile_network(
        parse_scenario(scenario({"a": {"mean": 10.0}, "b": {"dist": "negative_binomial", "mean": 6.0, "cv": 1.5}}))
    )
    x = DemandSampler(net.scenario, net.mean_demand).sample(list(pinned), 2)
    for b, rows in enumerate(pinned.values()):
        np.testing.assert_array_equal(x[b, :8, :, 0], rows)


def reference_inversion(sampler: DemandSampler, u: np.ndarray) -> np.ndarray:
    """F^-1(u) = lowest value + least i with cdf[i] > u, by binary search over each cell's table: [B, T, C]."""
    cell_table, start, length, lo, cdf, _ = sampler._tables
    out = np.empty(u.shape)
    for t, c in np.ndindex(*cell_table.shape):
        j = cell_table[t, c]
        s, n = start[j], length[j]
        out[:, t, c] = lo[j] + np.searchsorted(cdf[s : s + n], u[:, t, c], side="right")
    return out


def test_inversion_is_the_least_index_above_u() -> None:
    """The guide tables only speed the search: each draw is exactly min{i: cdf[i] > u} (binary search here)."""
    demand = {
        "a": {"mean": 0.3},
        "b": {"mean": 800.0},
        "c": {"dist": "negative_binomial", "mean": 12.0, "cv": 0.8},
        "d": {"dist": "negative_binomial", "mean": 0.5, "cv": 3.0},
        "e": {"mean": 0.0},
    }
    nodes = ("a", "b", "c", "d", "e")
    net = compile_network(parse_scenario(scenario(demand, nodes)))
    sampler = DemandSampler(net.scenario, net.mean_demand)
    seeds = np.arange(2000)
    u = uniforms(seeds, 5, DEMAND_STREAM, sampler.keys, net.periods)
    np.testing.assert_array_equal(sampler.sample(seeds, 5)[..., 0], reference_inversion(sampler, u))


def test_guide_never_passes_the_answer_at_slot_edges() -> None:
    """u a few ulps either side of every guide slot's edge g / m (where u * m may round across the edge)."""
    net = compile_network(
        parse_scenario(scenario({"a": {"mean": 3.0}, "b": {"dist": "negative_binomial", "mean": 40.0, "cv": 0.7}}))
    )
    sampler = DemandSampler(net.scenario, net.mean_demand)
    cell_table, start, length, lo, cdf, guide = sampler._tables
    for c in range(cell_table.shape[1]):
        j = cell_table[0, c]
        m = _GUIDE * length[j]
        edges = np.arange(m + 1) / m
        u = np.concatenate([edges + k * np.spacing(edges) for k in range(-3, 4)])
        u = u[(u > 0.0) & (u < 1.0)]
        plan_i = np.stack([np.arange(u.size), np.full(u.size, _GUIDE * start[j] + j), np.arange(u.size)])
        plan_f = np.stack([np.full(u.size, float(m)), np.full(u.size, lo[j] - start[j])])
        out = np.empty((1, u.size))
        _invert_kernel(u[None], plan_i, plan_f, cdf, guide, out)
        expected = lo[j] + np.searchsorted(cdf[start[j] : start[j] + length[j]], u, side="right")
        np.testing.assert_array_equal(out[0], expected)
