"""The training entry point used by ``invnet train``, ``invnet quickstart`` and the benchmark.

``train(cfg)`` runs IPPO or MAPPO, keeps the best policy on fixed evaluation paths, writes the
bundle / plot / tables into ``cfg.out`` and logs everything to MLflow. Ctrl-C (KeyboardInterrupt)
writes a checkpoint and returns a result with ``interrupted=True``; ``train(resume=DIR)`` continues.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from invnet.training.config import TrainConfig, make_config


@dataclass
class TrainResult:
    """What a training run produced. ``final`` is empty when interrupted."""

    bundle_path: Path | None
    run_id: str | None
    curve: list[dict[str, Any]]
    final: dict[str, Any]
    out_dir: Path
    model_uri: str | None = None
    interrupted: bool = False
    checkpoint: Path | None = None
    config: dict[str, Any] = field(default_factory=dict)


def resume_config(resume: str | Path, overrides: dict[str, Any] | None = None) -> tuple[TrainConfig, dict[str, Any]]:
    """The saved config of a run folder (``out`` set to it) and its checkpoint; ``overrides`` may extend ``steps``."""
    from invnet.training.checkpoint import load_checkpoint

    ckpt = load_checkpoint(resume)
    data = {**ckpt["config"], "out": str(resume)}
    for k, v in (overrides or {}).items():
        if v is not None:
            data[k] = v
    return make_config(data, f"{resume} (checkpoint config)"), ckpt


def train(
    cfg: TrainConfig | None = None,
    progress: bool = True,
    resume: str | Path | None = None,
    callback: Callable[[int, dict[str, Any]], None] | None = None,
    steps: int | None = None,
) -> TrainResult:
    """Train per ``cfg``, or continue the run in folder ``resume`` with its saved config (``steps`` may extend it).

    Returns the bundle, MLflow run id and curves. ``callback(iteration, metrics)`` runs after every
    iteration (tests use it to interrupt).
    """
    import os

    from invnet.training.session import Session

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    ckpt = None
    if resume is not None:
        cfg, ckpt = resume_config(resume, {"steps": steps})
    elif cfg is None:
        raise ValueError("train: give a config or a run folder to resume")
    session = Session.create(cfg, progress, resume=ckpt, callback=callback)
    if cfg.algo == "mappo":
        from invnet.training.mappo import train_mappo as run
    else:
        from invnet.training.ippo import train_ippo as run
    try:
        with session.progress:
            run(cfg, session, ckpt)
    except KeyboardInterrupt:
        path = None
        if session.pending_checkpoint is not None:
            path = session.save_checkpoint(session.pending_checkpoint())
        session.tracker.end("KILLED")
        return TrainResult(
            bundle_path=(session.out / "best") if (session.out / "best").exists() else None,
            run_id=session.tracker.run_id,
            curve=session.curve,
            final={},
            out_dir=session.out,
            interrupted=True,
            checkpoint=path,
            config=cfg.resolved(),
        )
    except BaseException:
        session.tracker.end("FAILED")
        raise
    bundle, final, model_uri = session.finish()
    session.tracker.end()
    return TrainResult(
        bundle_path=bundle,
        run_id=session.tracker.run_id,
        curve=session.curve,
        final=final,
        out_dir=session.out,
        model_uri=model_uri,
        config=cfg.resolved(),
    )
