"""``invnet evaluate`` and ``invnet benchmark`` through typer's CliRunner; suite validation."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from invnet.evaluation.benchmark import SuiteError, load_suite, parse_suite, run_benchmark
from typer.testing import CliRunner

from invnet.cli import app

runner = CliRunner()


def test_evaluate_json() -> None:
    r = runner.invoke(
        app,
        ["evaluate", "-s", "two_stores", "-p", "order_up_to", "-p", "do_nothing", "-p", "order_up_to",
         "--episodes", "5", "--seed", "7", "--json"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert list(res["policies"]) == ["order_up_to", "do_nothing", "order_up_to#2"]
    assert res["reference"] == "order_up_to" and res["episodes"] == 5 and res["seed"] == 7
    out = res["policies"]["order_up_to"]["total_cost"]
    assert out["mean"] > 0 and out["ci95"] > 0
    # the same policy twice on common random numbers: exactly zero difference
    assert res["policies"]["order_up_to#2"]["vs_reference"]["total_cost"] == {"diff": 0.0, "ci95": 0.0, "rel": 0.0}
    assert res["policies"]["do_nothing"]["vs_reference"]["total_cost"]["diff"] > 0


def test_evaluate_reference_and_report(tmp_path: Path) -> None:
    r = runner.invoke(
        app,
        ["evaluate", "-s", "two_stores", "-p", "order_up_to", "-p", "do_nothing", "--episodes", "3",
         "--reference", "do_nothing", "--report", str(tmp_path / "rep"), "--json"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["reference"] == "do_nothing"
    assert res["policies"]["order_up_to"]["vs_reference"]["total_cost"]["diff"] < 0
    assert Path(res["report"]).exists() and (tmp_path / "rep" / "report.md").exists()
    assert "name: two_stores" in (tmp_path / "rep" / "scenario.yaml").read_text()  # the exact config next to results


def test_evaluate_table_output() -> None:
    r = runner.invoke(app, ["evaluate", "-s", "two_stores", "-p", "order_up_to", "--episodes", "3"])
    assert r.exit_code == 0, r.output
    assert "order_up_to" in r.output and "reference" in r.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-p", "no_such_policy"], "--policy no_such_policy: 'no_such_policy' is neither a known policy"),
        (["-p", "./missing/bundle"], "--policy ./missing/bundle"),
        (["-p", "order_up_to", "--reference", "nope"], "--reference: 'nope' is not one of the evaluated policies"),
    ],
)
def test_evaluate_errors(args: list[str], message: str) -> None:
    r = runner.invoke(app, ["evaluate", "-s", "two_stores", "--episodes", "2", *args])
    assert r.exit_code == 2
    assert message in " ".join(r.output.split())
    assert "Traceback" not in r.output


def test_evaluate_unknown_scenario() -> None:
    r = runner.invoke(app, ["evaluate", "-s", "no_such_scenario", "-p", "order_up_to"])
    assert r.exit_code == 2 and "scenario: file not found" in r.output


def _suite(tmp_path: Path, **kw: object) -> dict:
    data = {
        "name": "tiny",
        "scenarios": ["two_stores", "single_node"],
        "policies": ["order_up_to", {"name": "do_nothing", "label": "idle"}],
        "episodes": 3,
        "bound": False,
        "out": str(tmp_path / "bench"),
    }
    data.update(kw)
    return data


def test_benchmark_table(tmp_path: Path) -> None:
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(_suite(tmp_path)))
    r = runner.invoke(app, ["benchmark", "--suite", str(path)])
    assert r.exit_code == 0, r.output
    table = pd.read_csv(tmp_path / "bench" / "results.csv")
    assert list(zip(table["scenario"], table["policy"], strict=True)) == [
        ("two_stores", "order_up_to"),
        ("two_stores", "idle"),
        ("single_node", "order_up_to"),
        ("single_node", "idle"),
    ]
    assert (table.loc[table["policy"] == "idle", "diff_vs_reference"] > 0).all()
    md = (tmp_path / "bench" / "results.md").read_text()
    assert "| two_stores | idle |" in md and "Machine:" in md
    assert (tmp_path / "bench" / "two_stores" / "report.html").stat().st_size > 0
    assert (tmp_path / "bench" / "two_stores" / "scenario.yaml").exists()
    assert load_suite(tmp_path / "bench" / "suite.yaml").scenarios == ["two_stores", "single_node"]  # re-runnable


def test_benchmark_reference_label(tmp_path: Path) -> None:
    res = run_benchmark(parse_suite(_suite(tmp_path, scenarios=["single_node"], reference="idle")))
    row = res.table.set_index("policy").loc["order_up_to"]
    assert row["diff_vs_reference"] < 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"episodes": 1}, "episodes: Input should be greater than or equal to 2"),
        ({"scenarios": ["nowhere"]}, "scenarios[0]: scenario not found: 'nowhere'"),
        ({"policies": ["no_such_policy"]}, "policies[0].name: unknown policy 'no_such_policy'"),
        ({"policies": ["order_up_to", "order_up_to"]}, "policies: duplicate labels ['order_up_to']"),
        ({"reference": "zz"}, "reference: 'zz' is not a policy label"),
        ({"colour": "blue"}, "colour: unknown field"),
        ({"policies": [{"name": "base_stock", "tune": "maybe"}]}, "policies.0.tune"),
    ],
)
def test_suite_validation(tmp_path: Path, change: dict, message: str) -> None:
    with pytest.raises(SuiteError) as e:
        parse_suite(_suite(tmp_path, **change))
    assert message in str(e.value)


def test_suite_files(tmp_path: Path) -> None:
    s = load_suite("configs/benchmarks/default.yaml")
    assert s.name == "default" and s.reference in s.labels and "hub_spoke" in s.scenarios
    assert load_suite("default") == s  # a shipped suite by name
    with pytest.raises(SuiteError, match="file not found"):
        load_suite(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(SuiteError, match="not valid YAML"):
        load_suite(bad)
    r = runner.invoke(app, ["benchmark", "--suite", str(bad)])
    assert r.exit_code == 2 and "not valid YAML" in r.output


def test_evaluate_with_bound() -> None:
    r = runner.invoke(
        app, ["evaluate", "-s", "two_stores", "-p", "order_up_to", "-p", "do_nothing", "--episodes", "3", "--bound",
              "--json"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    b = res["bound"]["total_cost"]["mean"]
    assert all(b <= p["total_cost"]["mean"] + 1e-6 for p in res["policies"].values())  # a lower bound on these paths
    assert res["policies"]["order_up_to"]["gap_closed"] == 0.0
    assert res["policies"]["do_nothing"]["gap_closed"] < 0  # worse than the reference


def test_evaluate_params_file(tmp_path: Path) -> None:
    from invnet.agents.registry import make_policy
    from invnet.envs.network import compile_network
    from invnet.envs.rollout import rollout
    from invnet.envs.scenario import load_scenario

    net = compile_network(load_scenario("two_stores"))
    params = make_policy("base_stock", net).params()
    params["levels"] = {n: [2 * v for v in lv] for n, lv in params["levels"].items()}
    f = tmp_path / "tuned.json"
    f.write_text(json.dumps({"policy": "base_stock", "params": params}))  # the `baselines tune --json` shape
    r = runner.invoke(
        app, ["evaluate", "-s", "two_stores", "-p", "base_stock", "--params", f"base_stock={f}", "-n", "3", "--json"]
    )
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)["policies"]["base_stock"]["total_cost"]["mean"]
    expected = rollout(net, make_policy("base_stock", net, **params), 3, 0).cost_per_period().mean()
    assert got == pytest.approx(expected)
    r = runner.invoke(app, ["evaluate", "-s", "two_stores", "-p", "order_up_to", "--params", f"base_stock={f}"])
    assert r.exit_code == 2 and "--params: base_stock is not one of the --policy SPECs" in r.output
    r = runner.invoke(app, ["evaluate", "-s", "two_stores", "-p", "base_stock", "--params", "base_stock"])
    assert r.exit_code == 2 and "expected SPEC=FILE" in r.output


def test_benchmark_policy_error_names_the_entry(tmp_path: Path) -> None:
    path = tmp_path / "suite.yaml"
    bad = {"name": "order_up_to", "label": "bad", "params": {"no_such_param": 1}}
    path.write_text(yaml.safe_dump(_suite(tmp_path, scenarios=["single_node"], policies=["order_up_to", bad])))
    r = runner.invoke(app, ["benchmark", "--suite", str(path)])
    assert r.exit_code == 2, r.output
    assert "policies[1] (bad) on scenario single_node:" in " ".join(r.output.split())
