"""Documents whose content is known exactly, typeset with pdflatex: the ground truth for PP-StructureV3.

``python tests/structure_docs.py`` writes ``tests/data/structure/*.tex`` from the
content below and typesets them (Debian's texlive: ``apt-get install
texlive-latex-base texlive-latex-recommended texlive-fonts-recommended``); the
PDFs are committed, so the tests need no TeX. The tests read the truth from
here: every paragraph's text, the headings and their levels, the table's cells,
the figure and caption, in reading order.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

DATA = Path(__file__).parent / "data" / "structure"

TITLE = "Small Mountain Rivers in a Warming Climate"


@dataclass(frozen=True)
class Block:
    kind: str  # "heading" (level 2 or 3), "text", "table", "figure", "equation"
    text: str = ""
    level: int = 0


INTRO = [
    "We followed five small mountain rivers through three summers and measured how their water "
    "temperature, depth and flow changed from the spring melt to the first autumn frost. Each river "
    "drains a steep valley above the tree line, where snow lies until early June and the ground stays "
    "frozen for most of the year.",
    "Earlier surveys counted fish and insects in the same valleys but recorded the water itself only "
    "once a month. Rivers this small respond within hours to a warm afternoon or a passing storm, so "
    "monthly readings miss most of what matters to the animals that live in them.",
]
METHODS = [
    "Every station carried a temperature logger fixed to a steel rod, a pressure sensor for the depth "
    "and a small solar panel. The loggers wrote one reading every ten minutes and were read out by hand "
    "at each visit, about once every three weeks during the open season.",
    "Flow was measured by salt dilution at each visit, which gave a rating curve for every station. "
    "Where the channel moved after a flood we measured again and kept the two curves apart.",
]
RESULTS = [
    "The warmest river reached its highest temperature in late July, about two weeks after the last "
    "snow had gone from its valley. The coldest river never rose above seven degrees, because a "
    "glacier still feeds it through the whole summer.",
    "Daily swings were largest in the shallow rivers on clear days, when the water warmed by as much "
    "as six degrees between dawn and the middle of the afternoon and cooled again before midnight.",
    "The table below lists the mean summer values for each river. The figure shows how the warmest "
    "and the coldest river followed the air temperature over one week in August.",
]
DISCUSSION = [
    "Rivers fed by snow alone warmed soon after the melt ended, while the glacier river stayed cold. "
    "As the glaciers shrink, more of these rivers will behave like the warm ones, and the animals that "
    "need cold water will have fewer places left to go.",
    "We plan to keep the stations running for another ten years and to add two rivers on the northern "
    "side of the range, where the snow melts later and the valleys are deeper.",
]
TABLE = [
    ["River", "Length (km)", "Temperature", "Depth (cm)"],
    ["Alder", "12", "9.4", "41"],
    ["Birch", "8", "11.2", "28"],
    ["Cedar", "15", "6.1", "55"],
    ["Dogwood", "6", "12.8", "19"],
]
TABLE_CAPTION = "Table 1: Mean summer values of the five rivers."
FIGURE_CAPTION = "Figure 1: Water and air temperature over one week in August."
FOOTNOTE = "The loggers were calibrated in an ice bath before each season."


def article(two_columns: bool) -> list[Block]:
    """The blocks in reading order, as the Markdown should have them (two columns: the figure
    spans both, so LaTeX floats it to the top of the next page, after the Discussion)."""
    blocks = [
        Block("heading", "1 Introduction", 2),
        *(Block("text", p) for p in INTRO),
        Block("heading", "2 Methods", 2),
        Block("heading", "2.1 Stations", 3),
        Block("text", METHODS[0]),
        Block("heading", "2.2 Flow", 3),
        Block("text", METHODS[1]),
        Block("heading", "3 Results", 2),
        *(Block("text", p) for p in RESULTS),
        Block("table"),
        Block("figure"),
        Block("heading", "4 Discussion", 2),
        *(Block("text", p) for p in DISCUSSION),
    ]
    if two_columns:
        blocks.remove(Block("figure"))
        blocks.append(Block("figure"))
    return blocks


def _tex_table() -> str:
    rows = [" & ".join(row) + r" \\ \hline" for row in TABLE]
    return (
        "\\begin{table}[h]\n\\centering\n\\begin{tabular}{|l|r|r|r|}\n\\hline\n"
        + "\n".join(rows)
        + "\n\\end{tabular}\n\\caption*{"
        + TABLE_CAPTION
        + "}\n\\end{table}\n"
    )


def _tex(two_columns: bool) -> str:
    figure = "figure*" if two_columns else "figure"
    width = "0.8\\textwidth"
    parts = [
        "\\documentclass[11pt%s]{article}" % (",twocolumn" if two_columns else ""),
        "\\usepackage[a4paper,margin=2.2cm]{geometry}",
        "\\usepackage{graphicx}\n\\usepackage{caption}\n\\usepackage{amsmath}",
        "\\pagestyle{plain}",
        "\\title{" + TITLE + "}\n\\author{Field Notes Group}\n\\date{}",
        "\\begin{document}\n\\maketitle",
        "\\section{Introduction}",
        INTRO[0] + "\\footnote{" + FOOTNOTE + "}",
        "",
        INTRO[1],
        "\\section{Methods}\n\\subsection{Stations}",
        METHODS[0],
        "\\begin{equation}\nQ = \\frac{M}{\\int_0^T c(t)\\,dt}\n\\end{equation}",
        "\\subsection{Flow}",
        METHODS[1],
        "\\section{Results}",
        "\n\n".join(RESULTS),
        _tex_table(),
        f"\\begin{{{figure}}}[h]\n\\centering\n\\includegraphics[width={width}]{{chart.png}}\n"
        f"\\caption*{{{FIGURE_CAPTION}}}\n\\end{{{figure}}}",
        "\\section{Discussion}",
        "\n\n".join(DISCUSSION),
        "\\end{document}",
    ]
    return "\n\n".join(parts) + "\n"


def chart() -> Image.Image:
    """A line chart with no words in it: two curves over a week, axes, grid."""
    image = Image.new("RGB", (1200, 500), "white")
    draw = ImageDraw.Draw(image)
    for x in range(100, 1150, 150):
        draw.line([(x, 40), (x, 440)], fill=(220, 220, 220), width=2)
    draw.line([(100, 440), (1150, 440)], fill="black", width=4)
    draw.line([(100, 40), (100, 440)], fill="black", width=4)
    import math

    for colour, base, swing in (((200, 40, 40), 250, 120), ((40, 80, 200), 330, 40)):
        points = [(100 + t * 5, base - swing * math.sin(t / 30.0)) for t in range(210)]
        draw.line(points, fill=colour, width=6)
    return image


def build() -> None:
    DATA.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        chart().save(work / "chart.png")
        for name, two in (("article_one_column", False), ("article_two_columns", True)):
            tex = _tex(two)
            (DATA / f"{name}.tex").write_text(tex)
            (work / f"{name}.tex").write_text(tex)
            for _ in range(2):
                subprocess.run(
                    ["pdflatex", "-interaction=nonstopmode", f"{name}.tex"],
                    cwd=work, check=True, capture_output=True,
                )  # fmt: skip
            (DATA / f"{name}.pdf").write_bytes((work / f"{name}.pdf").read_bytes())
            print(f"wrote {DATA / name}.pdf", file=sys.stderr)


if __name__ == "__main__":
    build()
