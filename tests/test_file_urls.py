"""PaddleX 3.7's Serving.return_urls: pictures and exports as URLs this server serves, expiring."""

from __future__ import annotations

import base64
import io
import os
import re
import time
from pathlib import Path

import requests
from conftest import COLORS, image_b64, solid, start_server, stop_and_check_clean, wait_until, write_config
from PIL import Image

from pxserve.frontend.file_store import FileStore

URL = re.compile(r"^http://127\.0\.0\.1:\d+/files/[A-Za-z0-9_-]{22}/[A-Za-z0-9._-]+$")


def test_pictures_come_back_as_urls_that_need_no_key_and_expire(tiny_model_dir: Path, tmp_path: Path) -> None:
    serving = {
        "visualize": True,
        "return_urls": True,
        "api_keys": ["k1"],
        "data_dir": str(tmp_path / "data"),
        "file_ttl_hours": 4 / 3600,  # 4 s
    }
    server = start_server(write_config(tmp_path, tiny_model_dir, serving), tmp_path)
    try:
        answer = requests.post(
            f"{server.url}/image-classification",
            json={"image": image_b64(solid(COLORS["red"]))},
            headers={"Authorization": "Bearer k1"},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        url = answer.json()["result"]["image"]
        assert URL.match(url), url
        fetched = requests.get(url, timeout=10)  # no Authorization: the URL is the key
        assert fetched.status_code == 200 and fetched.headers["Content-Type"] == "image/jpeg"
        assert Image.open(io.BytesIO(fetched.content)).size == (48, 40)
        token, name = url.rsplit("/", 2)[-2:]
        assert (tmp_path / "data" / "files" / token / name).is_file()
        for wrong in (
            url.replace(token, token[::-1]),
            url.rsplit("/", 1)[0] + "/..%2F..%2Fetc%2Fpasswd",
            url.rsplit("/", 1)[0] + "/missing.jpg",
        ):
            refused = requests.get(wrong, timeout=10)
            assert refused.status_code == 404 and refused.json()["errorCode"] == 404, wrong
        wait_until(lambda: requests.get(url, timeout=10).status_code == 404, 30, "the URL to expire")
    finally:
        stop_and_check_clean(server)


def test_every_file_of_a_result_is_written_once_and_named_by_url(tmp_path: Path) -> None:
    """The fields PaddleX answers files in: pictures, maps of pictures, exports."""
    store = FileStore(tmp_path, ttl_s=60, max_bytes=1 << 30)
    store.open()
    jpeg = io.BytesIO()
    Image.new("RGB", (8, 8)).save(jpeg, "JPEG")
    picture = base64.b64encode(jpeg.getvalue()).decode()
    docx = base64.b64encode(b"PK\x03\x04 a word file").decode()
    result = {
        "layoutParsingResults": [
            {
                "markdown": {"text": "x", "images": {"imgs/a.jpg": picture, "imgs/b.jpg": picture}},
                "outputImages": {"layout_det_res": picture},
                "inputImage": None,
                "exports": {"docx": {"content": docx, "fileName": "page_1.docx"}},
                "prunedResult": {"rec_texts": ["not a file"]},
            }
        ]
    }
    entry = store.put_answer(result, "http://host:1")["layoutParsingResults"][0]
    urls = [*entry["markdown"]["images"].values(), entry["outputImages"]["layout_det_res"]]
    urls.append(entry["exports"]["docx"]["content"])
    assert len(set(urls)) == 4 and all(u.startswith("http://host:1/files/") for u in urls)
    assert [u.rsplit("/", 1)[1] for u in urls] == ["a.jpg", "b.jpg", "layout_det_res.jpg", "page_1.docx"]
    assert entry["inputImage"] is None and entry["prunedResult"] == {"rec_texts": ["not a file"]}
    token = urls[0].rsplit("/", 2)[1]
    assert store.path_of(token, "page_1.docx").read_bytes() == b"PK\x03\x04 a word file"
    assert store.path_of(token, "../page_1.docx") is None and store.path_of("../" + token, "a.jpg") is None


def test_the_folder_is_kept_within_its_budget_oldest_answers_first(tmp_path: Path) -> None:
    store = FileStore(tmp_path, ttl_s=3600, max_bytes=2500)
    store.open()
    blob = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"x" * 992).decode()
    urls = [store.put_answer({"image": blob}, "")["image"] for _ in range(4)]
    for age, url in zip((400, 300, 200, 100), urls, strict=True):  # the first answer the oldest
        folder = tmp_path / url.split("/")[2]
        os.utime(folder, (time.time() - age, time.time() - age))
    store.sweep()
    kept = [store.path_of(*url.split("/")[2:4]) is not None for url in urls]
    assert kept == [False, False, True, True]
