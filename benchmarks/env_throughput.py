"""Simulator throughput: prints ONE JSON object (issue 2's speed benchmark).

- ``batched_node_steps_per_s``: B=1024 copies of a dense 10-node network (one SKU, supplier lead
  time 4, lanes between all pairs; :func:`invnet.envs.generate.dense_network`), random actions in
  [-1, 1] through :meth:`BatchedInventoryEnv.step` (decode + core step + observations + rewards);
  node-steps = B x N x steps. With numba the env steps batches this large on all cores (``parallel=None``);
  ``batched_node_steps_per_s_one_core`` is the same with ``parallel=False``.
- ``pettingzoo_env_steps_per_s_3node`` / ``_10node``: the PettingZoo ``ParallelEnv`` on
  ``serial_3stage`` and ``network_10`` with random actions (pre-drawn), resets included.

Usage: ``.venv/bin/python benchmarks/env_throughput.py [--seconds 3] [--repeats 3] [--backend both]``.
``--backend`` picks the env's step backend (``numba``: envs/core_jit.py, ``numpy``: envs/core.py);
``both`` (default) measures the two interleaved in the same run, reports the numba figures under the three
keys and both under ``by_backend`` with the numba/numpy ratios. The three keys are the best wall-clock rate
over the repeats; ``wall_runs`` lists every run, ``cpu_time_rates`` divides by this process's CPU time (what
the code does with a core to itself on a shared machine), and ``load_average_1min`` says how busy the
machine was. ``batched_breakdown_ms`` splits one batched step's CPU time (no resets) from a reset's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
from invnet.envs import BatchedInventoryEnv, load_scenario, parallel_env, parse_scenario
from invnet.envs.generate import dense_network


def batched_node_steps_per_s(
    seconds: float, backend: str, batch_size: int = 1024, parallel: bool | None = None
) -> tuple[float, float]:
    env = BatchedInventoryEnv(
        parse_scenario(dense_network(10, 4)), batch_size, seed=0, backend=backend, parallel=parallel
    )
    rng = np.random.default_rng(0)
    shape = (batch_size, env.n_agents, env.spaces.action_dim)
    pool = [rng.uniform(-1.0, 1.0, shape) for _ in range(8)]
    env.reset()
    steps = 0
    t0, c0 = time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds:
        env.step(pool[steps % len(pool)])
        steps += 1
        if env.done:
            env.reset()
    work = steps * batch_size * env.n_agents
    return work / (time.perf_counter() - t0), work / (time.process_time() - c0)


def batched_breakdown_ms(backend: str, batch_size: int = 1024) -> dict[str, float]:
    """CPU ms of one batched step without resets (one core), and of one reset (demand for every row)."""
    env = BatchedInventoryEnv(parse_scenario(dense_network(10, 4)), batch_size, seed=0, backend=backend, parallel=False)
    acts = np.random.default_rng(0).uniform(-1.0, 1.0, (batch_size, env.n_agents, env.spaces.action_dim))
    env.reset()
    env.step(acts)  # compile / warm up
    c0 = time.process_time()
    for _ in range(3):
        env.reset()
    reset_ms = (time.process_time() - c0) / 3 * 1e3
    c0, steps = time.process_time(), 0
    while not env.done:
        env.step(acts)
        steps += 1
    step_ms = (time.process_time() - c0) / steps * 1e3
    return {
        "step_ms": round(step_ms, 3),
        "reset_ms": round(reset_ms, 2),
        "reset_ms_per_step": round(reset_ms / env.net.periods, 3),
        "node_steps_per_cpu_s_without_resets": round(batch_size * env.n_agents / step_ms * 1e3, 1),
    }


def pettingzoo_env_steps_per_s(scenario: str, seconds: float, backend: str) -> tuple[float, float]:
    env = parallel_env(load_scenario(scenario), backend=backend)
    rng = np.random.default_rng(0)
    agents = env.possible_agents
    space = env.action_space(agents[0])
    pool = [{a: rng.uniform(-1.0, 1.0, space.shape).astype(np.float32) for a in agents} for _ in range(64)]
    env.reset(seed=0)
    steps = 0
    t0, c0 = time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds:
        for _ in range(100):
            env.step(pool[steps % len(pool)])
            steps += 1
            if not env.agents:
                env.reset()
    return steps / (time.perf_counter() - t0), steps / (time.process_time() - c0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=3.0, help="measuring time per figure and repeat")
    p.add_argument("--repeats", type=int, default=3, help="repeats; the best wall-clock rate is reported")
    p.add_argument("--backend", choices=("both", "numba", "numpy"), default="both", help="env step backend")
    args = p.parse_args()
    backends = ["numba", "numpy"] if args.backend == "both" else [args.backend]
    figures = {
        "batched_node_steps_per_s": lambda b: batched_node_steps_per_s(args.seconds, b),
        "batched_node_steps_per_s_one_core": lambda b: batched_node_steps_per_s(args.seconds, b, parallel=False),
        "pettingzoo_env_steps_per_s_3node": lambda b: pettingzoo_env_steps_per_s("serial_3stage", args.seconds, b),
        "pettingzoo_env_steps_per_s_10node": lambda b: pettingzoo_env_steps_per_s("network_10", args.seconds, b),
    }
    for b in backends:  # load the compiled kernels (numba caches them on disk) outside the measurements
        batched_breakdown_ms(b)
        batched_node_steps_per_s(0.2, b)
    wall = {b: {k: [] for k in figures} for b in backends}
    cpu = {b: {k: [] for k in figures} for b in backends}
    load_before = os.getloadavg()[0]
    for _ in range(args.repeats):
        for key, fn in figures.items():
            for b in backends:  # interleaved: both backends see the same load
                w, c = fn(b)
                wall[b][key].append(w)
                cpu[b][key].append(c)
    by_backend: dict[str, dict[str, object]] = {}
    for b in backends:
        by_backend[b] = {
            "wall": {k: round(max(v), 1) for k, v in wall[b].items()},
            "wall_runs": {k: [round(x, 1) for x in v] for k, v in wall[b].items()},
            # per CPU-second of this process: what the code does when it has a core to itself (shared machine)
            "cpu_time_rates": {k: round(max(v), 1) for k, v in cpu[b].items()},
            "batched_breakdown_ms": batched_breakdown_ms(b),
        }
    main_b = backends[0]
    out: dict[str, object] = dict(by_backend[main_b]["wall"])  # type: ignore[arg-type]
    out["backend"] = main_b
    out["wall_runs"] = by_backend[main_b]["wall_runs"]
    out["cpu_time_rates"] = by_backend[main_b]["cpu_time_rates"]
    out["batched_breakdown_ms"] = by_backend[main_b]["batched_breakdown_ms"]
    if len(backends) == 2:
        out["by_backend"] = by_backend
        out["numba_over_numpy_cpu_time"] = {k: round(max(cpu["numba"][k]) / max(cpu["numpy"][k]), 2) for k in figures}
    out["load_average_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    out["cpus"] = os.cpu_count()
    out["seconds_per_run"] = args.seconds
    out["python"] = platform.python_version()
    out["numpy"] = np.__version__
    if "numba" in backends:
        import numba

        out["numba"] = numba.__version__
    print(json.dumps(out))


if __name__ == "__main__":
    main()
