"""The numba core (envs/core_jit.py) equals the NumPy reference core (envs/core.py).

Random small scenarios (the strategy of tests/test_properties.py: both shortage modes, K <= 2,
disruptions, node and lane capacities, random supplier and lane lead times, pipeline holding, lane
fixed costs) with random quantities: every StepOutput field and the next State agree within 1e-9;
every shipped scenario over a full episode; the batched env with ``backend="numba"`` gives the same
observations and rewards as ``backend="numpy"``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import fields
from typing import Any

import numba
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from invnet.envs import BatchedInventoryEnv, compile_network, load_scenario, parallel_env, parse_scenario
from invnet.envs.core import State, StepOutput, step
from invnet.envs.core_jit import TILE, _transpose_tile, step_jit
from invnet.envs.network import Network
from test_properties import SETTINGS, random_action, scenarios

SHIPPED = [
    "single_node",
    "serial_3stage",
    "two_stores",
    "hub_spoke",
    "opposite_seasons",
    "launch_surge",
    "disrupted",
    "network_10",
    "large_50",
]


def run_episode_both(net: Network, batch: int, seed: int) -> int:
    """A full episode stepped by the NumPy core, every step checked against the numba core; returns steps."""
    env = BatchedInventoryEnv(net, batch, seed=seed, backend="numpy")
    env.reset(observe=False)
    state, steps = env.state, 0
    rng = np.random.default_rng(seed)
    while state.t < net.periods:
        action = random_action(net, rng, batch)
        ref_state, ref = step(net, state, action, env.exo)
        jit_state, out = step_jit(net, state, action, env.exo)
        for f in fields(StepOutput):
            np.testing.assert_allclose(getattr(out, f.name), getattr(ref, f.name), rtol=0, atol=1e-9, err_msg=f.name)
        for f in fields(State):
            if f.name != "t":
                a, b = getattr(ref_state, f.name), getattr(jit_state, f.name)
                np.testing.assert_allclose(b, a, rtol=0, atol=1e-9, err_msg=f.name)
        state, steps = ref_state, steps + 1
    return steps


@SETTINGS
@given(data=scenarios(), seed=st.integers(0, 2**20))
def test_jit_step_equals_numpy_step_on_random_scenarios(data: dict[str, Any], seed: int) -> None:
    net = compile_network(parse_scenario(data))
    assert run_episode_both(net, 3, seed) == net.periods


@pytest.mark.parametrize("name", SHIPPED)
def test_jit_step_equals_numpy_step_on_shipped_scenarios(name: str) -> None:
    net = compile_network(load_scenario(name))
    assert run_episode_both(net, 2, 7) == net.periods


@SETTINGS
@given(data=scenarios(), seed=st.integers(0, 2**20), action_seed=st.integers(0, 1000), batch=st.sampled_from([2, 19]))
def test_numba_backend_env_equals_numpy_backend_env(
    data: dict[str, Any], seed: int, action_seed: int, batch: int
) -> None:
    """Decode + step + observe: observations (float32) and rewards of the two backends agree (19 rows: the
    fused kernel writes observations in 8 x 8 blocks, then a 3-row tail)."""
    sc = parse_scenario(data)
    envs = [BatchedInventoryEnv(sc, batch, seed=seed, backend=b) for b in ("numpy", "numba")]
    assert [e.backend for e in envs] == ["numpy", "numba"]
    obs = [e.reset() for e in envs]
    rng = np.random.default_rng(action_seed)
    while not envs[0].done:
        np.testing.assert_allclose(obs[1], obs[0], rtol=1e-6, atol=1e-6)  # float32 rounding of equal float64
        assert obs[0].dtype == obs[1].dtype == np.float32
        np.testing.assert_allclose(envs[1].global_state(), envs[0].global_state(), rtol=1e-6, atol=1e-6)
        acts = rng.uniform(-1.0, 1.0, (batch, envs[0].n_agents, envs[0].spaces.action_dim))
        results = [e.step(acts) for e in envs]
        obs = [r[0] for r in results]
        np.testing.assert_allclose(results[1][1], results[0][1], rtol=0, atol=1e-9)  # rewards
        assert results[0][2] == results[1][2]
        _assert_same_outputs_and_state(results[1][3], results[0][3], envs[1].state, envs[0].state)
    assert envs[1].done


def _assert_same_outputs_and_state(out: StepOutput, ref: StepOutput, state: State, ref_state: State) -> None:
    """Every StepOutput and State field: same shape and dtype, values within 1e-9 (the fused one-SKU kernel
    returns transposed views of its batch-innermost planes: the layout differs, the arrays must not)."""
    for f in fields(StepOutput):
        a, b = getattr(ref, f.name), getattr(out, f.name)
        assert (b.shape, b.dtype) == (a.shape, a.dtype), f.name
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-9, err_msg=f.name)
    for f in fields(State):
        a, b = getattr(ref_state, f.name), getattr(state, f.name)
        if f.name == "t":
            assert a == b
        else:
            assert (b.shape, b.dtype) == (a.shape, a.dtype), f.name
            np.testing.assert_allclose(b, a, rtol=0, atol=1e-9, err_msg=f.name)


@pytest.mark.parametrize("name", ["network_10", "serial_3stage", "disrupted"])
def test_fused_step_after_quantity_steps_and_reset(name: str) -> None:
    """The fused kernel reads a state it did not build (step_quantities' row-major state, a fresh reset)
    by transposing it: alternating the two kinds of step matches the NumPy backend step for step."""
    sc = load_scenario(name)
    envs = [BatchedInventoryEnv(sc, 5, seed=11, backend=b) for b in ("numpy", "numba")]
    rng = np.random.default_rng(4)
    for _ in range(2):  # the second episode starts from a reset after fused steps
        for e in envs:
            e.reset()
        i = 0
        while not envs[0].done:
            if i % 3 == 1:  # a quantity step: row-major arrays through step_jit
                action = random_action(envs[0].net, rng, 5)
                results = [e.step_quantities(action) for e in envs]
            else:
                acts = rng.uniform(-1.0, 1.0, (5, envs[0].n_agents, envs[0].spaces.action_dim))
                results = [e.step(acts) for e in envs]
            np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-6, atol=1e-6)  # observations
            np.testing.assert_allclose(results[1][1], results[0][1], rtol=0, atol=1e-9)  # rewards
            _assert_same_outputs_and_state(results[1][3], results[0][3], envs[1].state, envs[0].state)
            i += 1


@pytest.mark.parametrize(("name", "batch"), [("serial_3stage", 4), ("disrupted", 21), ("network_10", 37)])
def test_numba_backend_env_equals_numpy_backend_on_shipped_scenarios(name: str, batch: int) -> None:
    sc = load_scenario(name)
    envs = [BatchedInventoryEnv(sc, batch, seed=3, backend=b) for b in ("numpy", "numba")]
    obs = [e.reset() for e in envs]
    rng = np.random.default_rng(0)
    total = np.zeros(2)
    while not envs[0].done:
        np.testing.assert_allclose(obs[1], obs[0], rtol=1e-6, atol=1e-6)
        acts = rng.uniform(-1.0, 1.0, (batch, envs[0].n_agents, envs[0].spaces.action_dim))
        results = [e.step(acts) for e in envs]
        obs = [r[0] for r in results]
        np.testing.assert_allclose(results[1][1], results[0][1], rtol=0, atol=1e-9)
        total += [r[1].sum() for r in results]
    assert total[0] < 0 and abs(total[1] - total[0]) < 1e-6


@pytest.mark.parametrize(("rows", "columns"), [(32, 760), (32, 77), (19, 16), (8, 8), (7, 9), (1, 3)])
def test_observation_tile_transpose_matches_numpy(rows: int, columns: int) -> None:
    """The fused kernel's observation writer (8 x 8 vector transposes, scalar edges) equals a NumPy transpose
    and writes nothing outside the rows it is given."""
    rng = np.random.default_rng(rows * 100 + columns)
    tile = rng.random((columns, TILE)).astype(np.float32)  # [column, row] as the kernel keeps it
    out = np.full((rows + 2, columns), -1.0, dtype=np.float32)  # a guard row before and after
    _transpose_tile(tile.reshape(-1), TILE, rows, columns, out.reshape(-1), columns)
    np.testing.assert_array_equal(out[1 : rows + 1], tile[:, :rows].T)
    assert (out[0] == -1.0).all() and (out[rows + 1] == -1.0).all()


def test_order_up_to_decode_matches() -> None:
    sc = load_scenario("hub_spoke")
    envs = [BatchedInventoryEnv(sc, 3, seed=1, backend=b, action_mode="order_up_to") for b in ("numpy", "numba")]
    for e in envs:
        e.reset()
    rng = np.random.default_rng(1)
    for _ in range(5):
        acts = rng.uniform(-1.0, 1.0, (3, envs[0].n_agents, envs[0].spaces.action_dim))
        a0 = envs[0].spaces.decode(acts, envs[0].state)
        a1 = envs[1]._jit.decode(acts, envs[1].state)
        np.testing.assert_array_equal(a1.orders, a0.orders)
        np.testing.assert_array_equal(a1.transfers, a0.transfers)
        for e in envs:
            e.step(acts)


def test_backend_option_is_validated_and_passed_through() -> None:
    sc = load_scenario("serial_3stage")
    with pytest.raises(ValueError, match="backend"):
        BatchedInventoryEnv(sc, 1, backend="jax")
    assert BatchedInventoryEnv(sc, 1).backend == "numba"  # auto: numba is installed
    assert parallel_env(sc, backend="numpy").batched.backend == "numpy"
    assert parallel_env(sc, backend="numba").batched.backend == "numba"


@pytest.mark.parametrize("bad", [np.nan, 1.5])
def test_numba_backend_rejects_bad_actions_like_numpy(bad: float) -> None:
    env = BatchedInventoryEnv(load_scenario("serial_3stage"), 2, seed=0, backend="numba")
    env.reset()
    acts = np.zeros((2, env.n_agents, env.spaces.action_dim))
    acts[1, 0, 0] = bad
    with pytest.raises(ValueError, match="actions"):
        env.step(acts)
    acts[1, 0, 0] = 1.0 + 1e-7  # within tolerance: clipped like AgentSpaces.decode
    expected = env.spaces.decode(np.clip(acts, -1.0, 1.0), env.state)
    _, rewards, _, out = env.step(acts)
    assert np.isfinite(rewards).all()
    np.testing.assert_array_equal(out.ordered, expected.orders)


def _step_all(env: BatchedInventoryEnv, actions: list[np.ndarray]) -> list[tuple[Any, ...]]:
    """(obs, rewards, every StepOutput field, every State field) after each step, copied."""
    results = [(env.reset().copy(),)]
    for acts in actions:
        obs, rewards, _, out = env.step(acts)
        fields_ = [getattr(out, f.name) for f in fields(StepOutput)] + [
            getattr(env.state, f.name) for f in fields(State) if f.name != "t"
        ]
        results.append((obs.copy(), rewards.copy(), *(np.array(x, copy=True) for x in fields_)))
    return results


@pytest.mark.parametrize(
    ("name", "batch", "chunk"), [("network_10", 37, 8), ("disrupted", 5, 2), ("hub_spoke", 40, 64)]
)
def test_parallel_kernel_equals_serial_kernel_exactly(
    name: str, batch: int, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parallel kernel (forced on at a small batch, several chunks) gives bit-identical results."""
    import invnet.envs.core_jit as cj

    monkeypatch.setattr(cj, "PARALLEL_CHUNK", chunk)
    sc = load_scenario(name)
    serial, par = (BatchedInventoryEnv(sc, batch, seed=5, backend="numba") for _ in range(2))
    serial._jit.parallel_min_batch = batch + 1
    par._jit.parallel_min_batch = 1
    rng = np.random.default_rng(2)
    actions = [rng.uniform(-1.0, 1.0, (batch, serial.n_agents, serial.spaces.action_dim)) for _ in range(20)]
    for a, b in zip(_step_all(serial, actions), _step_all(par, actions), strict=True):
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(y, x)
    if cj.parallel_available():  # else both ran the serial kernel
        assert numba.threading_layer() in ("tbb", "omp")


@pytest.mark.parametrize("row", [0, 21, 39])
def test_parallel_kernel_rejects_bad_actions(row: int, monkeypatch: pytest.MonkeyPatch) -> None:
    import invnet.envs.core_jit as cj

    monkeypatch.setattr(cj, "PARALLEL_CHUNK", 8)
    env = BatchedInventoryEnv(load_scenario("network_10"), 40, seed=0, backend="numba")
    env._jit.parallel_min_batch = 1
    env.reset()
    acts = np.zeros((40, env.n_agents, env.spaces.action_dim))
    acts[row, 3, 1] = np.nan
    with pytest.raises(ValueError, match="actions"):
        env.step(acts)
    assert env.state.t == 0  # the state did not advance
    acts[row, 3, 1] = -1.0 - 1e-7  # within tolerance: clipped like AgentSpaces.decode
    expected = env.spaces.decode(np.clip(acts, -1.0, 1.0), env.state)
    _, rewards, _, out = env.step(acts)
    assert np.isfinite(rewards).all()
    np.testing.assert_array_equal(out.ordered, expected.orders)


def test_parallel_kernel_from_several_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Envs stepped concurrently from Python threads (the policy server's workers) through the parallel kernel."""
    from concurrent.futures import ThreadPoolExecutor

    import invnet.envs.core_jit as cj

    monkeypatch.setattr(cj, "PARALLEL_CHUNK", 4)
    sc = load_scenario("network_10")
    serial = BatchedInventoryEnv(sc, 24, seed=9, backend="numba")
    rng = np.random.default_rng(4)
    actions = [rng.uniform(-1.0, 1.0, (24, serial.n_agents, serial.spaces.action_dim)) for _ in range(10)]
    serial._jit.parallel_min_batch = 25
    expected = _step_all(serial, actions)

    def run(_: int) -> list[tuple[Any, ...]]:
        env = BatchedInventoryEnv(sc, 24, seed=9, backend="numba")
        env._jit.parallel_min_batch = 1
        return _step_all(env, actions)

    with ThreadPoolExecutor(4) as pool:
        for got in pool.map(run, range(8)):
            for a, b in zip(expected, got, strict=True):
                for x, y in zip(a, b, strict=True):
                    np.testing.assert_array_equal(y, x)


def test_no_thread_safe_threading_layer_means_serial_kernel() -> None:
    """With a threading layer that is not thread-safe (here chosen by the user), large batches step serially."""
    import subprocess
    import sys

    code = (
        "import numpy as np\n"
        "from invnet.envs import BatchedInventoryEnv, load_scenario\n"
        "import invnet.envs.core_jit as cj\n"
        "env = BatchedInventoryEnv(load_scenario('serial_3stage'), 200, seed=0, backend='numba')\n"
        "env.reset()\n"
        "obs, rewards, _, _ = env.step(np.zeros((200, env.n_agents, env.spaces.action_dim)))\n"
        "assert np.isfinite(rewards).all() and obs.shape[0] == 200\n"
        "print(cj.parallel_available())\n"
    )
    env = {**os.environ, "NUMBA_THREADING_LAYER": "workqueue"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600, check=True)
    assert out.stdout.strip() == "False"


def test_parallel_option_gives_identical_steps_and_is_validated() -> None:
    """BatchedInventoryEnv(parallel=True/False/None): same trajectories; anything else names the field."""
    sc = load_scenario("hub_spoke")
    envs = [BatchedInventoryEnv(sc, 40, seed=3, backend="numba", parallel=p) for p in (True, False, None)]
    assert [e._jit.parallel_min_batch for e in envs[:2]] == [1, sys.maxsize]
    rng = np.random.default_rng(0)
    first = [e.reset() for e in envs]
    for o in first[1:]:
        np.testing.assert_array_equal(o, first[0])
    for _ in range(10):
        a = rng.uniform(-1.0, 1.0, (40, envs[0].n_agents, envs[0].spaces.action_dim))
        outs = [e.step(a) for e in envs]
        for obs, rew, _, _ in outs[1:]:
            np.testing.assert_array_equal(obs, outs[0][0])
            np.testing.assert_array_equal(rew, outs[0][1])
    with pytest.raises(ValueError, match="parallel: must be true, false or None"):
        BatchedInventoryEnv(sc, 4, parallel="yes")  # type: ignore[arg-type]
