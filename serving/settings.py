"""Server settings: command-line options and ``INVNET_*`` environment variables (pydantic-settings).

Precedence: values passed to :class:`ServingSettings` (the CLI's options) > environment variables
(``INVNET_SCENARIO``, ``INVNET_POLICY``, ``INVNET_API_KEY``, ...) > defaults. A bad value fails fast
with the variable's name (:func:`settings_error_message`).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "INVNET_"


class ServingSettings(BaseSettings):
    """Everything the policy server reads at start-up."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", validate_default=True)

    scenario: str = Field(description="Scenario YAML path or shipped scenario name (INVNET_SCENARIO).")
    """The network the policy serves; requests are validated against its nodes, SKUs and pipeline."""
    policy: str = Field(description="Policy SPEC: baseline name, bundle path or MLflow model URI (INVNET_POLICY).")
    """Resolved by :func:`invnet.agents.registry.resolve_policy`, loaded once at start-up."""
    host: str = Field("127.0.0.1", min_length=1)
    """Bind address; loopback by default (expose it deliberately)."""
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64)
    """uvicorn worker processes; each loads its own copy of the policy (and reloads only its own)."""
    api_key: SecretStr | None = None
    """Key expected in the ``X-API-Key`` header. Required for ``POST /v1/policies/reload`` (which is
    disabled when no key is set), and for every ``/v1`` route when ``require_api_key`` is true."""
    require_api_key: bool = False
    max_body_bytes: int = Field(1_000_000, ge=1024)
    """Requests with a larger body are refused with 413 before they are parsed."""
    max_batch: int = Field(1024, ge=1, le=100_000)
    """Most states accepted by one batch request."""
    coalesce: bool = True
    """Answer single-state requests that arrive together with one batched policy call (same answers,
    less work per request under concurrency)."""
    gc_freeze: bool = True
    """After loading, move start-up objects out of the garbage collector's generations (``gc.freeze``):
    shorter collection pauses under load. Off in tests that build many apps in one process."""
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Origins allowed by CORS (comma-separated in ``INVNET_CORS_ORIGINS``); none by default (no CORS)."""
    log_level: str = "info"

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [o.strip() for o in v.split(",") if o.strip()]
        return v

    @field_validator("log_level")
    @classmethod
    def _level(cls, v: str) -> str:
        ok = ("critical", "error", "warning", "info", "debug", "trace")
        if v.lower() not in ok:
            raise ValueError(f"must be one of {ok}")
        return v.lower()

    @field_validator("api_key")
    @classmethod
    def _key(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and len(v.get_secret_value()) < 8:
            raise ValueError("must be at least 8 characters")
        return v

    @model_validator(mode="after")
    def _key_needed(self) -> ServingSettings:
        if self.require_api_key and self.api_key is None:
            raise ValueError("require_api_key is true but no api_key is set (INVNET_API_KEY)")
        return self

    def env(self) -> dict[str, str]:
        """These settings as ``INVNET_*`` variables (handed to worker processes)."""
        out: dict[str, str] = {}
        for name in type(self).model_fields:
            v = getattr(self, name)
            if v is None:
                continue
            if isinstance(v, SecretStr):
                v = v.get_secret_value()
            elif isinstance(v, list):
                v = ",".join(v)
            elif isinstance(v, bool):
                v = "true" if v else "false"
            out[ENV_PREFIX + name.upper()] = str(v)
        return out


def settings_error_message(e: ValidationError) -> str:
    """One line per bad setting, named both as the option and as its environment variable."""
    lines = []
    for err in e.errors():
        field = ".".join(str(p) for p in err["loc"]) or "settings"
        msg = f"missing (set --{field} or {ENV_PREFIX}{field.upper()})" if err["type"] == "missing" else err["msg"]
        lines.append(f"{field} ({ENV_PREFIX}{field.upper()}): {msg}")
    return "bad setting(s): " + "; ".join(lines)


def load_settings(**overrides: Any) -> ServingSettings:
    """Settings from ``overrides`` (None values are ignored) over the environment."""
    return ServingSettings(**{k: v for k, v in overrides.items() if v is not None})
