"""The report's interactive pages in a real browser (headless Chromium): they render with no console error,
hold every variant's points and the front, show a configuration on hover, and look like the static PNG;
report.html renders the same with no request beyond the file itself."""

from __future__ import annotations

import io

import numpy as np
import pytest
from matplotlib import image

from analysis.report import write_report
from tests.browser import file_url, open_page
from tests.test_analysis import sample_study

PLOT = "document.querySelector('.js-plotly-plot')"
PLOTTED = f"{PLOT} && {PLOT}.querySelector('.scatterlayer .trace')"
TRACES = f"{PLOT}.data.map(t => t.name)"
POINTS = f"{PLOT}.data.filter(t => t.customdata && t.mode.includes('markers')).map(t => t.name)"
# hover the first point of the vlpet-large trace, as a mouse would, and read the hover label
HOVER = f"""(async () => {{
    const plot = {PLOT};
    const curve = plot.data.findIndex(t => t.name === 'vlpet-large' && t.customdata);
    Plotly.Fx.hover(plot, [{{curveNumber: curve, pointNumber: 0}}]);
    await new Promise(done => setTimeout(done, 300));
    return plot.querySelector('.hoverlayer').textContent;
}})()"""
VARIANTS = {"full", "bitfit", "vlpet-large", "lora"}  # sample_study's variants with a finished point


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    study = tmp_path_factory.mktemp("study")
    sample_study().to_parquet(study / "results.parquet")
    write_report(study)
    return study / "report"


def ink(png: bytes) -> float:
    """The share of pixels that are not (near) white."""
    pixels = image.imread(io.BytesIO(png))[..., :3]
    return float((pixels.min(axis=-1) < 0.9).mean())


def test_the_interactive_frontier_renders_every_variant_and_the_front_and_hovers_the_config(report):
    page = open_page(file_url(report / "frontier.html"), PLOTTED, [TRACES, POINTS, HOVER])
    traces, points, hovered = page.values
    assert page.errors == []
    assert VARIANTS <= set(points) and "Pareto frontier" in traces, traces
    assert "vlpet-large" in hovered and "lr" in hovered and "params" in hovered, hovered  # the configuration
    (report / "frontier.screenshot.png").write_bytes(page.screenshot)  # kept with the report for a look
    shot, static = ink(page.screenshot), ink((report / "frontier.png").read_bytes())
    assert 0.01 < shot and 0.25 < shot / static < 4, (shot, static)  # a drawn plot, about as busy as the PNG


@pytest.mark.parametrize("page_name", ["frontier_vqa.html", "hypervolume.html"])
def test_the_other_interactive_pages_render_without_errors(report, page_name):
    page = open_page(file_url(report / page_name), PLOTTED, [TRACES])
    assert page.errors == [] and page.values[0], page.values


def test_report_html_is_one_self_contained_page_with_the_tables_pictures_and_interactive_frontier(report):
    page = open_page(file_url(report / "report.html"), f"document.getElementById('frontier') && {PLOTTED}",
                     ["document.querySelectorAll('table').length",
                      "[...document.images].map(i => i.src.slice(0, 22) + ':' + i.naturalWidth)",
                      "[...document.querySelectorAll('.js-plotly-plot')].map(p => p.id)", POINTS, HOVER])
    tables, images, plots, points, hovered = page.values
    assert page.errors == []
    fetched = [url for url in page.requests if not url.startswith("data:")]  # the inlined PNGs are data: URLs
    assert fetched == [file_url(report / "report.html")], fetched  # nothing fetched at view time
    assert tables >= 3 and images and all(src.startswith("data:image/png;base64") and not src.endswith(":0")
                                          for src in images), images
    assert {"frontier", "frontier_vqa", "hypervolume"} <= set(plots) and VARIANTS <= set(points)
    assert "vlpet-large" in hovered and "lr" in hovered
    assert np.isfinite(ink(page.screenshot))
