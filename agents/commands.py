"""CLI for the baselines: ``invnet baselines tune|list`` and ``invnet bound`` (registered by ``invnet.cli``)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import typer


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON to ``path`` via a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, default=float)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def register(app: typer.Typer) -> None:
    """Add the ``baselines`` sub-app and the ``bound`` command to the invnet CLI."""
    from invnet.cli import console, emit_json, fail, load_scenario_or_exit

    baselines_app = typer.Typer(help="Classical baselines: tune their parameters, list them.", no_args_is_help=True)
    app.add_typer(baselines_app, name="baselines")

    @baselines_app.command("tune")
    def tune_cmd(
        scenario: str = typer.Option(..., "--scenario", "-s", help="Scenario YAML path or shipped scenario name."),
        policy: str = typer.Option(..., "--policy", "-p", help="Baseline to tune, e.g. base_stock or base_stock+tie."),
        episodes: int = typer.Option(100, "--episodes", "-n", min=1, help="Episodes (common random numbers)."),
        seed: int = typer.Option(0, "--seed", help="Seed of episode 0; episode e uses seed + e."),
        max_seconds: float = typer.Option(50.0, "--max-seconds", min=0.1, help="Time budget for the search."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
        out: Path | None = typer.Option(None, "--out", help="Write the JSON to FILE (replay: simulate --params)."),
    ) -> None:
        """Tune a baseline by simulation optimisation (CRN); print tuned parameters and cost per period ± 95% CI."""
        from invnet.agents.tuning import tune
        from invnet.envs.network import compile_network

        net = compile_network(load_scenario_or_exit(scenario))
        try:
            res = tune(net, policy, episodes=episodes, seed=seed, max_seconds=max_seconds)
        except ValueError as e:
            fail(str(e))
        obj = {**res.to_json(), "scenario": net.scenario.name, "episodes": episodes, "seed": seed}
        if out is not None:
            try:
                write_json_atomic(out, obj)
            except OSError as e:
                fail(f"--out: cannot write {out}: {e}")
        if as_json:
            emit_json(obj)
            return
        console.print(
            f"[bold]{net.scenario.name}[/]: {policy} tuned on {episodes} episodes (seed {seed}) in {res.seconds:.1f}s"
        )
        console.print(f"cost per period: {res.total_cost:.3f} ± {res.total_cost_ci95:.3f} (95% CI)")
        console.print_json(json.dumps(res.params, default=float))
        if out is not None:
            console.print(f"written to {out} (replay: invnet simulate -s {scenario} -p {policy} --params {out})")

    @baselines_app.command("list")
    def list_cmd(
        scenario: str = typer.Option("hub_spoke", "--scenario", "-s", help="Scenario for the analytic parameters."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
    ) -> None:
        """The registered baselines and their analytic (untuned) parameters for a scenario."""
        from invnet.agents.baselines import REPLENISHMENT
        from invnet.agents.registry import make_policy
        from invnet.agents.transfers import TRANSFERS
        from invnet.envs.network import compile_network

        net = compile_network(load_scenario_or_exit(scenario))
        names = list(REPLENISHMENT) + [f"base_stock+{t}" for t in TRANSFERS]
        obj = {n: make_policy(n, net).params() for n in names}
        if as_json:
            emit_json(obj)
            return
        for n, p in obj.items():
            console.print(f"[bold]{n}[/]: {json.dumps(p, default=float)}", highlight=False)
        console.print(f"(any replenishment policy combines with transfers: <name>+{'|'.join(TRANSFERS)})")

    @app.command("bound")
    def bound_cmd(
        scenario: str = typer.Option(..., "--scenario", "-s", help="Scenario YAML path or shipped scenario name."),
        episodes: int = typer.Option(100, "--episodes", "-n", min=1, help="Episodes (same paths as simulate)."),
        seed: int = typer.Option(0, "--seed", help="Seed of episode 0; episode e uses seed + e."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
    ) -> None:
        """Hindsight (perfect-information) LP lower bound: mean cost per period after warm-up ± 95% CI."""
        from invnet.agents.bound import hindsight_bound
        from invnet.envs.network import compile_network

        net = compile_network(load_scenario_or_exit(scenario))
        try:
            res = hindsight_bound(net, episodes, seed)
        except (ValueError, RuntimeError) as e:
            fail(str(e))
        obj = {
            "scenario": net.scenario.name,
            "total_cost": res.total_cost,
            "total_cost_ci95": res.total_cost_ci95,
            "episodes": episodes,
            "seed": seed,
            "seconds": res.seconds,
        }
        if as_json:
            emit_json(obj)
            return
        console.print(
            f"[bold]{net.scenario.name}[/]: hindsight bound {res.total_cost:.3f} ± {res.total_cost_ci95:.3f} per period"
            f" ({episodes} episodes, seed {seed}, {res.seconds:.1f}s; fixed costs relaxed, no policy can do better)"
        )
