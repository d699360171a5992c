"""``invnet serve``: run the policy server (uvicorn)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        scenario: str | None = typer.Option(
            None, "--scenario", "-s", help="Scenario YAML path or shipped name (env INVNET_SCENARIO)."
        ),
        policy: str | None = typer.Option(
            None, "--policy", "-p", help="Policy name, bundle path or MLflow model URI (env INVNET_POLICY)."
        ),
        host: str | None = typer.Option(None, "--host", help="Bind address (default 127.0.0.1) (env INVNET_HOST)."),
        port: int | None = typer.Option(None, "--port", help="Port (default 8000) (env INVNET_PORT)."),
        workers: int | None = typer.Option(
            None, "--workers", help="Worker processes (default 1) (env INVNET_WORKERS)."
        ),
    ) -> None:
        """Serve recommended orders and transfers over HTTP (API docs at /docs, planner page at /).

        Other settings come from the environment: INVNET_API_KEY, INVNET_REQUIRE_API_KEY,
        INVNET_MAX_BODY_BYTES, INVNET_MAX_BATCH, INVNET_CORS_ORIGINS, INVNET_LOG_LEVEL.
        """
        import os

        from invnet.serving.settings import load_settings, settings_error_message
        from pydantic import ValidationError

        from invnet.cli import console, fail

        try:
            settings = load_settings(scenario=scenario, policy=policy, host=host, port=port, workers=workers)
        except ValidationError as e:
            fail(settings_error_message(e))
            return
        from invnet.serving.app import create_app, load_for_settings

        # Load once here so a bad scenario, policy path or a bundle for another network stops the
        # start with a clear message; a single worker then serves this very policy.
        try:
            lp = load_for_settings(settings)
        except (ValueError, FileNotFoundError, OSError, ImportError) as e:
            fail(f"cannot load policy {settings.policy!r} for scenario {settings.scenario!r}: {e}")
            return
        import uvicorn

        console.print(
            f"[green]serving[/] {lp.name} (version {lp.version}) for {lp.net.scenario.name} on "
            f"http://{settings.host}:{settings.port} ({settings.workers} worker(s)); planner page at /, API at /docs",
            highlight=False,
        )
        common = {"host": settings.host, "port": settings.port, "log_level": settings.log_level, "access_log": False}
        if settings.workers == 1:
            uvicorn.run(create_app(settings, preloaded=lp), **common)
        else:
            os.environ.update(settings.env())  # workers rebuild the settings from INVNET_* variables
            uvicorn.run("invnet.serving.app:create_app_from_env", factory=True, workers=settings.workers, **common)
