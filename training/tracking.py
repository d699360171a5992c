"""MLflow tracking: embedded sqlite store in the working directory unless ``MLFLOW_TRACKING_URI`` is set.

:class:`Tracker` wraps one run (params, tags, metrics, artifacts); with ``enabled=False`` every call
is a no-op so training code never branches on whether MLflow is on.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("invnet", "numpy", "torch", "stable-baselines3", "gymnasium", "pettingzoo", "mlflow", "pydantic")


class TrackingError(RuntimeError):
    """The MLflow tracking store cannot be used (message names the URI)."""


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<abs cwd>/mlflow.db``; disables MLflow telemetry."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)  # "Creating initial tables..." lines
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    return uri if uri else f"sqlite:///{Path.cwd().resolve() / 'mlflow.db'}"


def git_commit(path: Path | None = None) -> str | None:
    """HEAD commit of the repository holding ``path`` (this package by default), or None."""
    where = path or Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def package_versions() -> dict[str, str]:
    out = {}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = "not installed"
    return out


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v if isinstance(v, (int, float, str, bool)) or v is None else json.dumps(v)
    return out


class Tracker:
    """One MLflow run (or nothing when disabled)."""

    def __init__(self, enabled: bool, experiment: str = "invnet", run_name: str | None = None) -> None:
        self.enabled = enabled
        self.run_id: str | None = None
        self._mlflow = None
        if not enabled:
            return
        import mlflow

        self._mlflow = mlflow
        uri = tracking_uri()
        mlflow.set_tracking_uri(uri)
        try:
            if mlflow.get_experiment_by_name(experiment) is None:
                location = None
                if uri.startswith("sqlite:///"):  # artifacts next to the database, not relative to the cwd
                    location = (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").resolve().as_uri()
                mlflow.create_experiment(experiment, artifact_location=location)
            mlflow.set_experiment(experiment)
        except Exception as e:  # noqa: BLE001 - MLflow raises many types; report one clear error
            raise TrackingError(f"MLflow tracking at {uri}: {str(e).splitlines()[0][:300]}") from None
        self._run_name = run_name

    def start(self, run_id: str | None = None) -> str | None:
        """Start a new run, or reopen ``run_id`` (resume)."""
        if not self.enabled:
            return None
        run = self._mlflow.start_run(run_id=run_id, run_name=None if run_id else self._run_name)
        self.run_id = run.info.run_id
        return self.run_id

    def log_setup(self, resolved_config: dict[str, Any], scenario_path: Path | None, tags: dict[str, str]) -> None:
        """Resolved config (params + JSON artifact), scenario file, git commit, env id, package versions."""
        if not self.enabled:
            return
        mlflow = self._mlflow
        from invnet.envs import ENV_ID

        params = _flatten(resolved_config)
        mlflow.log_params({k: ("" if v is None else str(v)[:500]) for k, v in params.items()})
        tags = {"env_id": ENV_ID, "git_commit": git_commit() or "unknown", **tags}
        tags.update({f"version.{k}": v for k, v in package_versions().items()})
        mlflow.set_tags(tags)
        mlflow.log_dict(resolved_config, "config/train_config.json")
        if scenario_path is not None and scenario_path.exists():
            mlflow.log_artifact(str(scenario_path), "config")

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Log metrics; a failing store (e.g. a server hiccup) warns instead of stopping the training."""
        if not self.enabled:
            return
        clean = {k: float(v) for k, v in metrics.items() if v is not None and v == v}
        try:
            self._mlflow.log_metrics(clean, step=step)
        except Exception as e:  # noqa: BLE001
            import warnings

            warnings.warn(f"MLflow: metrics at step {step} not logged ({str(e).splitlines()[0][:200]})", stacklevel=2)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        if self.enabled:
            if path.is_dir():
                self._mlflow.log_artifacts(str(path), artifact_path)
            else:
                self._mlflow.log_artifact(str(path), artifact_path)

    def log_text(self, text: str, name: str) -> None:
        if self.enabled:
            self._mlflow.log_text(text, name)

    def log_pyfunc(self, bundle_dir: Path, register_as: str | None = None) -> str | None:
        """Log the bundle as an MLflow pyfunc model (``policy``); returns its model URI."""
        if not self.enabled:
            return None
        from invnet.training.bundle import log_pyfunc_model

        return log_pyfunc_model(bundle_dir, register_as=register_as)

    def end(self, status: str = "FINISHED") -> None:
        if self.enabled and self._mlflow.active_run() is not None:
            self._mlflow.end_run(status=status)


def scratch_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="invnet-"))
