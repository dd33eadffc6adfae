"""Decode one image file for the scan and prepare steps, safely: header size checked first, JPEG draft mode, EXIF.

Unlike :func:`studio.data.images.load_rgb` (training: full size, white background), this takes the bytes already
read (so the content hash and the decode share one read), can decode a JPEG at reduced size, composites
transparency on any background, and refuses decompression bombs from the header alone, before any pixel is decoded.
"""
from __future__ import annotations

import io
import re
from dataclasses import dataclass, field

from PIL import Image, ImageOps, UnidentifiedImageError

from studio.data.images import NOT_A_PICTURE, pillow_error_text, to_rgb

DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own warning limit (about 89 megapixels, 9459x9459)
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_EXIF_ORIENTATION = 0x0112
_PILLOW_BOMB = re.compile(r"\((\d+) pixels\)")


class UnreadableImage(Exception):
    """The file cannot be used: ``code`` is ``corrupt`` or ``bomb``; ``values`` holds the numbers behind it."""

    def __init__(self, code: str, message: str, values: dict | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.values = code, message, dict(values or {})


@dataclass
class Decoded:
    """The picture upright in RGB (possibly reduced by JPEG draft mode) and the file's full upright size."""

    image: Image.Image
    width: int
    height: int
    format: str
    mode: str
    info: dict = field(default_factory=dict)


def decode_rgb(data: bytes, *, background: tuple[int, int, int] = (255, 255, 255), draft_side: int | None = None,
               max_pixels: int = DEFAULT_MAX_PIXELS) -> Decoded:
    """Decode the first frame of ``data``; with ``draft_side`` a JPEG is decoded at the smallest DCT scale whose
    sides are both at least ``draft_side`` (so up to 8x fewer pixels). Raises :class:`UnreadableImage`.

    Pictures over ``max_pixels`` are refused from the header; Pillow itself refuses more than twice its
    ``Image.MAX_IMAGE_PIXELS`` (about 179 megapixels) whatever ``max_pixels`` says.

    Decoders raise many exception types on damaged input (OSError, SyntaxError, ValueError, struct.error,
    EOFError, ...), so every ``Exception`` from Pillow is reported as ``corrupt`` with its text.
    """
    width = height = 0
    if not data:
        raise UnreadableImage("corrupt", "is an empty file (0 bytes); export it again from the original, or remove "
                              "it.", {"error": "empty file", "width": 0, "height": 0})
    try:
        # Not a ``with`` block: closing would discard the pixels that the result may share with ``opened``; an
        # in-memory file holds no OS resource.
        opened = Image.open(io.BytesIO(data))
        width, height = opened.size
        file_format, mode = opened.format or "unknown", opened.mode
        if width * height > max_pixels:
            raise _bomb(width * height, max_pixels, width, height)
        if draft_side and file_format == "JPEG":
            opened.draft("RGB", (draft_side, draft_side))
        opened.load()
        info = {"icc_profile": opened.info.get("icc_profile")} if opened.info.get("icc_profile") else {}
        upright, swapped = _upright(opened)
        image = flatten(upright, background)
    except UnreadableImage:
        raise
    except Image.DecompressionBombError as error:  # Pillow's own hard limit (twice MAX_IMAGE_PIXELS), in Image.open
        found = _PILLOW_BOMB.search(str(error))
        hard_limit = 2 * Image.MAX_IMAGE_PIXELS if Image.MAX_IMAGE_PIXELS else max_pixels
        raise _bomb(int(found.group(1)) if found else 0, min(max_pixels, hard_limit)) from None
    except UnidentifiedImageError:
        raise UnreadableImage("corrupt", f"is not a picture ({NOT_A_PICTURE}); remove it from the folder, or export "
                              "the picture again.", {"error": NOT_A_PICTURE, "width": 0, "height": 0}) from None
    except Exception as error:  # noqa: BLE001 - see the docstring
        text = pillow_error_text(error)
        raise UnreadableImage("corrupt", f"cannot be decoded ({text}); the file is damaged or cut short — "
                              "export it again from the original, or remove it.",
                              {"error": text, "width": width, "height": height}) from None
    if swapped:
        width, height = height, width
    return Decoded(image, width, height, file_format, mode, info)


def flatten(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """8-bit RGB with any transparency composited on ``background`` (16-bit and float ranges scaled by ``to_rgb``)."""
    if image.mode.startswith("I") or image.mode == "F":
        image = to_rgb(image)
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        base = Image.new("RGBA", rgba.size, (*background, 255))
        return Image.alpha_composite(base, rgba).convert("RGB")
    return to_rgb(image)


def _upright(image: Image.Image) -> tuple[Image.Image, bool]:
    """The image turned as its EXIF orientation says, and whether width and height swapped.

    A damaged EXIF block leaves the picture as stored rather than making it unreadable. (TIFF files come
    out of Pillow already upright, with the orientation tag consumed.)
    """
    try:
        orientation = int(image.getexif().get(_EXIF_ORIENTATION, 1))
        if orientation not in range(2, 9):
            return image, False  # already upright: no transpose, no copy
        return ImageOps.exif_transpose(image), orientation in (5, 6, 7, 8)
    except (OSError, SyntaxError, ValueError, TypeError, KeyError):
        return image, False


def _bomb(pixels: int, limit: int, width: int = 0, height: int = 0) -> UnreadableImage:
    size = f"{width}x{height} = " if width else ""
    message = (f"its header claims {size}{pixels / 1e6:,.0f} megapixels, over the {limit / 1e6:,.0f} megapixel limit, "
               "so it was not decoded (a decompression bomb or a huge scan); shrink it in an image editor or "
               "remove it.")
    return UnreadableImage("bomb", message, {"width": width, "height": height, "pixels": pixels, "limit": limit})
