"""Draws the manual's pictures: what each pipeline's ``visualize`` returns for its page's example.

With a server serving every pipeline (see docs/development.md), from the repository root:

    python docs/pictures.py --url http://localhost:8080

writes docs/images/<pipeline>.jpg, scaled to at most 900 px wide so the manual stays small.
"""

from __future__ import annotations

import argparse
import base64
import io
from pathlib import Path

import requests
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "images"
WIDTH = 900


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def turned_page() -> str:
    """The page-orientation example's input: an OCR test page turned a quarter clockwise."""
    buffer = io.BytesIO()
    Image.open(ROOT / "tests/data/ocr/page_top.jpg").rotate(-90, expand=True).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def result(url: str, route: str, payload: dict) -> dict:
    response = requests.post(f"{url}{route}", json={**payload, "visualize": True}, timeout=600)
    response.raise_for_status()
    return response.json()["result"]


def pictures(url: str) -> dict[str, str]:
    """Base64 pictures by file name, one per pipeline page of the manual."""
    data = ROOT / "tests" / "data"
    classified = result(url, "/image-classification", {"image": b64(data / "chelsea.jpg")})
    ocr = result(url, "/ocr", {"file": b64(data / "ocr/page_region.jpg")})["ocrResults"][0]
    table = result(url, "/table-recognition", {"file": b64(data / "tables/units.png")})["tableRecResults"][0]
    seal = result(url, "/seal-recognition", {"file": b64(data / "seals/seal_contract.png")})[
        "sealRecResults"
    ][0]
    upright = result(url, "/document-preprocessing", {"file": turned_page()})["docPreprocessingResults"][0]
    article = data / "structure/article_two_columns.pdf"
    parsed = result(url, "/layout-parsing", {"file": b64(article), "fileType": 0})["layoutParsingResults"][0]
    return {
        "image_classification.jpg": classified["image"],
        "ocr.jpg": ocr["ocrImage"],
        "table_recognition.jpg": table["outputImages"]["table_cell_img"],
        "seal_recognition.jpg": next(iter(seal["outputImages"].values())),
        "doc_preprocessor.jpg": upright["docPreprocessingImage"],
        "pp_structurev3.jpg": parsed["outputImages"]["layout_order_res"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://localhost:8080")
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    for name, picture in pictures(args.url).items():
        image = Image.open(io.BytesIO(base64.b64decode(picture))).convert("RGB")
        if image.width > WIDTH:
            image = image.resize((WIDTH, round(image.height * WIDTH / image.width)), Image.LANCZOS)
        image.save(OUT / name, quality=80, optimize=True)
        print(f"{OUT / name}: {image.width}x{image.height}, {(OUT / name).stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main()
