"""Bounded request bodies and safe image uploads.

``BodyLimitMiddleware`` refuses a body over the limit with 413 before it is read in full (by its
Content-Length, or while streaming one without it). ``read_upload_image`` reads at most the
upload limit, checks the format and the pixel count from the header before decoding anything
(decompression bombs are refused, not decoded) and returns an RGB image scaled to at most
``MAX_SIDE`` pixels a side.
"""

from __future__ import annotations

import io

from fastapi import HTTPException, UploadFile

__all__ = ["BodyLimitMiddleware", "read_upload_image", "IMAGE_FORMATS", "MAX_SIDE"]

IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")
MAX_SIDE = 1024  # the encoders see 224 px: larger decodes only cost time


class BodyLimitMiddleware:
    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await _too_large(send, self.max_bytes)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(413, f"request body over {self.max_bytes} bytes")
            return message

        await self.app(scope, limited, send)


async def _too_large(send, max_bytes: int) -> None:
    body = f'{{"detail":"request body over {max_bytes} bytes (max_upload_bytes)"}}'.encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def read_upload_image(upload: UploadFile, max_bytes: int, max_pixels: int):
    from PIL import Image, UnidentifiedImageError

    data = await upload.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise HTTPException(413, f"image: over max_upload_bytes={max_bytes}")
    if not data:
        raise HTTPException(422, "image: the upload is empty")
    try:
        img = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)  # reads the header only
    except Image.DecompressionBombError as exc:  # PIL's own guard, far above ours
        raise HTTPException(422, f"image: too many pixels ({exc}); at most max_image_pixels={max_pixels}") from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise HTTPException(415, f"image: not a decodable image; allowed formats {IMAGE_FORMATS}") from None
    w, h = img.size
    if w * h > max_pixels or w < 1 or h < 1:
        raise HTTPException(422, f"image: {w}x{h} pixels; at most max_image_pixels={max_pixels} are decoded")
    try:
        img.draft("RGB", (MAX_SIDE, MAX_SIDE))  # JPEG: decode at a reduced scale
        img.thumbnail((MAX_SIDE, MAX_SIDE))
        return img.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise HTTPException(415, f"image: does not decode ({str(exc)[:120]})") from None
