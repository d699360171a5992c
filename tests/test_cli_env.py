"""The ``invnet simulate`` and ``invnet scenario`` commands (typer CliRunner)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from invnet.envs import list_builtin_scenarios
from typer.testing import CliRunner

from invnet.cli import app

runner = CliRunner()
SIMULATE_KEYS = {
    "total_cost",
    "total_cost_ci95",
    "holding_cost",
    "shortage_cost",
    "order_cost",
    "transfer_cost",
    "fill_rate",
    "episodes",
}


def bad_file(tmp_path: Path) -> Path:
    data = {
        "name": "bad",
        "periods": 5,
        "nodes": [{"id": "a", "holding_cost": 1, "capacity": 2, "initial_stock": 5}],
        "lanes": [{"from": "a", "to": "zz"}],
        "demand": {},
    }
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def flat(text: str) -> str:
    """Undo rich's line wrapping so messages can be matched whole."""
    return " ".join(text.split())


def test_validate_bad_file_exits_2_with_every_message(tmp_path: Path) -> None:
    res = runner.invoke(app, ["scenario", "validate", str(bad_file(tmp_path))])
    assert res.exit_code == 2
    out = flat(res.output)
    assert "lanes[0].to: unknown node 'zz'" in out
    assert "nodes[0:a].capacity: 2 is below the initial stock 5" in out
    assert "demand.a: missing demand for store node 'a'" in out
    assert "Traceback" not in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)


def test_validate_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "broken.yaml"
    p.write_text("nodes: [")
    res = runner.invoke(app, ["scenario", "validate", str(p)])
    assert res.exit_code == 2 and "not valid YAML" in flat(res.output) and "Traceback" not in res.output
    res = runner.invoke(app, ["scenario", "validate", str(tmp_path / "none.yaml")])
    assert res.exit_code == 2 and "file not found" in flat(res.output)


def test_validate_bad_replay_table_exits_2(tmp_path: Path) -> None:
    (tmp_path / "h.csv").write_text("period,node,qty\n0,a,1\n")
    data = {
        "name": "replay",
        "periods": 3,
        "nodes": [{"id": "a", "holding_cost": 1}],
        "demand": {"replay": "h.csv"},
    }
    p = tmp_path / "r.yaml"
    p.write_text(yaml.safe_dump(data))
    res = runner.invoke(app, ["scenario", "validate", str(p)])
    assert res.exit_code == 2 and "demand.replay" in res.output and "lacks column(s) ['demand']" in flat(res.output)


@pytest.mark.parametrize("name", list_builtin_scenarios())
def test_validate_and_show_shipped(name: str) -> None:
    res = runner.invoke(app, ["scenario", "validate", name])
    assert res.exit_code == 0 and "ok" in res.output
    res = runner.invoke(app, ["scenario", "show", name])
    assert res.exit_code == 0, res.output
    assert name in res.output and "nodes" in res.output and "costs:" in flat(res.output)


def test_scenario_list_names_every_shipped_scenario() -> None:
    res = runner.invoke(app, ["scenario", "list"])
    assert res.exit_code == 0
    for name in list_builtin_scenarios():
        assert name in res.output


@pytest.mark.parametrize("policy", ["do_nothing", "random", "order_up_to"])
def test_simulate_json_keys(policy: str) -> None:
    res = runner.invoke(
        app, ["simulate", "--scenario", "two_stores", "--policy", policy, "--episodes", "3", "--seed", "5", "--json"]
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert SIMULATE_KEYS <= set(out)
    assert out["episodes"] == 3
    parts = sum(out[k] for k in ("holding_cost", "shortage_cost", "order_cost", "transfer_cost"))
    assert out["total_cost"] == pytest.approx(parts)
    assert 0.0 <= out["fill_rate"] <= 1.0 and out["total_cost_ci95"] >= 0


def test_simulate_is_reproducible_and_seed_sensitive() -> None:
    args = ["simulate", "-s", "single_node", "-p", "order_up_to", "-n", "4", "--json"]
    a = json.loads(runner.invoke(app, [*args, "--seed", "1"]).stdout)
    b = json.loads(runner.invoke(app, [*args, "--seed", "1"]).stdout)
    c = json.loads(runner.invoke(app, [*args, "--seed", "2"]).stdout)
    assert a["total_cost"] == b["total_cost"] and a["total_cost"] != c["total_cost"]


def test_simulate_table_output() -> None:
    res = runner.invoke(app, ["simulate", "-s", "two_stores", "-p", "do_nothing", "-n", "2"])
    assert res.exit_code == 0
    assert "total cost" in res.output and "fill rate" in res.output


def test_simulate_errors_exit_2_without_traceback(tmp_path: Path) -> None:
    res = runner.invoke(app, ["simulate", "--scenario", str(bad_file(tmp_path)), "--json"])
    assert res.exit_code == 2 and "unknown node 'zz'" in flat(res.output) and "Traceback" not in res.output
    res = runner.invoke(app, ["simulate", "--scenario", "two_stores", "--policy", "no_such_policy"])
    assert res.exit_code == 2 and "no_such_policy" in flat(res.output)
    res = runner.invoke(app, ["simulate", "--scenario", "two_stores", "--episodes", "0"])
    assert res.exit_code == 2


def test_order_up_to_params_round_trip() -> None:
    import json

    import numpy as np
    from invnet.agents.registry import make_policy
    from invnet.envs import compile_network, load_scenario

    net = compile_network(load_scenario("hub_spoke"))
    pol = make_policy("order_up_to", net, levels={"dc": 300, "store_east": [40]})
    assert pol.levels.shape == (net.n_nodes, net.n_skus)
    assert pol.levels[0, 0] == 300 and pol.levels[net.node_ids.index("store_east"), 0] == 40
    again = make_policy("order_up_to", net, **json.loads(json.dumps(pol.params())))
    np.testing.assert_array_equal(again.levels, pol.levels)
    with pytest.raises(ValueError, match="levels: unknown node"):
        make_policy("order_up_to", net, levels={"nowhere": 3})
