"""Simulator throughput: prints ONE JSON object (issue 2's speed benchmark).

- ``batched_node_steps_per_s``: B=1024 copies of a dense 10-node network (one SKU, supplier lead
  time 4, lanes between all pairs; :func:`invnet.envs.generate.dense_network`), random actions in
  [-1, 1] through :meth:`BatchedInventoryEnv.step` (decode + core step + observations + rewards);
  node-steps = B x N x steps.
- ``pettingzoo_env_steps_per_s_3node`` / ``_10node``: the PettingZoo ``ParallelEnv`` on
  ``serial_3stage`` and ``network_10`` with random actions (pre-drawn), resets included.

Usage: ``.venv/bin/python benchmarks/env_throughput.py [--seconds 3] [--repeats 3]``. The three keys are
the best wall-clock rate over the repeats; ``wall_runs`` lists every run, ``cpu_time_rates`` divides by
this process's CPU time (what the code does with a core to itself on a shared machine), and
``load_average_1min`` says how busy the machine was.
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


def batched_node_steps_per_s(seconds: float, batch_size: int = 1024) -> tuple[float, float]:
    env = BatchedInventoryEnv(parse_scenario(dense_network(10, 4)), batch_size, seed=0)
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


def pettingzoo_env_steps_per_s(scenario: str, seconds: float) -> tuple[float, float]:
    env = parallel_env(load_scenario(scenario))
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
    args = p.parse_args()
    figures = {
        "batched_node_steps_per_s": lambda: batched_node_steps_per_s(args.seconds),
        "pettingzoo_env_steps_per_s_3node": lambda: pettingzoo_env_steps_per_s("serial_3stage", args.seconds),
        "pettingzoo_env_steps_per_s_10node": lambda: pettingzoo_env_steps_per_s("network_10", args.seconds),
    }
    wall: dict[str, list[float]] = {k: [] for k in figures}
    cpu: dict[str, list[float]] = {k: [] for k in figures}
    load_before = os.getloadavg()[0]
    for _ in range(args.repeats):
        for key, fn in figures.items():
            w, c = fn()
            wall[key].append(w)
            cpu[key].append(c)
    out: dict[str, object] = {k: round(max(v), 1) for k, v in wall.items()}
    out["wall_runs"] = {k: [round(x, 1) for x in v] for k, v in wall.items()}
    # per CPU-second of this process: what the code does when it has a core to itself (shared machine)
    out["cpu_time_rates"] = {k: round(max(v), 1) for k, v in cpu.items()}
    out["load_average_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    out["cpus"] = os.cpu_count()
    out["seconds_per_run"] = args.seconds
    out["python"] = platform.python_version()
    out["numpy"] = np.__version__
    print(json.dumps(out))


if __name__ == "__main__":
    main()
