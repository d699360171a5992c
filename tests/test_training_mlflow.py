"""MLflow tracking of training runs: default store, params/tags/metrics/artifacts, pyfunc model, registry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from invnet.envs import ENV_ID, compile_network, load_scenario
from invnet.envs.core import State
from invnet.training.api import train
from invnet.training.bundle import action_to_frame, load_mlflow_policy, state_from_frame
from invnet.training.config import make_config
from invnet.training.tracking import tracking_uri


def test_tracking_uri_defaults_to_sqlite_in_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_DISABLE_TELEMETRY", raising=False)
    monkeypatch.chdir(tmp_path)
    assert tracking_uri() == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    import os

    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert tracking_uri() == "http://mlflow.example:5000"


def test_run_is_logged_with_model_that_predicts_and_registers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    cfg = make_config(
        {
            "scenario": "two_stores",
            "algo": "mappo",
            "steps": 3 * 4 * 26,
            "n_envs": 4,
            "n_steps": 26,  # 3 iterations of half an episode: one episode completes
            "epochs": 1,
            "minibatches": 2,
            "hidden": [16],
            "eval_every": 1,
            "eval_episodes": 2,
            "final_episodes": 2,
            "base_policy": "scenario",
            "out": str(tmp_path / "run"),
            "experiment": "test-exp",
            "register_as": "invnet-test-policy",
        }
    )
    res = train(cfg, progress=False)
    assert res.run_id and res.model_uri
    client = mlflow.MlflowClient()
    run = client.get_run(res.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["algo"] == "mappo" and run.data.params["derived.iterations"] == "3"
    assert run.data.tags["env_id"] == ENV_ID and "git_commit" in run.data.tags
    assert run.data.tags["version.torch"].startswith("2.")
    for key in ("eval_cost", "baseline_ratio", "value_loss", "entropy", "train_fill_rate"):
        assert key in run.data.metrics, key
    assert len(client.get_metric_history(res.run_id, "eval_cost")) == 3
    arts = {a.path for a in client.list_artifacts(res.run_id, "results")}
    assert {"results/learning_curve.png", "results/final_eval.csv", "results/curve.json"} <= arts
    assert "config/train_config.json" in {a.path for a in client.list_artifacts(res.run_id, "config")}
    assert "bundle/policy.json" in {a.path for a in client.list_artifacts(res.run_id, "bundle")}
    # artifacts live next to the database, not in the repository
    assert (tmp_path / "mlartifacts").exists()

    net = compile_network(load_scenario("two_stores"))
    pol = load_mlflow_policy(res.model_uri, net)
    frame = pd.DataFrame(
        {
            "node": ["store_a", "store_b", "store_a", "store_b"],
            "batch": [0, 0, 1, 1],
            "on_hand": [5.0, 60.0, 30.0, 30.0],
            "pipeline": [[10.0, 0.0], [0.0, 5.0], [], []],
            "t": [10, 10, 10, 10],
        }
    )
    model = mlflow.pyfunc.load_model(res.model_uri)
    out = model.predict(frame)
    assert list(out.columns) == ["batch", "kind", "node", "to", "sku", "quantity"]
    assert len(out) == 2 * (2 + 2)  # per state: 2 orders + 2 lane transfers
    state = state_from_frame(net, frame)
    want = action_to_frame(net, pol.act(state))
    assert np.allclose(out["quantity"].to_numpy(), want["quantity"].to_numpy())
    # registered in the model registry and loadable by name
    reg = load_mlflow_policy("models:/invnet-test-policy/1", net)
    assert np.allclose(reg.act(state).orders, pol.act(state).orders)


def test_state_from_frame_validates_columns() -> None:
    net = compile_network(load_scenario("two_stores"))
    with pytest.raises(ValueError, match="on_hand"):
        state_from_frame(net, {"node": ["store_a"]})
    with pytest.raises(ValueError, match="nowhere"):
        state_from_frame(net, {"node": ["nowhere"], "on_hand": [1.0]})
    with pytest.raises(ValueError, match="pipeline"):
        state_from_frame(net, {"node": ["store_a"], "on_hand": [1.0], "pipeline": [[1.0, 2.0, 3.0]]})
    s = state_from_frame(net, {"node": ["store_b"], "on_hand": [7.0], "pipeline": [[1.0, 2.0]]})
    assert isinstance(s, State) and s.on_hand[0, 1, 0] == 7.0 and s.inventory_position[0, 1, 0] == 10.0


def test_unreachable_tracking_server_is_a_clear_cli_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from invnet.cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # discard port: connection refused
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    r = CliRunner().invoke(app, ["train", "-s", "single_node", "--steps", "64", "--no-progress"])
    assert r.exit_code == 2 and "MLflow tracking at http://127.0.0.1:9" in r.output
    assert not (tmp_path / "runs").exists()  # failed before any work
