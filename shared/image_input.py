"""Turning the ``image`` field of a request into encoded image bytes.

PaddleX accepts Base64 or an http(s) URL. URL fetching stays off until it
can be made safe (allow-lists, private-address checks); until then a URL
gets a 422 that says so instead of a confusing Base64 error.
"""

from __future__ import annotations

import binascii

import pybase64

from pxserve.shared.errors import invalid


def decode_image_field(value: str, field: str = "image") -> bytes:
    text = value.strip()
    if not text:
        raise invalid(field, "must not be empty")
    if text[:8].lower().startswith(("http://", "https://")):
        raise invalid(
            field,
            "URL inputs are disabled on this server; send the image file's bytes as Base64",
        )
    if text.startswith("data:") and "," in text[:100]:
        text = text.split(",", 1)[1]  # tolerate a data: URI prefix
    if "\n" in text or "\r" in text:
        text = "".join(text.split())  # wrapped Base64, as the base64 tool writes it
    try:
        # SIMD base64 (pybase64): 0.2 ms instead of 6 ms for a 12-MP photo,
        # which is most of what the single front process spends per request.
        data = pybase64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise invalid(field, "is not valid Base64") from None
    if not data:
        raise invalid(field, "decodes to no bytes")
    return data
