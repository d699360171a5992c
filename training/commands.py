"""``invnet train``: IPPO / MAPPO training from a YAML config overridden by flags (heavy imports inside)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train_cmd(
        scenario: str | None = typer.Option(None, "--scenario", "-s", help="Scenario YAML path or shipped name."),
        algo: str | None = typer.Option(None, "--algo", help="ippo (SB3 PPO, shared policy) or mappo."),
        config: str | None = typer.Option(
            None, "--config", "-c", help="Training config YAML (or shipped name: quickstart, default, ...)."
        ),
        steps: int | None = typer.Option(None, "--steps", help="Environment periods to train on (all envs)."),
        seed: int | None = typer.Option(None, "--seed", help="Seed (same seed, same machine: same curve)."),
        out: str | None = typer.Option(None, "--out", help="Output folder (default runs/<scenario>-<algo>-seed<S>)."),
        resume: Path | None = typer.Option(None, "--resume", help="Continue the run in this folder."),
        action_mode: str | None = typer.Option(None, "--action-mode", help="quantity | order_up_to | residual."),
        register_as: str | None = typer.Option(None, "--register", help="Register the model under this name."),
        no_mlflow: bool = typer.Option(False, "--no-mlflow", help="Do not log to MLflow."),
        no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar."),
        as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON object."),
    ) -> None:
        """Train per-node policies (shared network) and log the run, the bundle and the model to MLflow."""
        from invnet.training.config import TrainConfigError, load_train_config
        from invnet.training.tracking import TrackingError

        from invnet.cli import console, emit_json, fail, load_scenario_or_exit

        overrides = {
            "scenario": scenario,
            "algo": algo,
            "steps": steps,
            "seed": seed,
            "out": out,
            "action_mode": action_mode,
            "register_as": register_as,
            "mlflow": False if no_mlflow else None,
        }
        from invnet.training.api import train

        try:
            if resume is not None:
                flag = {"register_as": "--register", "mlflow": "--no-mlflow"}  # config key -> its CLI flag
                given = [
                    flag.get(k, f"--{k.replace('_', '-')}")
                    for k, v in overrides.items()
                    if v is not None and k != "steps"
                ]
                if given or config:
                    fail(f"--resume continues with the run's saved config; drop {', '.join(given or ['--config'])}")
                result = train(None, progress=not no_progress, resume=resume, steps=steps)
            else:
                cfg = load_train_config(config, overrides)
                load_scenario_or_exit(cfg.scenario)
                result = train(cfg, progress=not no_progress)
        except (TrainConfigError, FileNotFoundError, TrackingError) as e:
            fail(str(e))
        except ValueError as e:
            fail(str(e))
        if result.interrupted:
            console.print(
                f"[yellow]interrupted[/]: checkpoint saved to {result.checkpoint}; "
                f"continue with: invnet train --resume {result.out_dir}"
            )
            raise typer.Exit(130)
        f = result.final
        summary = {
            "out_dir": str(result.out_dir),
            "bundle": str(result.bundle_path),
            "run_id": result.run_id,
            "model_uri": result.model_uri,
            **f,
        }
        if as_json:
            emit_json(summary)
            return
        console.print(
            f"[bold]{f['scenario']}[/]: learned {f['cost']:.3f} ± {f['cost_ci95']:.3f} per period "
            f"vs tuned {f['baseline']} "
            f"{f['baseline_cost']:.3f} ± {f['baseline_cost_ci95']:.3f} (ratio {f['baseline_ratio']:.3f}; "
            f"{f['episodes']} fresh episodes, seed {f['seed']}); fill rate {f['fill_rate']:.1%}"
        )
        console.print(f"bundle: {result.bundle_path}   outputs: {result.out_dir}")
        if result.run_id:
            from invnet.training.tracking import tracking_uri

            console.print(
                f"MLflow run {result.run_id}, model {result.model_uri}  (mlflow ui --backend-store-uri "
                f"{tracking_uri()})"
            )
