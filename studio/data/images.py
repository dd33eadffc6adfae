"""Reading pictures for training without torch: a check that each decodes, sizes, upright 8-bit RGB decoding."""
from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from studio.data.metadata import DatasetError, DatasetProblem
from studio.util.reading import FileRefused, read_bytes_capped

MAX_IMAGE_BYTES = 256 << 20  # a 100-megapixel 16-bit TIFF is about 600 MB, a 24 MP photo 10-30 MB
_EXIF_ORIENTATION = 0x0112
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
NOT_A_PICTURE = "its content is not a JPEG, PNG, WebP, BMP, TIFF or GIF picture"
_PLAIN_ERRORS = (("truncated file read", "the file is cut short (truncated)"),
                 ("decoder", "the picture data is damaged"), ("broken data stream", "the picture data is damaged"))
_OBJECT_REPR = re.compile(r"<[^<>]* at 0x[0-9a-fA-F]+>")


def probe_size(path: Path) -> tuple[int, int]:
    """Upright ``(width, height)``, after checking that the whole file decodes.

    A PNG's chunks are checked to the end (``verify``: a file cut short fails) without inflating the pixels; any
    other format is decoded, a JPEG at 1/8 scale in draft mode (a truncated JPEG passes ``verify`` but fails
    here), so a broken picture is found before any model is loaded rather than when its batch comes up.
    """
    data = read_picture(path)
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            orientation = _header_orientation(image)
            if image.format == "PNG":
                image.verify()
            else:
                if image.format in ("JPEG", "MPO"):
                    image.draft(image.mode, (1, 1))  # the smallest DCT scale: every byte is still decoded
                image.load()
    except Exception as error:  # noqa: BLE001 - decoders raise many types on damaged input (see decode.decode_rgb)
        message = (f"cannot be read as an image ({pillow_error_text(error)}); re-export it as PNG or JPEG, or move it "
                   "out of the folder and delete its row.")
        raise DatasetError([DatasetProblem(str(path), None, message)]) from None
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def pillow_error_text(error: Exception) -> str:
    """Why a picture cannot be decoded, in plain words: never the decoder's internals (the in-memory file object
    ``<_io.BytesIO object at 0x…>`` that Pillow names when no format recognises the data, or its decoder's terms)."""
    if isinstance(error, UnidentifiedImageError):
        return NOT_A_PICTURE
    text = str(error)
    for phrase, plain in _PLAIN_ERRORS:
        if phrase in text.lower():
            return plain
    return _OBJECT_REPR.sub("the file", text) if text else "the picture data is damaged"


def picture_problem(path: Path) -> str | None:
    """Why ``path`` is not a picture LoRA Studio can read, judged from its header alone (cheap), or None.

    It catches a text file named ``x.png``, an empty file, an unknown format and a file that cannot be read; a
    picture whose data is damaged further in is left to the scan, which decodes every picture.
    """
    if not path.is_file():  # a pipe would block the open below
        return "is not a regular file (a folder, device, pipe or broken link); put the picture itself there."
    try:
        if path.stat().st_size == 0:
            return "is an empty file (0 bytes); export the picture again or remove the file."
        with Image.open(path):  # parses the header and identifies the format; no pixel is decoded
            pass
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        if isinstance(error, OSError) and not isinstance(error, UnidentifiedImageError) and error.strerror:
            return f"cannot be read ({error.strerror}); check that you may read it."
        return f"is not a picture LoRA Studio can read ({pillow_error_text(error)}); remove it or export it again."
    return None


def read_picture(path: Path) -> bytes:
    """The bytes of a picture file, or :class:`DatasetError` (missing, unreadable, not a regular file, too large)."""
    try:
        return read_bytes_capped(path, MAX_IMAGE_BYTES, "picture")
    except FileRefused as error:
        raise DatasetError([DatasetProblem(str(path), None, error.reason)]) from None
    except FileNotFoundError:
        raise DatasetError([DatasetProblem(str(path), None, "the image file is missing; put it back or delete its "
                                           "row from metadata.csv.")]) from None
    except OSError as error:
        raise DatasetError([DatasetProblem(str(path), None, f"cannot be read ({error.strerror or error}); check "
                                           "that you may read it.")]) from None


def _header_orientation(image: Image.Image) -> int:
    """EXIF orientation from what ``Image.open`` already parsed (``getexif`` would decode a whole PNG)."""
    try:
        if "exif" in image.info:
            exif = Image.Exif()
            exif.load(image.info["exif"])
            return int(exif.get(_EXIF_ORIENTATION, 1))
        tags = getattr(image, "tag_v2", None)  # TIFF keeps its tags here
        if tags is None or hasattr(image, "_tile_size"):
            return 1  # newer Pillow already reports a TIFF's upright size (raw size in _tile_size) and rotates on load
        return int(tags.get(_EXIF_ORIENTATION, 1))
    except (OSError, SyntaxError, ValueError, TypeError, KeyError):
        return 1  # unreadable EXIF: keep the stored orientation; fit_to_bucket copes with any size


def load_rgb(path: Path) -> Image.Image:
    """The image upright (EXIF) in 8-bit RGB: transparency composited on white, 16-bit/float scaled, CMYK converted."""
    data = read_picture(path)
    try:
        with Image.open(io.BytesIO(data)) as opened:
            opened.seek(0)  # first frame of an animation
            image = ImageOps.exif_transpose(opened)
            image.load()
            return to_rgb(image)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise DatasetError([DatasetProblem(str(path), None, f"cannot be decoded ({pillow_error_text(error)}); "
                                           "re-export it as PNG or JPEG, or move it out of the folder and delete its "
                                           "row.")]) from None


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; raises ValueError for modes Pillow cannot convert."""
    if image.mode.startswith("I") or image.mode == "F":
        image = _high_depth_to_l(image)
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def _high_depth_to_l(image: Image.Image) -> Image.Image:
    """16/32-bit integer or float greyscale to 8-bit ``L`` by scaling its range, not clipping it."""
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        peak = 1.0 if values.max(initial=0.0) <= 1.0 else 255.0
    elif image.mode.startswith("I;16") or values.max(initial=0.0) > 255:
        peak = 65535.0
    else:
        peak = 255.0
    scaled = np.clip(values / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(scaled, mode="L")
