"""A search's results for people: the Pareto front as a table, CSV, PNG and interactive HTML.

    front = pareto_front(rows)                      # rows: TrialRecords (search/trials.py) that were scored
    print(format_table(front, budget_ms=2.3))
    write_plots(rows, front, "out/pareto", budget_ms=2.3, teacher=..., chosen=...)

A row's latency is the measured one when the candidate was timed, else the cost model's prediction with
the study's last re-fitted profile (search/final.py re-prices them; the table and the plots say which).
"""

from __future__ import annotations

import csv
from pathlib import Path

from .trials import TrialRecord

COLUMNS = ("number", "describe", "dev_accuracy", "latency_ms", "measured_ms", "predicted_ms", "stage")


def pareto_front(rows: list[TrialRecord]) -> list[TrialRecord]:
    """Rows no other row beats on both accuracy (higher) and latency (lower), fastest first."""
    front, best = [], -1.0
    for r in sorted(rows, key=lambda r: (r.latency_ms, -r.dev_accuracy)):
        if r.dev_accuracy > best:
            front.append(r)
            best = r.dev_accuracy
    return front


def format_table(front: list[TrialRecord], budget_ms: float) -> str:
    lines = [f"{'trial':>5}  {'architecture':<40} {'dev acc':>7} {'ms':>8} {'':<9} {'predicted':>9}  budget"]
    for r in front:
        how = "measured" if r.measured_ms is not None else "predicted"
        ok = "within" if r.latency_ms <= budget_ms else "over"
        lines.append(f"{r.number:>5}  {r.describe[:40]:<40} {r.dev_accuracy:>7.4f} {r.latency_ms:>8.3f} "
                     f"{how:<9} {r.predicted_ms:>9.3f}  {ok}")
    return "\n".join(lines)


def write_csv(rows: list[TrialRecord], path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(r.to_json() for r in rows)


def write_plots(rows: list[TrialRecord], front: list[TrialRecord], stem: Path, budget_ms: float, teacher: dict,
                chosen: TrialRecord | None, latency: str = "") -> list[Path]:
    """``stem``.png (matplotlib) and ``stem``.html (plotly, hover for the architecture): dev accuracy
    against latency for every scored candidate, the front, the budget, the teacher (its latency_ms and
    dev_accuracy) and the choice (placed at its ``latency_ms``). ``latency`` says what a latency is
    (search/lengths.py's Lengths.short), on the x axis."""
    xlabel = f"latency (ms, bertc{', ' + latency if latency else ''})"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import plotly.graph_objects as go

    timed = [r for r in rows if r.measured_ms is not None]
    predicted = [r for r in rows if r.measured_ms is None]
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    ax.scatter([r.latency_ms for r in predicted], [r.dev_accuracy for r in predicted], c="0.6", s=18,
               label="scored (latency predicted)")
    ax.scatter([r.latency_ms for r in timed], [r.dev_accuracy for r in timed], c="tab:blue", s=28,
               label="timed (latency measured)")
    ax.plot([r.latency_ms for r in front], [r.dev_accuracy for r in front], "-", c="tab:blue", lw=1,
            label="Pareto front")
    ax.axvline(budget_ms, c="tab:red", ls="--", lw=1, label=f"budget {budget_ms:.2f} ms")
    ax.scatter([teacher["latency_ms"]], [teacher["dev_accuracy"]], marker="s", c="black", s=40, label="teacher")
    if chosen is not None:
        ax.scatter([chosen.latency_ms], [chosen.dev_accuracy], marker="*", c="tab:orange", s=160, zorder=5,
                   label=f"chosen: {chosen.describe}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("dev accuracy")
    ax.set_title("bertc search: accuracy against latency")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    png = stem.with_suffix(".png")
    fig.savefig(png)
    plt.close(fig)

    hover = lambda rs: [f"#{r.number} {r.describe}<br>dev {r.dev_accuracy:.4f}<br>"
                        f"{r.latency_ms:.3f} ms ({'measured' if r.measured_ms is not None else 'predicted'}), "
                        f"predicted {r.predicted_ms:.3f}" for r in rs]
    f = go.Figure()
    for name, rs, color in (("scored (latency predicted)", predicted, "gray"), ("timed (measured)", timed, "royalblue")):
        f.add_trace(go.Scatter(x=[r.latency_ms for r in rs], y=[r.dev_accuracy for r in rs], mode="markers",
                               name=name, marker={"color": color}, text=hover(rs), hoverinfo="text"))
    f.add_trace(go.Scatter(x=[r.latency_ms for r in front], y=[r.dev_accuracy for r in front], mode="lines",
                           name="Pareto front", line={"color": "royalblue"}, text=hover(front), hoverinfo="text"))
    f.add_trace(go.Scatter(x=[teacher["latency_ms"]], y=[teacher["dev_accuracy"]], mode="markers", name="teacher",
                           marker={"symbol": "square", "color": "black"}))
    if chosen is not None:
        f.add_trace(go.Scatter(x=[chosen.latency_ms], y=[chosen.dev_accuracy], mode="markers", name="chosen",
                               marker={"symbol": "star", "size": 14, "color": "orange"}, text=hover([chosen]),
                               hoverinfo="text"))
    f.add_vline(x=budget_ms, line_dash="dash", line_color="red", annotation_text=f"budget {budget_ms:.2f} ms")
    f.update_layout(title="bertc search: accuracy against latency", xaxis_title=xlabel,
                    yaxis_title="dev accuracy")
    html = stem.with_suffix(".html")
    f.write_html(str(html), include_plotlyjs=True)
    return [png, html]
