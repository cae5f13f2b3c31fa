"""Which text reader documents need: PP-OCRv4 mobile, PP-OCRv5 mobile or PP-OCRv6 small.

    python benchmarks/readers.py            # about 10 minutes on 2 cores

PP-StructureV3 turns pages into Markdown for search and LLMs, so its reader
must keep English words apart and read Chinese. Each shipped OCR config
(``OCR_PP-OCRv4``: v4, ``OCR_PP-OCRv5``: v5, ``OCR``: v6 small) serves, on
Paddle and with ``--use_hpip``:

* English: the typeset two-column article of tests/structure_docs.py, both
  pages as 150-dpi JPEGs; measured: the share of the article's words that
  come back as words of their own (``Wefollowedfive`` counts as none), and
  the share of its characters missed (order and whitespace ignored: OCR
  lists a two-column page's lines row by row across the columns);
* Chinese: six lines of common characters drawn large in the CJK font
  pxserve ships, and a page of body text (a paragraph of less common
  characters and punctuation, 26 px, as a scanned page's text is) and the
  same survey in traditional characters, 16 px, in a Ming (serif) face
  (Debian's fonts-arphic-uming; left out where it is not installed);
  measured: character error rate of each (whitespace ignored);
* seconds per page one at a time (median; both readers' servers up at once,
  the pages sent to them in turn, so machine drift hits both alike), and
  each worker's peak RSS.

Results: benchmarks/results/readers.json and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import base64
import collections
import io
import json
import re
import statistics
import sys
import time
import unicodedata
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

import structure_docs  # noqa: E402
from ocr_versions import peak_rss_mib  # noqa: E402
from run import machine, start, stop  # noqa: E402

CONFIGS = {"PP-OCRv4 mobile": "OCR_PP-OCRv4", "PP-OCRv5 mobile": "OCR_PP-OCRv5", "PP-OCRv6 small": "OCR"}
ENGINES = {"paddle": [], "onnxruntime": ["--use_hpip"]}
CHINESE = [
    "我们在山上看见一条小河，河水很清。",  # noqa: RUF001
    "生活在这里的人用网打鱼，自己做饭。",  # noqa: RUF001
    "夏天的时候，大家都到河边去玩。",  # noqa: RUF001
    "高高的山上有一个口，水从口里流出来。",  # noqa: RUF001
    "这条河一年四季都不会干。",
    "我们用了三个夏天记录它的水温。",
]

# Body text: our own paragraph on the river survey, set as a page would be.
CHINESE_BODY = [
    "二〇二三年秋季，调查组沿着河道测量了十二个断面的流速与泥沙含量。",  # noqa: RUF001
    "测量结果显示，上游断面的平均流速约为每秒一点四米，下游明显减缓；",  # noqa: RUF001
    "雨季过后，河床淤积加重，部分浅滩的水深不足半米，影响了渔船通行。",  # noqa: RUF001
    "为此，村委会与水利站协商，决定在明年春汛前完成疏浚和护岸工程。",  # noqa: RUF001
    "工程预算共计八十六万元，其中省级补助占百分之六十，其余由县财政承担。",  # noqa: RUF001
    "报告还建议在支流汇入处设置监测站，记录水位、浊度和溶解氧的变化，",  # noqa: RUF001
    "并每季度向居民公布数据，以便及时发现污染、洪涝等隐患。",  # noqa: RUF001
    "附表列出了各断面的坐标、测量日期、仪器型号及负责人员的姓名。",
]

CHINESE_TRADITIONAL = [
    "二〇二三年秋季，調查組沿著河道測量了十二個斷面的流速與泥沙含量。",  # noqa: RUF001
    "雨季過後，河床淤積加重，部分淺灘的水深不足半米，影響了漁船通行。",  # noqa: RUF001
    "報告還建議在支流匯入處設置監測站，記錄水位、濁度和溶解氧的變化。",  # noqa: RUF001
]
MING = Path("/usr/share/fonts/truetype/arphic/uming.ttc")  # index 2: AR PL UMing TW


def english_pages() -> list[bytes]:
    import pypdfium2

    document = pypdfium2.PdfDocument(str(structure_docs.DATA / "article_two_columns.pdf"))
    pages = []
    for i in range(len(document)):
        buffer = io.BytesIO()
        document[i].render(scale=150 / 72).to_pil().convert("RGB").save(buffer, "JPEG", quality=90)
        pages.append(buffer.getvalue())
    return pages


def english_truth() -> str:
    blocks = structure_docs.article(True)
    texts = [structure_docs.TITLE, *(b.text for b in blocks if b.text), structure_docs.TABLE_CAPTION]
    texts += [" ".join(row) for row in structure_docs.TABLE] + [structure_docs.FIGURE_CAPTION]
    return " ".join(texts)


def chinese_page(lines: list[str] = CHINESE, size: int = 40, face: Path | None = None) -> bytes:
    from PIL import Image, ImageDraw, ImageFont

    from pxserve.workers.ocr.visualize import font_path

    font = ImageFont.truetype(str(face), size, index=2) if face else ImageFont.truetype(font_path(), size)
    step = int(size * 1.75)
    width = 80 + max(int(font.getlength(line)) for line in lines)
    image = Image.new("RGB", (width, 2 * size + step * len(lines)), "white")
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((40, size + step * i), line, fill="black", font=font)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def words(text: str) -> list[str]:
    return [w for w in (re.sub(r"[^\w]", "", w).lower() for w in text.split()) if w]


def word_share(found: str, truth: str) -> float:
    """The share of the truth's words that the reading has as words of their own."""
    have, want = collections.Counter(words(found)), collections.Counter(words(truth))
    return round(sum((have & want).values()) / sum(want.values()), 3)


def missed(found: str, truth: str) -> float:
    """The share of the truth's characters the reading lacks, order and whitespace aside."""
    have = collections.Counter(re.sub(r"\s+", "", found))
    want = collections.Counter(re.sub(r"\s+", "", truth))
    return round(1 - sum((have & want).values()) / sum(want.values()), 4)


def cer(found: str, truth: str) -> float:
    from rapidfuzz.distance import Levenshtein

    flat = lambda text: re.sub(r"\s+", "", unicodedata.normalize("NFKC", text))  # noqa: E731
    return round(Levenshtein.normalized_distance(flat(found), flat(truth)), 4)


def read(url: str, page: bytes) -> tuple[float, str]:
    body = {"file": base64.b64encode(page).decode(), "fileType": 1, "useTextlineOrientation": False}
    started = time.monotonic()
    response = requests.post(f"{url}/ocr", json=body, timeout=600)
    elapsed = time.monotonic() - started
    response.raise_for_status()
    return elapsed, " ".join(response.json()["result"]["ocrResults"][0]["prunedResult"]["rec_texts"])


def measure_engine(flags: list[str], work: Path, rounds: int) -> list[dict]:
    """Both readers' servers up at once on one engine, pages sent to them in turn (A/B)."""
    servers = {}
    try:
        for reader, config in CONFIGS.items():
            command = [
                sys.executable,
                "-m",
                "pxserve",
                "--serve",
                "--pipeline",
                config,
                "--host",
                "127.0.0.1",
            ]
            log = work / f"server-{config}-{'hpip' if flags else 'paddle'}.log"
            servers[reader] = start([*command, *flags], {}, log)
        pages, chinese, body = english_pages(), chinese_page(), chinese_page(CHINESE_BODY, 26)
        for _, url in servers.values():
            read(url, pages[0])  # warm
        times: dict[str, list[float]] = {reader: [] for reader in servers}
        english: dict[str, list[str]] = {reader: [] for reader in servers}
        for round_ in range(rounds):
            for page in pages:
                for reader, (_, url) in servers.items():
                    elapsed, text = read(url, page)
                    times[reader].append(elapsed)
                    if round_ == 0:
                        english[reader].append(text)
        runs = []
        truth = english_truth()
        for reader, (process, url) in servers.items():
            _, chinese_text = read(url, chinese)
            _, body_text = read(url, body)
            ming = read(url, chinese_page(CHINESE_TRADITIONAL, 16, MING))[1] if MING.is_file() else None
            joined = " ".join(english[reader])
            runs.append(
                {
                    "reader": reader,
                    "config": CONFIGS[reader],
                    "english_word_share": word_share(joined, truth),
                    "english_missed": missed(joined, truth),
                    "chinese_cer": cer(chinese_text, "".join(CHINESE)),
                    "chinese_reading": chinese_text,
                    "chinese_body_cer": cer(body_text, "".join(CHINESE_BODY)),
                    "chinese_body_reading": body_text,
                    "chinese_ming_cer": cer(ming, "".join(CHINESE_TRADITIONAL)) if ming is not None else None,
                    "chinese_ming_reading": ming,
                    "seconds_per_page_c1": round(statistics.median(times[reader]), 2),
                    "worker_peak_rss_mib": peak_rss_mib(process.pid),
                }
            )
        return runs
    finally:
        for process, _ in servers.values():
            stop(process)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--rounds", type=int, default=3, help="times each English page is read, per reader")
    args = parser.parse_args()
    work = HERE / ".cache" / "readers"
    work.mkdir(parents=True, exist_ok=True)
    runs = []
    for engine, flags in ENGINES.items():
        print(f"both readers on {engine} ...", flush=True)
        for run in measure_engine(flags, work, args.rounds):
            runs.append({"engine": engine, **run})
            print(json.dumps(runs[-1], ensure_ascii=False), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"machine": machine(), "runs": runs}
    (args.out / "readers.json").write_text(json.dumps(report, indent=1, ensure_ascii=False))
    print("| reader | engine | English words apart | English chars missed ", end="")
    print("| Chinese CER (large, body, Ming 16 px) | s/page | RSS |")
    print("|---|---|---|---|---|---|---|")
    for run in runs:
        print(
            f"| {run['reader']} | {run['engine']} | {run['english_word_share']} | {run['english_missed']} "
            f"| {run['chinese_cer']}, {run['chinese_body_cer']}, {run['chinese_ming_cer']} "
            f"| {run['seconds_per_page_c1']} "
            f"| {max(run['worker_peak_rss_mib'])} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
