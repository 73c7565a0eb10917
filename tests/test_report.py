"""The report's two renderings: report.md and the self-contained report.html."""

import base64
import re

import pandas as pd

from ray_longtail.report_render import Section, render_html, render_markdown

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5"
                       "ErkJggg==")  # 1x1 pixel


def sections() -> list[Section]:
    table = pd.DataFrame({"ndcg@10": [0.1234567, 0.05], "note": ["<b>bold</b>", "a & b"]},
                         index=pd.Index(["system", "EASE"], name="system"))
    return [Section("Quality <test>", "users & items", [table], highlight=("system",), pre="x < y",
                    plots=[("plots/curve.png", PNG)])]


def test_html_is_self_contained_and_escaped():
    page = render_html("run <1>", sections())
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    assert f'src="data:image/png;base64,{base64.b64encode(PNG).decode()}"' in page
    assert not re.search(r'(?:src|href)="(?!data:)', page)  # nothing fetched from anywhere
    assert "<b>bold</b>" not in page and "&lt;b&gt;bold&lt;/b&gt;" in page and "Quality &lt;test&gt;" in page
    assert '<tr class="highlight"><td>system</td><td>0.1235</td>' in page
    assert "<pre>x &lt; y</pre>" in page


def test_markdown_links_the_plot_files_and_tabulates():
    text = render_markdown("run 1", sections())
    assert "![curve](plots/curve.png)" in text
    assert "| system | ndcg@10 | note |" in text and "| system | 0.1235 | <b>bold</b> |" in text
    assert "```\nx < y\n```" in text
