"""The all-cores demand draw of envs/demand.py gives exactly the serial draws (rows are independent streams)."""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
import pytest
from invnet.envs import BatchedInventoryEnv, load_scenario, parse_scenario
from invnet.envs import demand as demand_mod
from invnet.envs.core_jit import parallel_available
from invnet.envs.demand import DEMAND_STREAM, PARALLEL_MIN_ROWS, uniforms
from invnet.envs.generate import dense_network
from invnet.envs.network import Network, compile_network


def two_skus() -> Network:
    demand = {
        "store_a": {"x": {"mean": 4.0}, "y": {"dist": "negative_binomial", "mean": 9.0, "cv": 1.1}},
        "store_b": {"x": {"mean": 0.0}, "y": {"mean": 250.0}},
    }
    return compile_network(load_scenario("two_stores", overrides={"skus": ["x", "y"], "demand": demand}))


def hub_spoke() -> Network:
    """Nodes without demand (hub, DCs) and seasonal tables; independent demand (the file's is correlated)."""
    demand = {
        "store_north": {
            "dist": "negative_binomial",
            "mean": 20,
            "cv": 0.5,
            "seasonality": {"period": 52, "amplitude": 0.3},
        },
        "store_south": {"dist": "negative_binomial", "mean": 20, "cv": 0.5},
        "store_east": {"dist": "poisson", "mean": 15, "seasonality": {"period": 52, "amplitude": 0.5, "phase": 26}},
        "store_west": {"dist": "poisson", "mean": 25},
        "shocks": [{"nodes": ["store_south"], "start": 10, "duration": 3, "multiplier": 1.4}],
    }
    return compile_network(load_scenario("hub_spoke", overrides={"demand": demand}))


NETWORKS: dict[str, Any] = {
    "dense_10": lambda: compile_network(parse_scenario(dense_network(10, 4))),  # every entry drawn, in order
    "hub_spoke": hub_spoke,
    "two_skus": two_skus,
}


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_parallel_draws_equal_serial_and_single_rows(name: str) -> None:
    sampler = NETWORKS[name]().demand_sampler
    assert sampler.rho == 0.0 and not sampler._any_normal  # the one-pass kernels
    assert sampler._full == (name != "hub_spoke")  # hub_spoke: zeros where no demand, the general loop
    seeds = np.arange(300) * 7919 - 1000  # negative seeds too
    serial = sampler.sample(seeds, 3, parallel=False)
    np.testing.assert_array_equal(sampler.sample(seeds, 3, parallel=True), serial)
    np.testing.assert_array_equal(sampler.sample(seeds, 3), serial)  # 300 >= PARALLEL_MIN_ROWS: all cores
    for b in (0, 1, 63, 64, 65, 150, 299):  # chunk edges
        np.testing.assert_array_equal(sampler.sample(seeds[b : b + 1], 3)[0], serial[b])
    assert np.all(serial >= 0) and np.all(serial == np.round(serial))


@pytest.mark.parametrize("chunk", [1, 7, 64, 300, 1000])
def test_parallel_kernel_rows_do_not_depend_on_the_chunking(chunk: int) -> None:
    if not parallel_available():
        pytest.skip("no thread-safe numba threading layer: the draws are serial")
    s = NETWORKS["hub_spoke"]().demand_sampler
    seeds = np.arange(300, dtype=np.int64)
    expected = s.sample(seeds, 1, parallel=False).reshape(300, -1)
    out = np.zeros_like(expected)
    cdf, guide = s._tables[4], s._tables[5]
    args = (seeds.view(np.uint64), np.uint64(1), np.uint64(DEMAND_STREAM), s._cells, s.T, s._plan_i, s._plan_f)
    previous = numba.set_parallel_chunksize(1)
    try:
        demand_mod._sample_kernel_par(chunk, *args, cdf, guide, out)
    finally:
        numba.set_parallel_chunksize(previous)
    np.testing.assert_array_equal(out, expected)


def test_small_batches_draw_serially(monkeypatch: pytest.MonkeyPatch) -> None:
    """B = 1 resets (the PettingZoo env) never start the thread pool; large batches do when it is available."""
    sampler = NETWORKS["dense_10"]().demand_sampler
    calls = []
    kernel = demand_mod._sample_kernel_par
    monkeypatch.setattr(demand_mod, "_sample_kernel_par", lambda *a: calls.append(len(a[1])) or kernel(*a))
    sampler.sample([5], 0)
    sampler.sample(np.arange(PARALLEL_MIN_ROWS - 1), 0)
    sampler.sample(np.arange(PARALLEL_MIN_ROWS), 0, parallel=False)
    assert calls == []
    sampler.sample(np.arange(PARALLEL_MIN_ROWS), 0)
    sampler.sample(np.arange(8), 0, parallel=True)
    assert calls == ([PARALLEL_MIN_ROWS, 8] if parallel_available() else [])


def test_batched_reset_rows_equal_single_envs() -> None:
    """Row b of a 256-row batch (drawn on all cores) is the single env seeded seed + b (common random numbers)."""
    net = NETWORKS["dense_10"]()
    batch = BatchedInventoryEnv(net, 256, seed=11)
    batch.reset(observe=False)
    batch.reset(observe=False)  # episode 1
    for b in (0, 100, 255):
        single = BatchedInventoryEnv(net, 1, seed=11 + b)
        single.reset(observe=False)
        single.reset(observe=False)
        np.testing.assert_array_equal(single.exo.demand[0], batch.exo.demand[b])


def test_copula_and_normal_demand_invert_their_uniforms_by_the_plan() -> None:
    """Correlated and normal demand keep the [B, T, C] uniforms; their discrete cells invert those exactly."""
    from scipy import special

    base: dict[str, Any] = {
        "name": "copula",
        "periods": 30,
        "nodes": [{"id": n, "holding_cost": 1.0, "lead_time": 1, "initial_stock": 5} for n in ("a", "b", "c")],
        "costs": {"shortage_penalty": 4.0},
    }
    independent = {"a": {"mean": 7.0}, "b": {"dist": "negative_binomial", "mean": 3.0, "cv": 1.2}, "c": {"mean": 20.0}}
    seeds = np.arange(200)
    plain = compile_network(parse_scenario({**base, "demand": independent})).demand_sampler
    x = plain.sample(seeds, 4)
    mixed = {**independent, "c": {"dist": "normal", "mean": 20.0, "std": 5.0}}
    normal = compile_network(parse_scenario({**base, "demand": mixed})).demand_sampler
    np.testing.assert_array_equal(normal.sample(seeds, 4)[:, :, :2], x[:, :, :2])  # same streams, same tables
    corr = compile_network(parse_scenario({**base, "demand": {**independent, "correlation": 0.3}})).demand_sampler
    u = special.ndtr(special.ndtri(uniforms(seeds, 4, DEMAND_STREAM, corr.keys, 30)) @ corr._chol().T)
    cell_table, start, length, lo, cdf, _ = corr._tables
    expected = np.empty(u.shape)
    for t, c in np.ndindex(*cell_table.shape):
        j = cell_table[t, c]
        expected[:, t, c] = lo[j] + np.searchsorted(cdf[start[j] : start[j] + length[j]], u[:, t, c], side="right")
    np.testing.assert_array_equal(corr.sample(seeds, 4)[..., 0], expected)
