"""Decode untrusted image bytes safely: one function for the data pipeline and the HTTP service."""

from __future__ import annotations

import io
import warnings

from PIL import Image, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 40_000_000  # ~6300 x 6300; far above any training resolution
ALLOWED_FORMATS = frozenset({"PNG", "JPEG", "WEBP", "GIF", "BMP"})


class ImageDecodeError(ValueError):
    """Bytes that are not a usable image; `reason` is a short machine-readable code."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS,
                 allowed_formats: frozenset[str] = ALLOWED_FORMATS) -> Image.Image:
    """RGB image from `data`, or ImageDecodeError naming why not.

    The pixel count is checked from the header before any pixel is decoded, so a decompression
    bomb (a small file declaring a huge canvas) is refused without allocating it.
    """
    if not data:
        raise ImageDecodeError("empty_image", "image is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise ImageDecodeError(
                    "too_many_pixels", f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}")
            if image.format not in allowed_formats:
                raise ImageDecodeError(
                    "unsupported_format", f"image format {image.format} is not one of {sorted(allowed_formats)}")
            image.load()  # decodes every pixel: truncated data fails here, not later in a batch
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageDecodeError("too_many_pixels", f"image refused as a decompression bomb: {error}") from None
    except UnidentifiedImageError:
        raise ImageDecodeError("not_an_image", "bytes are not a recognised image format") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageDecodeError("corrupt_image", f"image could not be decoded: {error}") from None
    return image.convert("RGB") if image.mode != "RGB" else image
