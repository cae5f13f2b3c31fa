"""Optional API keys: Bearer tokens from config and environment."""

from __future__ import annotations

from pathlib import Path

import requests
from conftest import image_b64, solid, start_server, stop_and_check_clean, write_config

from pxserve.frontend.auth import authorized


def test_token_check() -> None:
    keys = [b"alpha", b"beta-key"]
    assert authorized("Bearer alpha", keys) and authorized("bearer beta-key", keys)
    for header in ("", "Bearer", "Bearer alph", "Bearer alpha2", "Basic alpha", "alpha"):
        assert not authorized(header, keys), header


def test_api_keys_guard_inference_and_metrics_not_health(tiny_model_dir: Path, tmp_path: Path) -> None:
    config = write_config(
        tmp_path, tiny_model_dir, serving={"instances_per_device": 1, "api_keys": ["from-config"]}
    )
    server = start_server(config, tmp_path, env={"PXSERVE_API_KEYS": "from-env, other"})
    url = f"{server.url}/image-classification"
    payload = {"image": image_b64(solid((200, 30, 30)))}
    try:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic from-config"}):
            refused = requests.post(url, json=payload, headers=headers, timeout=10)
            assert refused.status_code == 401
            assert refused.json()["errorMsg"] == "Unauthorized" and refused.json()["errorCode"] == 401
            assert refused.headers["WWW-Authenticate"] == "Bearer"
        for key in ("from-config", "from-env", "other"):
            answered = requests.post(
                url, json=payload, headers={"Authorization": f"Bearer {key}"}, timeout=10
            )
            assert answered.status_code == 200, key
        assert requests.get(f"{server.url}/health", timeout=5).status_code == 200
        assert requests.get(f"{server.url}/livez", timeout=5).status_code == 200  # probes send no key
        assert requests.get(f"{server.url}/metrics", timeout=5).status_code == 401
        metrics = requests.get(f"{server.url}/metrics", headers={"Authorization": "Bearer other"}, timeout=5)
        assert metrics.status_code == 200 and "pxserve_requests_total" in metrics.text
    finally:
        stop_and_check_clean(server)
