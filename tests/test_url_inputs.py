"""URL inputs: off by default; when on, never a way into private networks.

An image origin runs on loopback in this process. The first server uses the
default policy (private networks refused, so even this origin is refused
after DNS resolution); the second allows private networks to exercise
fetching, redirects and limits, and must still refuse metadata addresses.
"""

from __future__ import annotations

import asyncio
import io
import ipaddress
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from conftest import Server, free_port, start_server, stop_and_check_clean, write_config
from PIL import Image

from pxserve.frontend.url_fetch import host_allowed, refusal


@pytest.mark.parametrize(
    ("address", "allow_private", "refused"),
    [
        ("8.8.8.8", False, False),
        ("2001:4860:4860::8888", False, False),
        ("127.0.0.1", False, True),
        ("10.1.2.3", False, True),
        ("172.16.0.1", False, True),
        ("192.168.1.1", False, True),
        ("0.0.0.0", False, True),
        ("::1", False, True),
        ("fe80::1", False, True),
        ("::ffff:127.0.0.1", False, True),
        ("169.254.169.254", False, True),
        ("127.0.0.1", True, False),
        ("169.254.169.254", True, True),  # metadata: refused always
        ("fd00:ec2::254", True, True),
    ],
)
def test_address_policy(address: str, allow_private: bool, refused: bool) -> None:
    assert (refusal(ipaddress.ip_address(address), allow_private) is not None) == refused


def test_host_allow_list() -> None:
    assert host_allowed("anything.example", [])
    assert host_allowed("img.example.com", [".example.com"]) and host_allowed("example.com", ["example.com"])
    assert not host_allowed("example.com.evil.net", [".example.com"])
    assert not host_allowed("other.org", ["example.com"])


def png(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), color).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def origin() -> Iterator[str]:
    """An image server on loopback, run by its own event loop in a thread."""

    async def image(_: web.Request) -> web.Response:
        return web.Response(body=png((220, 30, 30)), content_type="image/png")

    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(body=png((0, 0, 0)), content_type="image/png")

    def redirect(to: str):
        async def handler(_: web.Request) -> web.Response:
            raise web.HTTPFound(to)

        return handler

    app = web.Application()
    app.router.add_get("/red.png", image)
    app.router.add_get("/slow.png", slow)
    app.router.add_get("/big.png", lambda _: asyncio.sleep(0, web.Response(body=b"\0" * (2 << 20))))
    app.router.add_get("/to-red", redirect("/red.png"))
    app.router.add_get("/to-metadata", redirect("http://169.254.169.254/latest/meta-data/"))
    app.router.add_get("/loop", redirect("/loop"))
    port = free_port()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def url_server(tiny_model_dir: Path, folder: Path, **url_inputs) -> Server:
    serving = {"instances_per_device": 1, "url_inputs": {"enabled": True, **url_inputs}}
    return start_server(write_config(folder, tiny_model_dir, serving=serving), folder)


def error_of(server: Server, url: str) -> tuple[int, str]:
    response = server.classify({"image": url})
    return response.status_code, response.json()["errorMsg"]


def test_default_policy_refuses_private_hosts_after_resolving(
    origin: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    server = url_server(tiny_model_dir, tmp_path)
    try:
        port = origin.rsplit(":", 1)[1]
        for url in (f"{origin}/red.png", f"http://localhost:{port}/red.png", "http://10.255.255.1/x.png"):
            status, message = error_of(server, url)
            assert status == 422 and "refused" in message, (url, message)
        assert error_of(server, "http://no-such-host.invalid/x.png") == (
            422,
            "image: cannot resolve host no-such-host.invalid",
        )
    finally:
        stop_and_check_clean(server)


# The metadata address is allowed by name so that the address policy itself,
# not the allow-list, is what refuses the redirect to it.
ALLOWED = ["127.0.0.1", "169.254.169.254"]


def test_fetching_redirects_and_limits(origin: str, tiny_model_dir: Path, tmp_path: Path) -> None:
    server = url_server(
        tiny_model_dir,
        tmp_path,
        allow_private_networks=True,
        allow_hosts=ALLOWED,
        max_mb=1,
        timeout_s=2,
    )
    try:
        for path in ("/red.png", "/to-red"):
            response = server.classify({"image": origin + path})
            assert response.status_code == 200, response.text
            assert response.json()["result"]["categories"][0]["name"] == "red"
        assert "cloud metadata address" in error_of(server, origin + "/to-metadata")[1]
        assert error_of(server, origin + "/loop")[1] == "image: the URL redirected more than 3 times"
        assert error_of(server, origin + "/big.png")[0] == 413
        assert "took longer than 2 s" in error_of(server, origin + "/slow.png")[1]
        assert error_of(server, origin + "/missing.png") == (422, "image: the URL answered HTTP 404")
        port = origin.rsplit(":", 1)[1]
        assert "not on this server's allow-list" in error_of(server, f"http://localhost:{port}/red.png")[1]
    finally:
        stop_and_check_clean(server)
