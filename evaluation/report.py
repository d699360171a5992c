"""Reports: Markdown + a self-contained HTML page (plots as base64 PNG), CSV/Parquet exports.

Everything is computed from the period frame of :func:`invnet.evaluation.evaluate` (level
``"period"``). Writes are atomic (temp file + ``os.replace``). When an MLflow run is active, the
report folder is logged as artifacts under ``report/``.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from invnet.evaluation import kpis as K
from invnet.evaluation import stats

PERCENT_KPIS = {"fill_rate", "cycle_service_level", "stockout_rate"}
MAX_NODE_PANELS = 12
LABELS = {
    "total_cost": "total cost",
    "holding_cost": "holding",
    "shortage_cost": "shortage",
    "order_cost": "ordering",
    "transfer_cost": "transfer",
    "fill_rate": "fill rate",
    "cycle_service_level": "cycle service level",
    "stockout_rate": "stockout rate",
    "days_of_supply": "days of supply",
    "inventory_turnover": "inventory turnover",
    "transfer_frequency": "transfers / period",
    "units_transferred": "units transferred / period",
    "bullwhip": "bullwhip ratio",
    "gmroi": "GMROI",
}


# ---------------------------------------------------------------- atomic writes and exports


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same folder + os.replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual file mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def export_frame(frame: pd.DataFrame, stem: str | Path) -> list[Path]:
    """Write ``frame`` to ``<stem>.csv`` and ``<stem>.parquet`` (atomic); returns both paths."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    stem = Path(stem)
    plain = frame.copy()
    plain.attrs = {}  # attrs are not part of the table; they go to summary.json
    table = pa.Table.from_pandas(plain, preserve_index=False)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    pq_path = atomic_write_bytes(stem.with_suffix(".parquet"), buf.getvalue())
    # CSV through Arrow (about 8x faster than DataFrame.to_csv on large period frames); categories as text
    flat = table.cast(
        pa.schema([pa.field(f.name, pa.string()) if pa.types.is_dictionary(f.type) else f for f in table.schema])
    )
    buf = io.BytesIO()
    pcsv.write_csv(flat, buf)
    csv_path = atomic_write_bytes(stem.with_suffix(".csv"), buf.getvalue())
    return [csv_path, pq_path]


def save_scenario(out_dir: str | Path, scenario: str | Path) -> Path:
    """Copy the scenario file (path or shipped name) to ``out_dir/scenario.yaml``: the exact config next to results."""
    from invnet.envs.scenario import resolve_scenario_path

    return atomic_write_text(Path(out_dir) / "scenario.yaml", resolve_scenario_path(scenario).read_text())


def read_frame(path: str | Path) -> pd.DataFrame:
    """Read a frame written by :func:`export_frame` (CSV or Parquet by suffix)."""
    path = Path(path)
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


# ---------------------------------------------------------------- formatting


def fmt(kpi: str, mean: float | None, ci: float | None = None) -> str:
    """``12.34 ± 0.56`` (percent for rates); ``–`` when undefined."""
    if mean is None or (isinstance(mean, float) and not math.isfinite(mean)):
        return "–"
    if kpi in PERCENT_KPIS:
        s = f"{100 * mean:.1f}%"
        return s if ci is None or not math.isfinite(ci) else f"{s} ± {100 * ci:.1f}"
    s = f"{mean:.3g}" if abs(mean) >= 1000 else f"{mean:.2f}"
    return s if ci is None or not math.isfinite(ci) else f"{s} ± {ci:.2f}"


def kpi_table(res: Mapping[str, Any], kpis: Sequence[str] | None = None) -> tuple[list[str], list[list[str]]]:
    """Header and rows: one row per policy (and the bound), KPIs as 'mean ± CI', gap closed, Δ cost vs reference."""
    kpis = list(K.KPIS) if kpis is None else list(kpis)
    names = list(res["policies"])
    has_bound = "bound" in res
    header = ["policy"] + [LABELS.get(k, k) for k in kpis] + ["Δ cost vs " + str(res["reference"])]
    if has_bound:
        header.append("gap closed")
    rows = []
    for n in names:
        e = res["policies"][n]
        row = [n] + [fmt(k, e.get(k, {}).get("mean"), e.get(k, {}).get("ci95")) for k in kpis]
        vs = e.get("vs_reference", {}).get("total_cost")
        row.append("reference" if vs is None else _fmt_diff(vs))
        if has_bound:
            g = e.get("gap_closed")
            row.append("–" if g is None else f"{100 * g:.1f}%")
        rows.append(row)
    if has_bound:
        b = res["bound"]
        row = ["hindsight bound"] + [
            fmt(k, b["total_cost"]["mean"], b["total_cost"]["ci95"]) if k == "total_cost" else "–" for k in kpis
        ]
        vs = b.get("vs_reference", {}).get("total_cost")
        row.append("–" if vs is None else _fmt_diff(vs))
        row.append("100.0%")
        rows.append(row)
    return header, rows


def _fmt_diff(vs: Mapping[str, Any]) -> str:
    d, c, r = vs.get("diff"), vs.get("ci95"), vs.get("rel")
    if d is None:
        return "–"
    s = f"{d:+.2f} ± {c:.2f}" if c is not None else f"{d:+.2f}"
    return s + (f" ({100 * r:+.1f}%)" if r is not None else "")


def node_table(res: Mapping[str, Any], kpis: Sequence[str] = ("total_cost", "fill_rate", "days_of_supply")) -> tuple:
    header = ["policy", "node"] + [LABELS.get(k, k) for k in kpis]
    rows = []
    for pol, nodes in res.get("nodes", {}).items():
        for node, e in nodes.items():
            rows.append([pol, node] + [fmt(k, e[k]["mean"], e[k]["ci95"]) for k in kpis])
    return header, rows


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    th = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    trs = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"


# ---------------------------------------------------------------- plots


def _plt():  # noqa: ANN202
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def plot_cost_breakdown(res: Mapping[str, Any]) -> bytes:
    """Stacked bars of the cost terms per policy (mean cost per period), the bound as a dashed line."""
    plt = _plt()
    names = list(res["policies"])
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(names) + 1.5))
    left = np.zeros(len(names))
    for term in ("holding_cost", "shortage_cost", "order_cost", "transfer_cost"):
        v = np.array([res["policies"][n][term]["mean"] or 0.0 for n in names])
        ax.barh(names, v, left=left, label=LABELS[term])
        left += v
    if "bound" in res and res["bound"]["total_cost"]["mean"] is not None:
        ax.axvline(res["bound"]["total_cost"]["mean"], color="k", ls="--", label="hindsight bound")
    ax.invert_yaxis()
    ax.set_xlabel("mean cost per period")
    ax.set_title("Cost breakdown per policy")
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def _node_grid(frame: pd.DataFrame, column: str, title: str, ylabel: str) -> bytes:
    plt = _plt()
    nodes = list(frame["node"].cat.categories if hasattr(frame["node"], "cat") else pd.unique(frame["node"]))
    shown = nodes[:MAX_NODE_PANELS]
    mean = frame[frame["node"].isin(shown)].groupby(["policy", "node", "period"], observed=True)[column].mean()
    cols = min(3, len(shown))
    rows = math.ceil(len(shown) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.6 * rows), squeeze=False, sharex=True)
    for ax, node in zip(axes.ravel(), shown, strict=False):
        for pol in mean.index.get_level_values("policy").unique():
            s = mean.loc[(pol, node)]
            ax.plot(s.index, s.to_numpy(), label=str(pol), lw=1.3)
        ax.set_title(str(node), fontsize=9)
        ax.set_ylabel(ylabel, fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("period", fontsize=8)
    for ax in axes.ravel()[len(shown) :]:
        ax.axis("off")
    axes.ravel()[0].legend(fontsize=7)
    extra = f" (first {len(shown)} of {len(nodes)} nodes)" if len(nodes) > len(shown) else ""
    fig.suptitle(f"{title}, mean over episodes{extra}", fontsize=11)
    fig.tight_layout()
    return _png(fig)


def plot_inventory(frame: pd.DataFrame) -> bytes:
    """End-of-period on-hand per node over time, one line per policy."""
    return _node_grid(frame, "on_hand", "On-hand inventory per node", "units")


def plot_transfers(frame: pd.DataFrame) -> bytes:
    """Lateral transfer units sent per node over time, one line per policy."""
    return _node_grid(frame, "transfers_out", "Transfers sent per node", "units / period")


def plot_node_service(node_kpis: pd.DataFrame) -> bytes:
    """Grouped bars: fill rate and days of supply by node, one bar per policy."""
    plt = _plt()
    m = node_kpis.groupby(["node", "policy"], observed=True)[["fill_rate", "days_of_supply"]].mean()
    nodes = list(m.index.get_level_values("node").unique())[: 4 * MAX_NODE_PANELS]
    pols = list(m.index.get_level_values("policy").unique())
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 0.9 * len(nodes) * max(1, len(pols)) / 2), 3.6))
    x = np.arange(len(nodes))
    width = 0.8 / max(1, len(pols))
    for j, pol in enumerate(pols):
        for ax, col in zip(axes, ("fill_rate", "days_of_supply"), strict=True):
            v = [m.loc[(n, pol), col] if (n, pol) in m.index else np.nan for n in nodes]
            ax.bar(x + j * width, v, width, label=str(pol))
    for ax, title in zip(axes, ("Fill rate by node", "Days of supply by node"), strict=True):
        ax.set_xticks(x + 0.4 - width / 2)
        ax.set_xticklabels([str(n) for n in nodes], rotation=45, ha="right", fontsize=8)
        ax.set_title(title)
    axes[0].set_ylim(0, 1.05)
    axes[1].set_ylabel("periods")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


CURVE_X = ("step", "steps", "timesteps", "global_step", "env_steps", "iteration", "epoch")


def plot_learning_curve(curve: Sequence[Mapping[str, Any]], bound: float | None = None) -> bytes | None:
    """Metrics of a training run against its step counter; None when nothing numeric can be plotted."""
    if not curve:
        return None
    df = pd.DataFrame(list(curve))
    xcol = next((c for c in CURVE_X if c in df.columns), None)
    x = df[xcol] if xcol else pd.Series(np.arange(len(df)))
    ys = [c for c in df.columns if c != xcol and not c.endswith("_ci95") and pd.api.types.is_numeric_dtype(df[c])]
    ys = [c for c in ys if df[c].notna().any()]
    costs = [c for c in ys if "cost" in c]  # the curve in cost units, comparable with the bound
    rewards = [c for c in ys if c.endswith(("reward", "return"))]
    ys = costs or rewards or ys
    if not ys:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for c in ys[:6]:
        (line,) = ax.plot(x, df[c], marker=".", label=c)
        if f"{c}_ci95" in df.columns:  # 95% CI band where the curve gives one
            h = df[f"{c}_ci95"].astype(float)
            ax.fill_between(x, df[c] - h, df[c] + h, color=line.get_color(), alpha=0.2)
    if bound is not None and any("cost" in c for c in ys):
        ax.axhline(bound, color="k", ls="--", label="hindsight bound")
    ax.set_xlabel(xcol or "evaluation")
    ax.set_title("Learning curve")
    ax.legend(fontsize=8)
    return _png(fig)


# ---------------------------------------------------------------- the report


@dataclass
class Report:
    """Paths written by :func:`write_report`."""

    folder: Path
    markdown: Path
    html: Path
    summary: Path
    frames: list[Path] = field(default_factory=list)
    plots: list[Path] = field(default_factory=list)


_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
table{border-collapse:collapse;font-size:13px;margin:1em 0}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%;margin:1em 0}
pre{background:#f7f7f7;padding:1em;overflow-x:auto;font-size:12px}.note{color:#555;font-size:13px}"""


def write_report(
    out_dir: str | Path,
    frame: pd.DataFrame,
    *,
    title: str | None = None,
    reference: str | None = None,
    bound: Sequence[float] | np.ndarray | None = None,
    curve: Sequence[Mapping[str, Any]] | None = None,
    config: Mapping[str, Any] | None = None,
    export_periods: bool = True,
) -> Report:
    """Write ``report.md``, ``report.html``, ``summary.json``, plots and frames (CSV + Parquet) to ``out_dir``.

    ``frame`` is the period-level frame; ``bound`` the hindsight bound per episode (same seeds);
    ``curve`` a training run's learning curve (list of dicts); ``config`` is saved next to the results.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ep = K.episode_kpis(frame)
    nk = K.node_kpis(frame)
    res = stats.results(ep, reference=reference, bound=bound, node_kpis=nk)
    if config is not None:
        res["config"] = dict(config)
    attrs = frame.attrs
    title = title or f"invnet evaluation: {attrs.get('scenario', '?')}"

    frames: list[Path] = []
    frames += export_frame(ep, out / "frames" / "episode_kpis")
    frames += export_frame(nk, out / "frames" / "node_kpis")
    if export_periods:
        frames += export_frame(frame, out / "frames" / "periods")
    summary = atomic_write_text(out / "summary.json", json.dumps(res, indent=2, default=_json_default))

    images: dict[str, bytes] = {
        "cost_breakdown": plot_cost_breakdown(res),
        "inventory": plot_inventory(frame),
        "transfers": plot_transfers(frame),
        "node_service": plot_node_service(nk),
    }
    if curve:
        bm = res.get("bound", {}).get("total_cost", {}).get("mean")
        lc = plot_learning_curve(curve, bm)
        if lc is not None:
            images["learning_curve"] = lc
    plots = [atomic_write_bytes(out / "plots" / f"{k}.png", v) for k, v in images.items()]

    intro = (
        f"Scenario **{attrs.get('scenario')}**, {attrs.get('episodes')} episodes on common demand paths "
        f"(episode e uses seed {attrs.get('seed')} + e), {attrs.get('periods')} periods of which the first "
        f"{attrs.get('warmup')} are warm-up and excluded. Costs are mean cost per period; ± is the 95% "
        f"confidence half-width over episodes; Δ is the paired difference against **{res['reference']}**."
    )
    head, rows = kpi_table(res)
    nhead, nrows = node_table(res)
    sections = [
        ("Cost breakdown", "cost_breakdown"),
        ("Inventory over time", "inventory"),
        ("Transfers over time", "transfers"),
        ("Fill rate and days of supply by node", "node_service"),
        ("Learning curve", "learning_curve"),
    ]
    md = [f"# {title}", "", intro, "", "## KPIs (network)", "", markdown_table(head, rows), ""]
    for name, key in sections:
        if key in images:
            md += [f"## {name}", "", f"![{name}](plots/{key}.png)", ""]
    md += ["## KPIs by node", "", markdown_table(nhead, nrows), ""]
    md += ["## Definitions", ""] + [f"- **{LABELS.get(k, k)}**: {_doc(f)}" for k, f in K.KPIS.items()] + [""]
    if config is not None:
        md += ["## Configuration", "", "```json", json.dumps(config, indent=2, default=_json_default), "```", ""]
    md_path = atomic_write_text(out / "report.md", "\n".join(md))

    body = [f"<h1>{html.escape(title)}</h1>", f"<p class='note'>{_md_bold(intro)}</p>", "<h2>KPIs (network)</h2>"]
    body.append(html_table(head, rows))
    for name, key in sections:
        if key in images:
            b64 = base64.b64encode(images[key]).decode("ascii")
            body += [f"<h2>{name}</h2>", f'<img alt="{name}" src="data:image/png;base64,{b64}">']
    body += ["<h2>KPIs by node</h2>", html_table(nhead, nrows), "<h2>Definitions</h2><ul>"]
    body += [f"<li><b>{html.escape(LABELS.get(k, k))}</b>: {html.escape(_doc(f))}</li>" for k, f in K.KPIS.items()]
    body.append("</ul>")
    if config is not None:
        cfg = html.escape(json.dumps(config, indent=2, default=_json_default))
        body += ["<h2>Configuration</h2>", f"<pre>{cfg}</pre>"]
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>{''.join(body)}</body></html>"
    )
    html_path = atomic_write_text(out / "report.html", page)
    rep = Report(folder=out, markdown=md_path, html=html_path, summary=summary, frames=frames, plots=plots)
    log_to_mlflow(rep, res)
    return rep


def log_to_mlflow(rep: Report, res: Mapping[str, Any]) -> bool:
    """Log the report folder (artifacts ``report/``) and KPI means (metrics) to the active MLflow run, if any."""
    if "mlflow" not in sys.modules:  # never imported, so no run can be active
        return False
    import mlflow

    if mlflow.active_run() is None:
        return False
    mlflow.log_artifacts(str(rep.folder), artifact_path="report")
    metrics = {}
    for name, e in res["policies"].items():
        for k in K.KPIS:
            v = e.get(k, {}).get("mean")
            if v is not None:
                metrics[f"eval/{_key(name)}/{k}"] = v
        if e.get("gap_closed") is not None:
            metrics[f"eval/{_key(name)}/gap_closed"] = e["gap_closed"]
    if "bound" in res and res["bound"]["total_cost"]["mean"] is not None:
        metrics["eval/bound/total_cost"] = res["bound"]["total_cost"]["mean"]
    mlflow.log_metrics(metrics)
    return True


def _key(name: str) -> str:
    """An MLflow-safe metric name part (letters, digits, _ - . /)."""
    raw = "".join(c if c.isalnum() or c in "-." else "_" for c in name)
    return "_".join(p for p in raw.split("_") if p) or "policy"


def _doc(f: Any) -> str:
    return " ".join((f.__doc__ or "").split("\n\n")[0].split())


def _md_bold(s: str) -> str:
    parts = html.escape(s).split("**")
    return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return str(o)
