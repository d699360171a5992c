"""``invnet serve``: fails fast with a clear message, serves a learned bundle, and runs a real uvicorn
server on loopback in a subprocess."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from invnet.envs.network import Network, compile_network
from invnet.envs.scenario import load_scenario
from typer.testing import CliRunner

from invnet.cli import app as cli_app

INVNET = str(Path(sys.executable).with_name("invnet"))


def make_bundle(path: Path, net: Network, seed: int = 0) -> Path:
    """A small untrained actor saved as a real policy bundle (training engineer's format)."""
    from invnet.training.actions import ActionMapper
    from invnet.training.bundle import save_bundle

    mapper = ActionMapper.build(net, "quantity", "neighbours")
    obs, act = mapper.spaces.obs_dim, mapper.spaces.action_dim
    rng = np.random.default_rng(seed)
    weights = [(rng.normal(0, 0.3, (obs, 16)), np.zeros(16)), (rng.normal(0, 0.3, (16, act)), np.zeros(act))]
    norm = {"mean": np.zeros(obs), "var": np.ones(obs), "clip": 10.0, "eps": 1e-8}
    return save_bundle(path, net, weights, norm, mapper, meta={"algo": "test", "evaluation": {"total_cost": 1.5}})


def _run_cli(args: list[str], env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(cli_app, ["serve", *args], env=env)


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["--scenario", "network_10", "--policy", "no_such_policy"], None, "neither a known policy"),
        (["--scenario", "network_10", "--policy", "/no/such/bundle.d"], None, "neither a known policy"),
        (["--scenario", "no_such_scenario.yaml", "--policy", "base_stock"], None, "scenario"),
        (["--scenario", "network_10", "--policy", "base_stock", "--port", "0"], None, "port (INVNET_PORT)"),
        (["--scenario", "network_10"], None, "policy (INVNET_POLICY): missing"),
        (["--scenario", "network_10", "--policy", "base_stock"], {"INVNET_MAX_BATCH": "many"}, "INVNET_MAX_BATCH"),
        (["--scenario", "network_10", "--policy", "base_stock"], {"INVNET_API_KEY": "short"}, "INVNET_API_KEY"),
    ],
)
def test_serve_fails_fast_with_clear_message(args: list[str], env: dict[str, str] | None, needle: str) -> None:
    r = _run_cli(args, env)
    out = r.output
    assert r.exit_code == 2, out
    assert "error:" in out and needle in " ".join(out.split())
    assert "Traceback" not in out


def test_serve_unknown_mlflow_model_fails_fast(tmp_path: Path) -> None:
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "MLFLOW_DISABLE_TELEMETRY": "true"}
    r = _run_cli(["--scenario", "network_10", "--policy", "models:/no-such-model/1"], env)
    text = " ".join(r.output.split())
    assert r.exit_code == 2 and "cannot load MLflow model 'models:/no-such-model/1'" in text
    assert "Traceback" not in r.output


def test_serve_refuses_bundle_trained_for_another_network(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "hub_bundle", compile_network(load_scenario("hub_spoke")))
    r = _run_cli(["--scenario", "network_10", "--policy", str(bundle)])
    assert r.exit_code == 2
    text = " ".join(r.output.split())
    assert "trained for another network" in text and "Traceback" not in r.output


def test_bundle_is_served_with_metadata_and_own_act(tmp_path: Path) -> None:
    from invnet.serving.app import create_app
    from invnet.serving.settings import ServingSettings
    from invnet.training.bundle import load_bundle_policy

    net = compile_network(load_scenario("hub_spoke"))
    bundle = make_bundle(tmp_path / "b", net)
    with TestClient(create_app(ServingSettings(scenario="hub_spoke", policy=str(bundle), gc_freeze=False))) as c:
        info = c.get("/v1/policies").json()
        assert info["trained_on"] == "hub_spoke" and info["metadata"]["evaluation"] == {"total_cost": 1.5}
        assert info["name"].startswith("learned")
        ex = c.get("/v1/example-state").json()
        body = c.post("/v1/recommendations", json=ex).json()
    from invnet.serving.schemas import RecommendationRequest
    from invnet.serving.service import build_state, load_policy

    lp = load_policy(net, str(bundle))
    state, _ = build_state(lp, [RecommendationRequest.model_validate(ex)])
    want = load_bundle_policy(bundle, net).act(state)
    np.testing.assert_allclose([n["order"] for n in body["nodes"]], want.orders[0, :, 0], rtol=1e-6, atol=1e-6)
    assert body["policy"]["version"] == info["version"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited early: {proc.stdout.read().decode() if proc.stdout else ''}")
        try:
            if httpx.get(url + "/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("server did not become ready")


def _serve(args: list[str]) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {**os.environ, "INVNET_API_KEY": "cli-test-key-123"}
    proc = subprocess.Popen(
        [INVNET, "serve", "--port", str(port), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
    )
    return proc, f"http://127.0.0.1:{port}"


def _stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def test_real_server_on_loopback() -> None:
    proc, url = _serve(["--scenario", "network_10", "--policy", "base_stock"])
    try:
        _wait_ready(url, proc)
        ex = httpx.get(url + "/v1/example-state").json()
        r = httpx.post(url + "/v1/recommendations", json=ex)
        assert r.status_code == 200 and len(r.json()["nodes"]) == 10
        bad = httpx.post(url + "/v1/recommendations", json={**ex, "t": -1})
        assert bad.status_code == 422
        r = httpx.post(
            url + "/v1/policies/reload", json={"policy": "order_up_to"}, headers={"X-API-Key": "cli-test-key-123"}
        )
        assert r.status_code == 200 and r.json()["name"] == "order_up_to"
        metrics = httpx.get(url + "/metrics").text
        assert 'route="/v1/recommendations",status="200"' in metrics
    finally:
        rc = _stop(proc)
    out = proc.stdout.read().decode() if proc.stdout else ""
    # uvicorn shuts down gracefully, then re-raises SIGTERM (exit -15) since 0.29; both are clean stops
    assert rc in (0, -signal.SIGTERM), out
    assert "Application shutdown complete" in out and "Traceback" not in out
    assert "serving base_stock" in out


@pytest.mark.slow
def test_real_server_with_two_workers() -> None:
    proc, url = _serve(["--scenario", "hub_spoke", "--policy", "base_stock", "--workers", "2"])
    try:
        _wait_ready(url, proc, timeout=120)
        ex = httpx.get(url + "/v1/example-state").json()
        with httpx.Client() as c:
            assert all(c.post(url + "/v1/recommendations", json=ex).status_code == 200 for _ in range(20))
    finally:
        rc = _stop(proc)
    assert rc in (0, -signal.SIGTERM)
