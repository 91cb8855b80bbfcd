"""Charts next to the text reports of the load test (`--tags loadtest`) and right-sizing (`--tags rightsize`).

Each filter returns an SVG document as text, which the role writes with ansible.builtin.copy (so check
mode and --diff behave as for any file). Drawn with matplotlib (pinned in requirements.txt) on its Agg
backend, which needs no display; the same data always gives the same bytes (no date in the metadata,
fixed ids), so a re-run with the same samples changes nothing.

- ``loadtest_chart_svg``: the backend HPA during the load test: replicas (current and desired), CPU
  utilisation against the HPA's target, and the CPU the backend requests (replicas x request) over time.
- ``rightsize_chart_svg``: per container, CPU and memory usage over the sampling window against the
  current request and the recommended request and limit.

matplotlib is imported on first use, not when Ansible loads the plugin (tests/test_filters.py).
"""

from datetime import datetime, timezone


def _time(value):
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(float(value), tz=timezone.utc)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(timezone.utc)


def _render(title, panels, ncols=1):
    """panels: [{title, ylabel, xlabel, lines: [{label, x, y, step?, style?}], hlines: [{label, y, style?}]}]."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    nrows = max(1, -(-len(panels) // ncols))
    with matplotlib.rc_context({"svg.hashsalt": "ai-stack", "svg.fonttype": "none", "font.size": 9}):
        fig, axes = plt.subplots(nrows, ncols, figsize=(6.4 * ncols, 2.6 * nrows), squeeze=False)
        try:
            for ax, panel in zip([a for row in axes for a in row], panels):
                for line in panel.get("lines", []):
                    if not line["x"]:
                        continue
                    if line.get("step"):
                        ax.step(line["x"], line["y"], where="post", label=line["label"], linestyle=line.get("style", "-"))
                    else:
                        ax.plot(line["x"], line["y"], marker=".", label=line["label"], linestyle=line.get("style", "-"))
                for hline in panel.get("hlines", []):
                    if hline.get("y") is not None:
                        ax.axhline(hline["y"], label=hline["label"], linestyle=hline.get("style", "--"),
                                   color=hline.get("color"))
                ax.set_title(panel["title"], fontsize=9)
                ax.set_ylabel(panel.get("ylabel", ""))
                ax.set_xlabel(panel.get("xlabel", ""))
                ax.set_ylim(bottom=0)
                if panel.get("xlim") and panel["xlim"][1] > panel["xlim"][0]:
                    ax.set_xlim(*panel["xlim"])
                ax.grid(True, alpha=0.3)
                if ax.get_legend_handles_labels()[0]:
                    ax.legend(fontsize=7, loc="best")
            for ax in [a for row in axes for a in row][len(panels):]:
                ax.set_visible(False)
            fig.suptitle(title, fontsize=10)
            fig.tight_layout()
            out = io.StringIO()
            fig.savefig(out, format="svg", metadata={"Date": None})
            return out.getvalue()
        finally:
            plt.close(fig)


def _seconds(times):
    start = min(times)
    return start, [(t - start).total_seconds() for t in times]


def loadtest_chart_svg(samples, target_percent, cpu_request_cores, title="Load test"):
    """samples: [{time (epoch seconds or RFC 3339), current, desired, cpu (HPA's average utilisation in %,
    or None before it has metrics)}] as the load test read them from the HPA."""
    rows = sorted(samples or [], key=lambda s: _time(s["time"]))
    if not rows:
        raise ValueError("no HPA sample to draw")
    start, xs = _seconds([_time(s["time"]) for s in rows])
    xlabel = f"seconds since {start:%Y-%m-%d %H:%M:%S} UTC"
    cpu = [(x, s["cpu"]) for x, s in zip(xs, rows) if s.get("cpu") is not None]
    request_m = float(cpu_request_cores) * 1000
    panels = [
        {"title": "Replicas", "ylabel": "replicas", "xlabel": xlabel, "lines": [
            {"label": "current", "x": xs, "y": [int(s.get("current") or 0) for s in rows], "step": True},
            {"label": "desired", "x": xs, "y": [int(s.get("desired") or 0) for s in rows], "step": True, "style": "--"}]},
        {"title": "CPU utilisation (average, % of request)", "ylabel": "%", "xlabel": xlabel, "lines": [
            {"label": "utilisation", "x": [c[0] for c in cpu], "y": [float(c[1]) for c in cpu]}],
         "hlines": [{"label": f"HPA target {float(target_percent):g} %", "y": float(target_percent), "color": "red"}]},
        {"title": "CPU requested by the backend (replicas x request)", "ylabel": "millicores", "xlabel": xlabel, "lines": [
            {"label": f"{request_m:g}m x current replicas", "x": xs,
             "y": [int(s.get("current") or 0) * request_m for s in rows], "step": True}]},
    ]
    for panel in panels:  # one time axis for the three panels
        panel["xlim"] = (0, max(xs))
    return _render(title, panels)


def rightsize_chart_svg(series, recommendation, title="Right-sizing"):
    """series: rightsize_series's result; recommendation: rightsize_recommendation's result."""
    from importlib import util
    from pathlib import Path

    spec = util.spec_from_file_location("ai_stack_tuning", Path(__file__).with_name("tuning.py"))
    tuning = util.module_from_spec(spec)
    spec.loader.exec_module(tuning)
    rows = {r["variable"]: r for r in recommendation.get("rows", [])}
    times = [_time(p[0]) for s in series.values() for r in ("cpu", "memory") for p in s[r] if p[0]]
    if not times:
        raise ValueError("no usage sample to draw")
    start = min(times)
    xlabel = f"seconds since {start:%Y-%m-%d %H:%M:%S} UTC"
    panels = []
    for variable, s in series.items():
        row = rows.get(variable, {})
        for resource, unit, scale in (("cpu", "millicores", 1000.0), ("memory", "Mi", 1.0 / tuning.MI)):
            pods = sorted({p[2] for p in s[resource]})
            lines = [{"label": f"usage {pod}", "x": [(_time(p[0]) - start).total_seconds() for p in s[resource] if p[2] == pod],
                      "y": [p[1] * scale for p in s[resource] if p[2] == pod]} for pod in pods]
            figures = row.get(resource) or {}

            def level(text):
                return tuning.quantity(text) * scale if text else None

            panels.append({"title": f"{variable}: {resource} ({s['workload']}/{s['container']})", "ylabel": unit,
                           "xlabel": xlabel, "lines": lines, "hlines": [
                               {"label": f"current request {figures.get('current_request')}",
                                "y": level(figures.get("current_request")), "style": ":", "color": "grey"},
                               {"label": f"recommended request {figures.get('request')}",
                                "y": level(figures.get("request")), "style": "--", "color": "green"},
                               {"label": f"recommended limit {figures.get('limit')}",
                                "y": level(figures.get("limit")), "style": "-.", "color": "red"}]})
    return _render(title, panels, ncols=2)


class FilterModule:
    """Charts as SVG text (matplotlib, Agg)."""

    def filters(self):
        return {
            "loadtest_chart_svg": loadtest_chart_svg,
            "rightsize_chart_svg": rightsize_chart_svg,
        }
