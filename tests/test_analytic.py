"""Analytic level setting against textbook values (Snyder & Shen 2019; stockpyl's newsvendor example)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from invnet.agents import analytic
from invnet.envs.network import compile_network
from invnet.envs.scenario import load_scenario
from scipy import stats


def test_newsvendor_normal_stockpyl_example() -> None:
    level, cost = analytic.newsvendor_normal(50.0, 8.0, h=0.18, p=0.70)
    assert level == pytest.approx(56.60, abs=0.01)
    assert cost == pytest.approx(2.00, abs=0.01)
    # the cost function agrees at the optimum and is larger on both sides
    assert analytic.newsvendor_cost_normal(level, 50, 8, 0.18, 0.70) == pytest.approx(cost, abs=1e-9)
    for d in (-1.0, 1.0):
        assert analytic.newsvendor_cost_normal(level + d, 50, 8, 0.18, 0.70) > cost


def test_normal_loss_matches_numeric_integral() -> None:
    z = np.linspace(-2, 2, 5)
    xs = np.linspace(-10, 10, 200001)
    dx = xs[1] - xs[0]
    for zi, li in zip(z, analytic.normal_loss(z), strict=True):
        numeric = float((np.maximum(xs - zi, 0) * stats.norm.pdf(xs)).sum() * dx)
        assert li == pytest.approx(numeric, abs=1e-6)
    # zero standard deviation: deterministic shortage
    assert float(analytic.expected_shortage(3.0, 5.0, 0.0)) == 2.0


def test_lead_time_variability_formula() -> None:
    ltd = analytic.lead_time_demand(mu=10.0, sigma=2.0, tau_mean=3.0, tau_sd=1.0, dist="normal")
    assert ltd.mean == 30.0
    assert ltd.sd == pytest.approx(math.sqrt(3 * 4 + 100 * 1))
    # a Poisson stream over a random lead time is over-dispersed: NB with the same moments
    ltd = analytic.lead_time_demand(mu=5.0, sigma=math.sqrt(5.0), tau_mean=3.0, tau_sd=0.5, dist="poisson")
    assert ltd.dist == "negative_binomial"
    n, p = ltd.mean**2 / (ltd.sd**2 - ltd.mean), ltd.mean / ltd.sd**2
    assert stats.nbinom.mean(n, p) == pytest.approx(ltd.mean)
    assert stats.nbinom.var(n, p) == pytest.approx(ltd.sd**2)


@pytest.mark.parametrize(
    ("dist", "mean", "sd", "q", "expected"),
    [
        ("poisson", 15.0, math.sqrt(15.0), 0.8, stats.poisson.ppf(0.8, 15.0)),
        ("normal", 20.0, 4.0, 0.5, 20.0),
        ("normal", 20.0, 4.0, 0.9, 20.0 + 4.0 * stats.norm.ppf(0.9)),
        ("negative_binomial", 20.0, 6.0, 0.9, stats.nbinom.ppf(0.9, 400 / 16, 20 / 36)),
    ],
)
def test_lead_time_quantile(dist: str, mean: float, sd: float, q: float, expected: float) -> None:
    assert analytic.lead_time_quantile(mean, sd, dist, q) == pytest.approx(expected)


def test_single_node_level_is_poisson_fractile() -> None:
    """single_node: Poisson(5), L = 2 -> tau = 3, CR = 4 / 5: S = F^-1_Poisson(15)(0.8)."""
    net = compile_network(load_scenario("single_node"))
    assert analytic.base_stock_levels(net)[0, 0] == stats.poisson.ppf(0.8, 15.0)


def test_serial_echelon_intervals_follow_invnet_timing() -> None:
    """Snyder & Shen 6.1 in invnet (lead times 0, 0, 2): echelon intervals (1, 2, 4) like Snyder's (1, 2, 4)."""
    net = compile_network(load_scenario("serial_3stage"))
    order = [net.node_ids.index(s) for s in ("stage1", "stage2", "stage3")]
    assert analytic.echelon_lead_time(net)[order].tolist() == [1.0, 2.0, 4.0]
    levels = analytic.base_stock_levels(net, echelon=True)[order, 0]
    # close to the optimal echelon levels (6.49, 12.02, 22.71); tuning refines them
    assert np.all(np.abs(levels - np.array([6.49, 12.02, 22.71])) < 1.5)


def test_internal_node_uses_throughput() -> None:
    net = compile_network(load_scenario("hub_spoke"))
    mean, sd, fams = analytic.node_demand_moments(net)
    dc = net.node_ids.index("dc")
    stores = [i for i in range(net.n_nodes) if i != dc]
    assert mean[dc, 0] == pytest.approx(mean[stores, 0].sum())
    assert sd[dc, 0] == pytest.approx(math.sqrt((sd[stores, 0] ** 2).sum()))
    assert fams[dc][0] == "negative_binomial"
    assert np.all(analytic.base_stock_levels(net)[dc] > mean[dc])


def test_random_lead_time_raises_levels() -> None:
    """launch_surge has lead times {2, 3, 4}: sigma_L > 0 adds mu^2 sigma_L^2 to the lead-time demand variance."""
    sc = load_scenario("launch_surge")
    fixed = load_scenario(
        "launch_surge",
        overrides={"nodes": [{**n.model_dump(by_alias=True, exclude_none=True), "lead_time": 3} for n in sc.nodes]},
    )
    lv = analytic.base_stock_levels(compile_network(sc))
    lf = analytic.base_stock_levels(compile_network(fixed))
    assert np.all(lv > lf)
    assert np.all(analytic.lead_time_sd(compile_network(sc)) == pytest.approx(math.sqrt(0.5)))
