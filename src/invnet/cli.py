"""The ``invnet`` command line (typer + rich).

Core commands live here (``simulate``, ``scenario``); each subpackage adds its own through a
``register(app)`` function in its ``commands`` module, imported lazily so ``invnet --help`` stays fast
(heavy imports such as torch, mlflow and fastapi happen inside the commands).
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    help="invnet: learn to balance inventory across a network.", no_args_is_help=True, add_completion=False
)
scenario_app = typer.Typer(help="Validate and inspect scenario files.", no_args_is_help=True)
app.add_typer(scenario_app, name="scenario")
console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> None:
    """Print a clear error (no traceback) and exit."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def load_scenario_or_exit(path: str):  # noqa: ANN201
    from invnet.envs.scenario import ScenarioError, load_scenario

    try:
        return load_scenario(path)
    except ScenarioError as e:
        fail(str(e))


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=None, default=float) + "\n")


def load_params_file(path: Path | None) -> dict[str, Any]:
    """Policy parameters from a JSON file (as written by ``invnet baselines tune --json``)."""
    if path is None:
        return {}
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        fail(f"--params: file not found: {path}")
    except json.JSONDecodeError as e:
        fail(f"--params: not valid JSON ({e})")
    if isinstance(data, dict) and "params" in data and isinstance(data["params"], dict):
        data = data["params"]
    if not isinstance(data, dict):
        fail("--params: expected a JSON object of policy parameters")
    return data


@app.command()
def simulate(
    scenario: str = typer.Option(..., "--scenario", "-s", help="Scenario YAML path or shipped scenario name."),
    policy: str = typer.Option("order_up_to", "--policy", "-p", help="Policy name, bundle path or MLflow model URI."),
    episodes: int = typer.Option(100, "--episodes", "-n", min=1, help="Episodes (common random numbers)."),
    seed: int = typer.Option(0, "--seed", help="Seed of episode 0; episode e uses seed + e."),
    params: Path | None = typer.Option(None, "--params", help="JSON file of policy parameters (e.g. tuned levels)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    """Run episodes of a policy and report mean cost per period (95% CI), cost breakdown and fill rate."""
    from invnet.agents.registry import resolve_policy
    from invnet.envs.network import compile_network
    from invnet.envs.rollout import COST_TERMS, mean_ci95, rollout

    sc = load_scenario_or_exit(scenario)
    net = compile_network(sc)
    try:
        pol = resolve_policy(policy, net, **load_params_file(params))
    except (ValueError, FileNotFoundError) as e:
        fail(str(e))
    traj = rollout(net, pol, episodes, seed)
    total, ci = mean_ci95(traj.cost_per_period())
    w = net.warmup
    served = traj["served_now"][:, w:].sum()
    demand = traj["demand"][:, w:].sum()
    result = {
        "scenario": sc.name,
        "policy": pol.name,
        "total_cost": total,
        "total_cost_ci95": ci,
        **{k: float(traj.term_per_period(k).mean()) for k in COST_TERMS},
        "fill_rate": float(served / demand) if demand > 0 else 1.0,
        "episodes": episodes,
        "seed": seed,
        "periods": net.periods,
        "warmup": w,
    }
    if as_json:
        emit_json(result)
        return
    table = Table(title=f"{sc.name}: {pol.name} ({episodes} episodes, seed {seed}, cost per period after {w} warm-up)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("total cost", f"{total:.3f} ± {ci:.3f}")
    for k in COST_TERMS:
        table.add_row(k.replace("_", " "), f"{result[k]:.3f}")
    table.add_row("fill rate", f"{result['fill_rate']:.2%}")
    console.print(table)


@scenario_app.command("validate")
def scenario_validate(path: str = typer.Argument(..., help="Scenario YAML path or shipped scenario name.")) -> None:
    """Check a scenario file; print every problem with its field path."""
    sc = load_scenario_or_exit(path)
    console.print(f"[green]ok[/]: {sc.name} ({len(sc.nodes)} nodes, {len(sc.lanes)} lanes, {len(sc.skus)} SKU(s))")


@scenario_app.command("show")
def scenario_show(path: str = typer.Argument(..., help="Scenario YAML path or shipped scenario name.")) -> None:
    """A readable summary: nodes, lanes, lead times, demand and costs."""
    from invnet.envs.network import compile_network

    sc = load_scenario_or_exit(path)
    net = compile_network(sc)
    console.print(f"[bold]{sc.name}[/]: {sc.description}")
    console.print(
        f"periods {sc.periods} (warm-up {sc.warmup}), shortage {sc.shortage}, SKUs {', '.join(sc.skus)}, "
        f"reward {sc.agents.reward}, action mode {sc.agents.action_mode}"
    )
    nt = Table(title="nodes")
    for c in ("id", "kind", "source", "lead time", "capacity", "holding", "initial", "mean demand/period"):
        nt.add_column(c)
    for i, n in enumerate(sc.nodes):
        lt = n.lead_time if isinstance(n.lead_time, int) else f"{n.lead_time.values} p={n.lead_time.probs}"
        if n.source != "supplier":
            lt = f"lane {net.lane_lead[net.source_lane[i]]}"
        nt.add_row(
            n.id,
            n.kind,
            n.source,
            str(lt),
            f"{n.capacity:g}",
            f"{n.holding_cost:g}",
            f"{net.initial_stock[i].sum():g}",
            f"{net.mean_demand[:, i].sum(axis=1).mean():.2f}",
        )
    console.print(nt)
    if sc.lanes:
        lt_ = Table(title="lanes")
        for c in ("from", "to", "lead time", "unit cost", "fixed cost", "capacity"):
            lt_.add_column(c)
        for ln in sc.lanes:
            lt_.add_row(
                ln.from_, ln.to, str(ln.lead_time), f"{ln.unit_cost:g}", f"{ln.fixed_cost:g}", f"{ln.capacity:g}"
            )
        console.print(lt_)
    c = sc.costs
    console.print(
        f"costs: shortage {c.shortage_penalty:g} "
        f"({'per unit per period' if sc.shortage == 'backorder' else 'per lost unit'}),"
        f" order fixed {c.order_fixed:g} + unit {c.order_unit:g}, pipeline holding {c.pipeline_holding}"
    )
    if sc.demand.correlation:
        console.print(f"demand correlation {sc.demand.correlation:g}")
    for sh in sc.demand.shocks:
        console.print(f"shock: x{sh.multiplier:g} at {sh.nodes} from period {sh.start} for {sh.duration}")
    for d in sc.disruptions:
        console.print(f"disruption: {d.node} from period {d.start} for {d.duration}")


@scenario_app.command("list")
def scenario_list() -> None:
    """The scenarios shipped with invnet."""
    from invnet.envs.scenario import builtin_scenario_dir, list_builtin_scenarios, load_scenario

    for name in list_builtin_scenarios():
        console.print(f"{name:18s} {load_scenario(name).description}  ({builtin_scenario_dir() / (name + '.yaml')})")


def _register_plugins() -> None:
    for mod in (
        "invnet.agents.commands",
        "invnet.training.commands",
        "invnet.evaluation.commands",
        "invnet.serving.commands",
    ):
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name == mod:
                continue
            raise
        m.register(app)


_register_plugins()

if __name__ == "__main__":
    app()
