"""Reports: files written and non-empty, self-contained HTML, CSV/Parquet round trip, MLflow logging."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from invnet.agents.simple import DoNothing, OrderUpTo
from invnet.envs.network import compile_network
from invnet.envs.scenario import load_scenario
from invnet.evaluation import evaluate, kpis
from invnet.evaluation.report import atomic_write_text, export_frame, read_frame, write_report


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    net = compile_network(load_scenario("two_stores"))
    return evaluate(net, {"out": OrderUpTo(net), "idle": DoNothing(net)}, 4, seed=0, level="period")


def test_report_files(tmp_path: Path, frame: pd.DataFrame) -> None:
    ep = kpis.episode_kpis(frame)
    bound = ep[ep["policy"] == "out"].sort_values("episode")["total_cost"].to_numpy() * 0.9
    curve = [{"step": 100 * i, "eval_cost": 50.0 - i, "loss": 0.1} for i in range(5)]
    rep = write_report(tmp_path / "r", frame, bound=bound, curve=curve, config={"episodes": 4})
    for p in [rep.markdown, rep.html, rep.summary, *rep.frames, *rep.plots]:
        assert p.exists() and p.stat().st_size > 0, p
    assert {p.stem for p in rep.plots} == {"cost_breakdown", "inventory", "transfers", "node_service", "learning_curve"}
    page = rep.html.read_text()
    assert page.count('src="data:image/png;base64,') == 5 and "<img" in page
    assert 'src="plots/' not in page  # self-contained: no external images
    md = rep.markdown.read_text()
    assert "![Cost breakdown](plots/cost_breakdown.png)" in md and "hindsight bound" in md
    assert "| out |" in md and "warm-up" in md
    summary = json.loads(rep.summary.read_text())
    assert summary["reference"] == "out" and summary["config"] == {"episodes": 4}
    assert summary["bound"]["total_cost"]["mean"] == pytest.approx(bound.mean())
    assert not list(tmp_path.rglob("*.tmp"))  # atomic writes leave no temp files


def test_report_without_curve_or_bound(tmp_path: Path, frame: pd.DataFrame) -> None:
    rep = write_report(tmp_path, frame, export_periods=False)
    assert "learning_curve" not in {p.stem for p in rep.plots}
    assert not (tmp_path / "frames" / "periods.csv").exists()
    assert "gap closed" not in rep.markdown.read_text()


def test_csv_parquet_round_trip(tmp_path: Path, frame: pd.DataFrame) -> None:
    csv, pq = export_frame(frame, tmp_path / "periods")
    for path in (csv, pq):
        back = read_frame(path)
        assert list(back.columns) == list(frame.columns)
        assert len(back) == len(frame)
        for c in ("policy", "node"):
            assert back[c].astype(str).tolist() == frame[c].astype(str).tolist()
        num = [c for c in frame.columns if c not in ("policy", "node")]
        np.testing.assert_allclose(back[num].to_numpy(dtype=float), frame[num].to_numpy(dtype=float), equal_nan=True)
    assert read_frame(pq)["node"].dtype.name == "category"  # parquet keeps categories


def test_atomic_write_replaces(tmp_path: Path) -> None:
    p = atomic_write_text(tmp_path / "a" / "x.txt", "one")
    atomic_write_text(p, "two")
    assert p.read_text() == "two" and [q.name for q in p.parent.iterdir()] == ["x.txt"]


def test_logged_to_active_mlflow_run(tmp_path: Path, frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow
    from mlflow.tracking._tracking_service import utils as tracking_utils

    # a store under tmp_path for this test only (env var; the global URI is restored afterwards)
    monkeypatch.setattr(tracking_utils, "_tracking_uri", None)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = mlflow.create_experiment("eval-test", artifact_location=(tmp_path / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=exp) as run:
        write_report(tmp_path / "rep", frame, export_periods=False)
    client = mlflow.tracking.MlflowClient()
    names = {a.path for a in client.list_artifacts(run.info.run_id, "report")}
    assert {"report/report.html", "report/report.md", "report/summary.json"} <= names
    metrics = client.get_run(run.info.run_id).data.metrics
    assert metrics["eval/out/total_cost"] > 0 and "eval/idle/fill_rate" in metrics
