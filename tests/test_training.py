"""Training end to end: MAPPO / IPPO runs write bundles that load and act, resume, config errors, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from invnet.agents.base import Policy
from invnet.agents.learned import LearnedPolicy
from invnet.agents.registry import resolve_policy
from invnet.envs import compile_network, load_scenario, rollout
from invnet.envs.core import initial_state
from invnet.training.api import train
from invnet.training.bundle import load_bundle_policy
from invnet.training.checkpoint import checkpoint_path, load_checkpoint
from invnet.training.config import TrainConfig, TrainConfigError, load_train_config, make_config


def tiny(tmp_path: Path, name: str = "run", **kw) -> object:
    base = {
        "scenario": "single_node",
        "algo": "mappo",
        "steps": 4 * 4 * 16,
        "n_envs": 4,
        "n_steps": 16,
        "epochs": 2,
        "minibatches": 2,
        "hidden": [16, 16],
        "eval_every": 2,
        "eval_episodes": 2,
        "final_episodes": 2,
        "checkpoint_every": 2,
        "base_policy": "scenario",
        "mlflow": False,
        "out": str(tmp_path / name),
    }
    base.update(kw)
    return make_config(base)


def test_mappo_end_to_end_writes_a_bundle_that_loads_and_acts(tmp_path: Path) -> None:
    cfg = tiny(tmp_path)
    res = train(cfg, progress=False)
    assert not res.interrupted and res.bundle_path == tmp_path / "run" / "bundle"
    assert [c["iteration"] for c in res.curve] == [0, 1, 3]
    assert res.final["episodes"] == 2 and res.final["cost"] > 0
    for f in ("final_eval.csv", "curve.json", "learning_curve.png", "checkpoints/last.pt", "best/policy.json"):
        assert (res.out_dir / f).exists(), f
    net = compile_network(load_scenario("single_node"))
    pol = load_bundle_policy(res.bundle_path, net)
    assert isinstance(pol, Policy) and isinstance(pol, LearnedPolicy)
    assert pol.action_mode == "order_up_to"  # the scenario's mode
    state = initial_state(net, 3)
    act = pol.act(state)
    assert act.orders.shape == (3, 1, 1) and np.all(act.orders >= 0)
    via_registry = resolve_policy(str(res.bundle_path), net)
    assert np.array_equal(via_registry.act(state).orders, act.orders)
    # the final table's learned cost is a plain rollout of the bundle on the stated paths
    traj = rollout(net, pol, res.final["episodes"], res.final["seed"])
    assert traj.cost_per_period().mean() == pytest.approx(res.final["cost"])
    # the run folder itself resolves to its bundle
    assert np.array_equal(resolve_policy(str(res.out_dir), net).act(state).orders, act.orders)


def test_ippo_end_to_end_with_transfers_and_residual_mode(tmp_path: Path) -> None:
    cfg = tiny(
        tmp_path,
        scenario="two_stores",
        algo="ippo",
        action_mode="residual",
        base_policy="base_stock",
        tune_episodes=4,
        tune_seconds=1.0,
        steps=3 * 4 * 16,
    )
    res = train(cfg, progress=False)
    net = compile_network(load_scenario("two_stores"))
    pol = load_bundle_policy(res.bundle_path, net)
    assert pol.action_mode == "residual" and pol.mapper.base is not None
    info = json.loads((res.bundle_path / "policy.json").read_text())
    assert info["algo"] == "ippo" and info["node_ids"] == ["store_a", "store_b"]
    assert info["base_policy"]["name"] == "base_stock"
    act = pol.act(initial_state(net, 2))
    assert act.transfers.shape == (2, 2, 1) and np.all(act.transfers >= 0)


def test_sb3_actor_export_equals_the_sb3_deterministic_action(tmp_path: Path) -> None:
    import torch
    from invnet.training.actions import ActionMapper
    from invnet.training.networks import mlp_forward, sb3_actor_export
    from invnet.training.vecenv import InventoryVecEnv
    from stable_baselines3 import PPO

    net = compile_network(load_scenario("hub_spoke"))
    env = InventoryVecEnv(net, ActionMapper.build(net, "quantity", "neighbours"), 2, seed=0)
    model = PPO("MlpPolicy", env, n_steps=4, batch_size=8, seed=0, device="cpu")
    obs = env.reset()
    with torch.no_grad():
        want = model.policy.get_distribution(torch.as_tensor(obs)).distribution.mean.numpy()
    assert np.allclose(mlp_forward(sb3_actor_export(model.policy), obs), want, atol=1e-5)


def test_bundle_for_another_network_is_refused(tmp_path: Path) -> None:
    res = train(tiny(tmp_path, steps=64), progress=False)
    other = compile_network(load_scenario("two_stores"))
    with pytest.raises(ValueError, match="another network.*node_ids"):
        load_bundle_policy(res.bundle_path, other)
    with pytest.raises(ValueError, match="another network"):
        resolve_policy(str(res.bundle_path), other)


def test_same_seed_same_curve_and_weights(tmp_path: Path) -> None:
    a = train(tiny(tmp_path, "a"), progress=False)
    b = train(tiny(tmp_path, "b"), progress=False)
    c = train(tiny(tmp_path, "c", seed=1), progress=False)
    key = ("eval_cost", "pg_loss", "value_loss")
    assert [[r[k] for k in key] for r in a.curve] == [[r[k] for k in key] for r in b.curve]
    assert [r["value_loss"] for r in a.curve] != [r["value_loss"] for r in c.curve]


def test_ippo_same_seed_same_curve(tmp_path: Path) -> None:
    a = train(tiny(tmp_path, "a", algo="ippo", steps=128), progress=False)
    b = train(tiny(tmp_path, "b", algo="ippo", steps=128), progress=False)
    assert [r["value_loss"] for r in a.curve] == [r["value_loss"] for r in b.curve]


def test_mappo_resume_after_interrupt_is_identical_to_an_uninterrupted_run(tmp_path: Path) -> None:
    steps = 6 * 4 * 16  # 6 iterations
    full = train(tiny(tmp_path, "full", steps=steps), progress=False)

    def interrupt(iteration: int, metrics: dict) -> None:
        if iteration == 2:  # mid-run, after the iteration-2 checkpoint
            raise KeyboardInterrupt

    cut = train(tiny(tmp_path, "cut", steps=steps), progress=False, callback=interrupt)
    assert cut.interrupted and cut.checkpoint == checkpoint_path(tmp_path / "cut")
    assert load_checkpoint(tmp_path / "cut")["iteration"] == 2
    assert not [p for p in (tmp_path / "cut" / "checkpoints").iterdir() if p.name != "last.pt"]  # atomic
    resumed = train(progress=False, resume=tmp_path / "cut")
    assert not resumed.interrupted
    np.testing.assert_equal(resumed.curve, full.curve)  # NaN-aware equality
    fa, fb = load_checkpoint(tmp_path / "full"), load_checkpoint(tmp_path / "cut")
    for k, v in fa["actor"].items():
        assert np.array_equal(v.numpy(), fb["actor"][k].numpy()), k
    assert resumed.final["cost"] == full.final["cost"]


def test_ippo_resume_after_interrupt_is_identical_to_an_uninterrupted_run(tmp_path: Path) -> None:
    def interrupt(iteration: int, metrics: dict) -> None:
        if iteration == 1:
            raise KeyboardInterrupt

    full = train(tiny(tmp_path, "full", algo="ippo", steps=4 * 64), progress=False)
    cut = train(tiny(tmp_path, "cut", algo="ippo", steps=4 * 64), progress=False, callback=interrupt)
    assert cut.interrupted and load_checkpoint(tmp_path / "cut")["iteration"] == 1
    res = train(progress=False, resume=tmp_path / "cut")
    assert [c["iteration"] for c in res.curve] == [0, 1, 3]
    assert load_checkpoint(tmp_path / "cut")["iteration"] == 4
    np.testing.assert_equal(res.curve, full.curve)  # SB3 model, VecNormalize, env and RNG states restored
    assert res.final["cost"] == full.final["cost"]


# ---- config ------------------------------------------------------------------------------------------
def test_config_from_yaml_with_overrides_and_derived_values(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("algo: ippo\nsteps: 1000\nn_envs: 4\nn_steps: 100\n")
    cfg = load_train_config(p, {"seed": 3, "steps": None})
    assert cfg.algo == "ippo" and cfg.seed == 3 and cfg.steps == 1000
    assert cfg.iterations == 3 and cfg.total_steps == 1200
    assert "iterations" not in cfg.model_dump()  # derived, never written back
    assert cfg.resolved()["derived"]["iterations"] == 3
    assert load_train_config("quickstart").scenario == "hub_spoke"
    assert load_train_config("default") == TrainConfig()  # the shipped default file states the defaults


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("bogus: 1\n", "bogus: unknown field"),
        ("lr: -1\n", "lr:"),
        ("algo: dqn\n", "algo:"),
        ("hidden: []\n", "hidden:"),
        ("action_mode: magic\n", "action_mode:"),
        ("- a\n- b\n", "expected a mapping"),
    ],
)
def test_config_errors_name_the_field(tmp_path: Path, text: str, field: str) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(TrainConfigError, match=field):
        load_train_config(p)


def test_cli_train_and_resume_and_clear_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from invnet.cli import app

    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    bad = tmp_path / "bad.yaml"
    bad.write_text("n_envs: 0\n")
    r = runner.invoke(app, ["train", "--config", str(bad)])
    assert r.exit_code == 2 and "n_envs" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["train", "--scenario", "nowhere.yaml", "--no-mlflow"])
    assert r.exit_code == 2 and "nowhere.yaml" in r.output
    r = runner.invoke(app, ["train", "--scenario", "single_node", "--algo", "a2c"])
    assert r.exit_code == 2 and "algo" in r.output
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(
        "n_envs: 4\nn_steps: 16\nepochs: 1\nminibatches: 2\nhidden: [8]\neval_every: 2\neval_episodes: 2\n"
        "final_episodes: 2\nbase_policy: scenario\n"
    )
    args = ["train", "-s", "single_node", "--algo", "mappo", "-c", str(cfg), "--steps", "128", "--out", "o"]
    r = runner.invoke(app, [*args, "--no-mlflow", "--no-progress", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output.strip().splitlines()[-1])
    assert out["bundle"].endswith("bundle") and out["scenario"] == "single_node"
    r = runner.invoke(app, ["train", "--resume", "o", "--steps", "192", "--no-progress", "--json"])
    assert r.exit_code == 0, r.output
    assert load_checkpoint(tmp_path / "o")["iteration"] == 3
    r = runner.invoke(app, ["train", "--resume", "missing"])
    assert r.exit_code == 2 and "no checkpoint" in r.output
    # flags that would change the saved config are named as the user typed them
    r = runner.invoke(app, ["train", "--resume", "o", "--no-mlflow", "--register", "m", "--seed", "3"])
    assert r.exit_code == 2 and "Traceback" not in r.output
    named = " ".join(r.output.split())
    assert "--no-mlflow" in named and "--register" in named and "--seed" in named and "--register-as" not in named


@pytest.mark.slow
def test_short_mappo_run_improves_over_its_initial_policy_on_single_node(tmp_path: Path) -> None:
    """Residual MAPPO on top of base-stock S=16 (4.64 per period) learns a cheaper state-dependent policy."""
    cfg = make_config(
        {
            "scenario": "single_node",
            "algo": "mappo",
            "action_mode": "residual",
            "base_policy": "scenario",
            "steps": 200_000,
            "n_envs": 64,
            "n_steps": 50,
            "log_std_init": -1.0,
            "eval_every": 10,
            "eval_episodes": 32,
            "final_episodes": 64,
            "mlflow": False,
            "out": str(tmp_path / "run"),
        }
    )
    res = train(cfg, progress=False)
    initial = res.curve[0]["eval_cost"]  # iteration 0: the residual is ~0, i.e. the base policy
    assert min(c["eval_cost"] for c in res.curve) < initial - 0.1
    # on fresh paths: cheaper than the base policy, paired difference significant
    assert res.final["paired_diff"] + res.final["paired_diff_ci95"] < 0
    assert res.final["cost"] < 4.55  # base-stock 4.64; optimum 4.40 (Zipkin 2008)
