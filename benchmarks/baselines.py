"""Benchmark every classical baseline and the hindsight bound on the shipped scenarios.

For each scenario and baseline: tune by simulation optimisation (common random numbers) on
``--tune-episodes`` episodes seeded ``--tune-seed``, then evaluate the tuned policy and the hindsight
LP bound on ``--episodes`` *other* episodes seeded ``--seed`` (the same paths for every row).
Prints a Markdown table (cost per period after warm-up, mean ± 95% CI; tuning seconds) or JSON.

    .venv/bin/python benchmarks/baselines.py                 # all shipped scenarios
    .venv/bin/python benchmarks/baselines.py --scenarios two_stores hub_spoke --json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from invnet.agents.bound import hindsight_bound
from invnet.agents.registry import make_policy
from invnet.agents.tuning import start_point, tune
from invnet.envs.network import Network, compile_network
from invnet.envs.rollout import mean_ci95, rollout
from invnet.envs.scenario import list_builtin_scenarios, load_scenario

POLICIES = [
    "base_stock",
    "echelon_base_stock",
    "capped_base_stock",
    "s_S",
    "constant_order",
    "base_stock+threshold",
    "base_stock+tie",
    "base_stock+mincost",
]
LARGE = {"large_50"}  # fewer episodes and a shorter search on the 50-node network


def applicable(net: Network, name: str) -> bool:
    """Transfer combinations need lateral lanes; echelon base-stock needs internal nodes."""
    if "+" in name:
        return bool(np.any(~net.is_source_lane))
    if name == "echelon_base_stock":
        return bool(np.any(net.source_node >= 0))
    return True


def run(scenarios: list[str], episodes: int, seed: int, tune_episodes: int, tune_seed: int, max_seconds: float) -> list:
    rows: list[dict[str, Any]] = []
    for sc_name in scenarios:
        net = compile_network(load_scenario(sc_name))
        large = sc_name in LARGE
        E = max(8, episodes // 4) if large else episodes
        Et = max(8, tune_episodes // 4) if large else tune_episodes
        budget = max_seconds
        tuned_levels: dict[str, Any] = {}
        for name in POLICIES:
            if not applicable(net, name):
                continue
            if large and name.endswith("+mincost"):
                Et_m, budget_m = max(4, Et // 2), budget / 2
            else:
                Et_m, budget_m = Et, budget
            start = None
            repl = name.partition("+")[0]
            if "+" in name and repl in tuned_levels:  # combos start from the tuned replenishment levels
                start = {**start_point(net, name), "levels": tuned_levels[repl]}
            res = tune(net, name, episodes=Et_m, seed=tune_seed, max_seconds=budget_m, start=start)
            if "levels" in res.params and "+" not in name:
                tuned_levels[name] = np.array([res.params["levels"][n] for n in net.node_ids])
            t0 = time.perf_counter()
            cost = rollout(net, make_policy(name, net, **res.params), E, seed).cost_per_period()
            m, ci = mean_ci95(cost)
            rows.append(
                {
                    "scenario": sc_name,
                    "policy": name,
                    "total_cost": m,
                    "total_cost_ci95": ci,
                    "tune_seconds": res.seconds,
                    "tune_cost": res.total_cost,
                    "eval_seconds": time.perf_counter() - t0,
                    "episodes": E,
                    "tune_episodes": Et_m,
                    "params": res.params,
                }
            )
            print(f"[{sc_name}] {name}: {m:.2f} ± {ci:.2f} (tuned in {res.seconds:.1f}s)", file=sys.stderr)
        b = hindsight_bound(net, E, seed)
        rows.append(
            {
                "scenario": sc_name,
                "policy": "hindsight bound",
                "total_cost": b.total_cost,
                "total_cost_ci95": b.total_cost_ci95,
                "tune_seconds": None,
                "eval_seconds": b.seconds,
                "episodes": E,
            }
        )
        print(f"[{sc_name}] bound: {b.total_cost:.2f} ± {b.total_cost_ci95:.2f} ({b.seconds:.1f}s)", file=sys.stderr)
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    """One row per scenario, one column per policy: ``cost ± ci (tuning s)``."""
    scen = list(dict.fromkeys(r["scenario"] for r in rows))
    cols = [*POLICIES, "hindsight bound"]
    head = "| scenario (episodes) | " + " | ".join(c.replace("base_stock+", "bs+") for c in cols) + " |"
    lines = [head, "|" + "---|" * (len(cols) + 1)]
    for s in scen:
        cells = []
        by = {r["policy"]: r for r in rows if r["scenario"] == s}
        best = min((r["total_cost"] for p, r in by.items() if p != "hindsight bound"), default=None)
        for c in cols:
            r = by.get(c)
            if r is None:
                cells.append("—")
                continue
            txt = f"{r['total_cost']:.2f} ± {r['total_cost_ci95']:.2f}"
            if r["tune_seconds"] is not None:
                txt += f" ({r['tune_seconds']:.0f}s)"
            if c != "hindsight bound" and r["total_cost"] == best:
                txt = f"**{txt}**"
            cells.append(txt)
        eps = next(iter(by.values()))["episodes"]
        lines.append(f"| {s} ({eps}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", nargs="*", default=None, help="scenario names (default: all shipped)")
    ap.add_argument("--episodes", type=int, default=100, help="evaluation episodes (large_50: a quarter)")
    ap.add_argument("--seed", type=int, default=1000, help="evaluation seed (episode e uses seed + e)")
    ap.add_argument("--tune-episodes", type=int, default=64, help="tuning episodes (large_50: a quarter)")
    ap.add_argument("--tune-seed", type=int, default=0)
    ap.add_argument("--max-seconds", type=float, default=30.0, help="tuning budget per policy and scenario")
    ap.add_argument("--json", action="store_true", help="print JSON rows instead of the Markdown table")
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON rows to this file (atomic)")
    a = ap.parse_args(argv)
    scenarios = a.scenarios or list_builtin_scenarios()
    t0 = time.perf_counter()
    rows = run(scenarios, a.episodes, a.seed, a.tune_episodes, a.tune_seed, a.max_seconds)
    meta = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "seconds": time.perf_counter() - t0,
        "command": "benchmarks/baselines.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    if a.out is not None:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=a.out.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=2, default=float)
        os.replace(tmp, a.out)
    if a.json:
        print(json.dumps({"meta": meta, "rows": rows}, default=float))
        return
    print(markdown(rows))
    print(
        f"\nCost per period after warm-up, mean ± 95% CI over {a.episodes} evaluation episodes (seed {a.seed}); "
        f"tuned on {a.tune_episodes} other episodes (seed {a.tune_seed}), tuning seconds in brackets; "
        f"bold = cheapest baseline. Total {meta['seconds']:.0f}s on {meta['machine']}."
    )


if __name__ == "__main__":
    main()
