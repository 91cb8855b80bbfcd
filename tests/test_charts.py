"""Unit tests of plugins/filter/charts.py: each chart is rendered to a file and read back as SVG."""

import importlib.util
import xml.etree.ElementTree as ET

import pytest
from ai_stack_testlib import ROOT

_spec = importlib.util.spec_from_file_location("chart_filters", ROOT / "plugins" / "filter" / "charts.py")
cf = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cf)
_tspec = importlib.util.spec_from_file_location("tuning_filters", ROOT / "plugins" / "filter" / "tuning.py")
tf = importlib.util.module_from_spec(_tspec)
_tspec.loader.exec_module(tf)

SVG = "{http://www.w3.org/2000/svg}"


def texts(path):
    """The SVG's root element and every text it shows (svg.fonttype none: text stays text)."""
    root = ET.parse(path).getroot()
    return root, " ".join("".join(t.itertext()) for t in root.iter(f"{SVG}text"))


LOADTEST = [
    {"time": 1767261600.0, "current": 1, "desired": 1, "cpu": None},
    {"time": 1767261605.0, "current": 1, "desired": 1, "cpu": 12},
    {"time": 1767261610.5, "current": 1, "desired": 3, "cpu": 180},
    {"time": 1767261616.0, "current": 3, "desired": 3, "cpu": 95},
]


def test_loadtest_chart_renders_replicas_utilisation_against_target_and_requests(tmp_path):
    svg = cf.loadtest_chart_svg(LOADTEST, 70, 0.1, title="Load test of backend-hpa in ai-app")
    path = tmp_path / "loadtest.svg"
    path.write_text(svg)
    root, text = texts(path)
    assert root.tag == f"{SVG}svg"
    for words in ("Load test of backend-hpa in ai-app", "Replicas", "CPU utilisation", "HPA target 70 %",
                  "CPU requested by the backend", "100m x current replicas", "seconds since 2026-01-01 10:00:00 UTC",
                  "current", "desired"):
        assert words in text, words
    # three panels, each with its plotted lines
    assert len([g for g in root.iter(f"{SVG}g") if (g.get("id") or "").startswith("axes_")]) == 3
    assert len([g for g in root.iter(f"{SVG}g") if (g.get("id") or "").startswith("line2d_")]) >= 5


def test_charts_are_byte_for_byte_stable():
    assert cf.loadtest_chart_svg(LOADTEST, 70, 0.1) == cf.loadtest_chart_svg(LOADTEST, 70, 0.1)


def test_loadtest_chart_takes_rfc3339_times_and_refuses_no_samples():
    rows = [dict(s, time=t) for s, t in zip(LOADTEST[:2], ("2026-01-01T10:00:00Z", "2026-01-01T10:00:05Z"))]
    assert "<svg" in cf.loadtest_chart_svg(rows, 70, 0.1)
    with pytest.raises(ValueError, match="no HPA sample"):
        cf.loadtest_chart_svg([], 70, 0.1)


def test_rightsize_chart_renders_usage_against_current_and_recommended(tmp_path):
    workloads = [{"name": "go-backend", "containers": {"backend": "chatbot_backend_resources"}},
                 {"name": "react-frontend", "containers": {"frontend": "chatbot_frontend_resources"}}]
    results = [{"resources": [
        {"metadata": {"name": "go-backend-7f9c8d-abcde"}, "timestamp": f"2026-01-01T10:00:{s:02d}Z",
         "containers": [{"name": "backend", "usage": {"cpu": f"{100 + s}m", "memory": "40Mi"}}]},
        {"metadata": {"name": "react-frontend-5b6c7d-fghij"}, "timestamp": f"2026-01-01T10:00:{s:02d}Z",
         "containers": [{"name": "frontend", "usage": {"cpu": "5m", "memory": "10Mi"}}]}]} for s in (0, 15, 30, 45)]
    series = tf.rightsize_series(results, workloads)
    current = {"chatbot_backend_resources": {"requests": {"cpu": "100m", "memory": "64Mi"},
                                             "limits": {"cpu": "500m", "memory": "256Mi"}},
               "chatbot_frontend_resources": {"requests": {"cpu": "50m", "memory": "32Mi"},
                                              "limits": {"cpu": "200m", "memory": "128Mi"}}}
    rec = tf.rightsize_recommendation(series, current)
    path = tmp_path / "rightsize.svg"
    path.write_text(cf.rightsize_chart_svg(series, rec, title="Right-sizing ai-app"))
    root, text = texts(path)
    assert root.tag == f"{SVG}svg"
    backend = rec["values"]["chatbot_backend_resources"]
    for words in ("Right-sizing ai-app", "chatbot_backend_resources: cpu (go-backend/backend)",
                  "chatbot_frontend_resources: memory (react-frontend/frontend)", "usage go-backend-7f9c8d-abcde",
                  "current request 100m", f"recommended request {backend['requests']['cpu']}",
                  f"recommended limit {backend['limits']['memory']}"):
        assert words in text, words
    assert len([g for g in root.iter(f"{SVG}g") if (g.get("id") or "").startswith("axes_")]) == 4
