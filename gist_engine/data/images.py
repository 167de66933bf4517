"""Pixels: the one image decoder (allow-list, pixel cap, EXIF, modes), resizing, normalising, the two sources."""

from __future__ import annotations

import contextlib
import io
import os
import stat
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

RESIZE_CHUNK = 512  # images per interpolate call: bounds the temporary memory of a resize
MAX_LISTED = 5  # problem files named in one error message
MAX_IMAGE_PIXELS = 40_000_000  # width * height of one image, checked from the header before any pixel is decoded
# Pillow format names accepted (JPEG includes a phone camera's MPO, PPM covers .pgm/.pbm/.ppm)
IMAGE_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP", "PPM")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".pbm", ".bmp", ".gif", ".tif", ".tiff", ".webp")
BACKGROUND = (255, 255, 255)  # what transparent pixels are composited over: white
# What PIL raises for a truncated or corrupt file while decoding (after UnidentifiedImageError)
IMAGE_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, Image.DecompressionBombError)

ImageInput = str | os.PathLike | bytes | np.ndarray  # a file, a file's bytes, or decoded RGB/grey uint8 pixels


class DatasetError(ValueError):
    """A dataset cannot be read or split as asked; the message names the dataset, file, line or option."""


class ImageFileError(DatasetError):
    """One image that cannot be used; `problem` says why: missing or unreadable, not a regular file, empty, not an
    image PIL can read, format not allowed, too many pixels, truncated or corrupt, unsupported colour mode."""

    def __init__(self, message: str, problem: str = ""):
        super().__init__(message)
        self.problem = problem

    def __reduce__(self) -> tuple:  # pickled whole (DataLoader workers, process pools): message and problem
        return type(self), (str(self), self.problem)

    @classmethod
    def of(cls, name: str, problem: str, detail: str, todo: str) -> ImageFileError:
        """`cannot read image <name>: <problem> (<detail>) - <what to do>`."""
        return cls(f"cannot read image {name}: {problem}{f' ({detail})' if detail else ''} - {todo}", problem)


def _label(source: str | os.PathLike | bytes, name: str | None) -> str:
    if name:
        return name
    return "(uploaded bytes)" if isinstance(source, (bytes, bytearray, memoryview)) else str(source)


@contextlib.contextmanager
def open_image(source: str | os.PathLike | bytes, max_pixels: int = MAX_IMAGE_PIXELS,
               name: str | None = None) -> Iterator[Image.Image]:
    """Open an image lazily (header only): a regular, non-empty file of an allowed format within the pixel cap.

    Args:
        source: A file path or the file's bytes.
        max_pixels: Largest width * height accepted; checked from the header, before any pixel is decoded.
        name: How the file is named in errors (default: the path, or "(uploaded bytes)").

    Yields:
        The open PIL image, closed on exit.

    Raises:
        ImageFileError: naming the file, the problem and what to do.
    """
    label = _label(source, name)
    if isinstance(source, (bytes, bytearray, memoryview)):
        if not len(source):
            raise ImageFileError.of(label, "empty", "0 bytes", "upload a PNG or JPEG image")
        fp: str | os.PathLike | io.BytesIO = io.BytesIO(bytes(source))
    else:
        try:
            st = os.stat(source)  # follows a link: its target must be a regular file (never a FIFO, device, dir)
        except OSError as exc:
            raise ImageFileError.of(label, "missing or unreadable", exc.strerror or str(exc),
                                    "check the path") from None
        if not stat.S_ISREG(st.st_mode):
            raise ImageFileError.of(label, "not a regular file", "a folder, device, pipe or socket",
                                    "give an image file")
        if st.st_size == 0:
            raise ImageFileError.of(label, "empty", "0 bytes", "replace it with a valid image or remove it")
        fp = source
    try:
        img = Image.open(fp, formats=IMAGE_FORMATS)  # header only (no warnings filter: not thread-safe)
    except UnidentifiedImageError:
        raise _unidentified(fp, label) from None
    except Image.DecompressionBombError as exc:
        raise ImageFileError.of(label, "too many pixels", str(exc),
                                f"downscale it below {max_pixels:,} pixels") from None
    except IMAGE_DECODE_ERRORS as exc:
        raise ImageFileError.of(label, "truncated or corrupt", str(exc), "re-export or re-download it") from None
    try:
        w, h = img.size
        if w * h > max_pixels:
            raise ImageFileError.of(label, "too many pixels", f"{w}x{h} = {w * h:,} pixels exceeds the cap of "
                                    f"{max_pixels:,}", f"downscale it below {max_pixels:,} pixels")
        yield img
    finally:
        img.close()


def _unidentified(fp: str | os.PathLike | io.BytesIO, label: str) -> ImageFileError:
    """The error for a file the allow-list did not open: a known but refused format, or not an image at all."""
    if isinstance(fp, io.BytesIO):
        fp.seek(0)
    try:
        with Image.open(fp) as other:  # header only: names the format to refuse
            fmt = other.format
    except Exception:  # any failure here means "not an image"; the refusal below says so
        fmt = None
    if fmt:
        return ImageFileError.of(label, "format not allowed", f"{fmt}; allowed: {', '.join(IMAGE_FORMATS)}",
                                 "convert it to PNG or JPEG")
    return ImageFileError.of(label, "not an image PIL can read", "",
                             "remove it, or convert it to PNG or JPEG")


def _scaled_to_uint8(img: Image.Image) -> Image.Image:
    """A single-channel high-bit-depth image (I;16*, I, F) as mode L, its value range mapped to 0..255.

    I;16 (16-bit PNG/TIFF/PGM) and I with values in 0..65535: x * 255 / 65535 (8,000 -> 31). Other I: min-max.
    F within 0..1: x * 255; other F: min-max over the finite values (NaN -> 0).
    """
    a = np.asarray(img)
    if img.mode.startswith("I;16") or (img.mode == "I" and a.size and a.min() >= 0 and a.max() <= 65535):
        out = a.astype(np.float64) * (255.0 / 65535.0)
    else:
        a = a.astype(np.float64)
        finite = a[np.isfinite(a)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        if img.mode == "F" and lo >= 0.0 and hi <= 1.0:
            out = a * 255.0
        else:
            out = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
        out[~np.isfinite(out)] = 0
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8), "L")


def _to_rgb(img: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Any PIL mode as RGB: high bit depths scaled to 8 bit, transparency composited over `background`."""
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        img = _scaled_to_uint8(img)
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        rgba = img.convert("RGBA")  # P/L/RGB with a transparent colour (tRNS) get their alpha here
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (*background, 255)), rgba).convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


def decode_image(source: str | os.PathLike | bytes, max_pixels: int = MAX_IMAGE_PIXELS, *,
                 draft_size: int | None = None, background: tuple[int, int, int] = BACKGROUND,
                 name: str | None = None) -> np.ndarray:
    """THE image decoder: a file (or its bytes) as RGB uint8 (H, W, 3), the same for every entry point.

    `open_image`'s checks (regular file, allowed format, pixel cap from the header), then the full decode (the
    first frame of an animation), EXIF orientation applied (`ImageOps.exif_transpose`), and the mode made RGB:
    1/L/P/CMYK/YCbCr converted; transparency (RGBA, LA, PA, a palette's or grey's transparent colour) composited
    over `background` (white); 16-bit and 32-bit greyscale scaled to 8 bit (see `_scaled_to_uint8`).

    Args:
        source: A file path or the file's bytes.
        max_pixels: Largest width * height accepted.
        draft_size: A JPEG much larger than this side is decoded at 1/2, 1/4 or 1/8 scale (never below it): the
            model input side, so every entry point that makes a model input decodes the same pixels.
        background: The colour under transparent pixels.
        name: How the file is named in errors.

    Raises:
        ImageFileError (a DatasetError, so a ValueError): naming the file, the problem and what to do.
    """
    label = _label(source, name)
    with open_image(source, max_pixels, name) as img:
        try:
            if draft_size:
                img.draft("RGB", (draft_size, draft_size))  # JPEG only; a no-op for other formats
            upright = ImageOps.exif_transpose(img)
            return np.array(_to_rgb(upright, background))  # a writable copy (torch.from_numpy shares it)
        except ImageFileError:
            raise
        except IMAGE_DECODE_ERRORS as exc:
            if "conversion" in str(exc) or "mode" in str(exc):
                raise ImageFileError.of(label, "unsupported colour mode", f"{img.mode}: {exc}",
                                        "convert it to an RGB PNG or JPEG") from None
            raise ImageFileError.of(label, "truncated or corrupt", str(exc), "re-export or re-download it") from None


def pixels_to_tensor(image: np.ndarray) -> torch.Tensor:
    """Decoded pixels as uint8 (3, H, W): RGB (H, W, 3), grey (H, W) repeated, RGBA (H, W, 4) over white.

    Raises:
        DatasetError: for another shape or dtype.
    """
    a = np.asarray(image)
    if a.dtype != np.uint8 or not (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] in (3, 4))):
        raise DatasetError(f"image pixels must be uint8 (H, W), (H, W, 3) or (H, W, 4), got {a.dtype} {a.shape}")
    if a.ndim == 3 and a.shape[-1] == 4:
        a = np.asarray(_to_rgb(Image.fromarray(a, "RGBA"), BACKGROUND))
    a = np.ascontiguousarray(a)
    t = torch.from_numpy(a if a.flags.writeable else a.copy())  # torch shares the memory: never a read-only array
    return t.expand(3, *t.shape) if t.ndim == 2 else t.permute(2, 0, 1)  # (H, W) | (H, W, 3) -> (3, H, W)


def resize_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a uint8 batch to a square: bicubic with antialias (PIL's filter), in chunks.

    Args:
        images: uint8 (B, C, h, w) on the CPU.
        size: The output side in pixels.

    Returns:
        uint8 (B, C, size, size); `images` itself when it already has that size.
    """
    if tuple(images.shape[-2:]) == (size, size):
        return images
    out = torch.empty((*images.shape[:2], size, size), dtype=torch.uint8)  # (B, C, S, S)
    for i in range(0, len(images), RESIZE_CHUNK):
        out[i:i + RESIZE_CHUNK] = F.interpolate(images[i:i + RESIZE_CHUNK], size=(size, size), mode="bicubic",
                                                antialias=True)
    return out


def to_model_input(images: torch.Tensor, mean: Sequence[float] | torch.Tensor,
                   std: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """Normalise a uint8 batch for the backbone: `(x / 255 - mean) / std`, on the batch's device.

    Args:
        images: uint8 (B, C, H, W) with C = 1 (greyscale, repeated to 3 channels) or 3.
        mean: The backbone's per-channel mean (3 values, or a (1, 3, 1, 1) tensor on the device).
        std: The backbone's per-channel std (same form as `mean`).

    Returns:
        float32 (B, 3, H, W).
    """
    mean = torch.as_tensor(mean, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    std = torch.as_tensor(std, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    # one fused pass: x * 1/(255 std) - mean/std; a grey (B, 1, H, W) batch broadcasts to (B, 3, H, W)
    return torch.addcmul(-mean / std, images.float(), 1.0 / (255.0 * std))


def load_image_file(source: ImageInput, image_size: int, max_pixels: int = MAX_IMAGE_PIXELS,
                    name: str | None = None) -> torch.Tensor:
    """One image as the model sees it before normalisation: `decode_image`, then the backbone's square resize.

    Every image entry point goes through here: the dataset readers (image folders, uploads, VTAB, torchvision file
    datasets), `predict`, `attention`, Integrated Gradients and GradCAM, the app's uploads, previews and thumbnails.

    Args:
        source: A file path, the file's bytes, or already decoded uint8 pixels (H, W[, 3|4]).
        image_size: The output side in pixels (the backbone's input size).
        max_pixels: Largest width * height of a file accepted.
        name: How the file is named in errors.

    Returns:
        uint8 (3, image_size, image_size) on the CPU (bicubic with antialias, `resize_uint8`).

    Raises:
        DatasetError (ImageFileError for a file): naming the file when it is missing, not an image, corrupt, of a
        format not allowed or over the pixel cap.
    """
    if isinstance(source, np.ndarray):
        chw = pixels_to_tensor(source)
    else:
        chw = torch.from_numpy(decode_image(source, max_pixels, draft_size=image_size, name=name)).permute(2, 0, 1)
    return resize_uint8(chw[None], image_size)[0]  # (3, h, w) -> (3, S, S)


def model_inputs(images: ImageInput | Sequence[ImageInput], data_config: Mapping) -> tuple[torch.Tensor,
                                                                                            torch.Tensor]:
    """Images as a model input batch, exactly as training and evaluation make it.

    Args:
        images: One image or a list: file paths, file bytes or decoded uint8 pixels (see `load_image_file`).
        data_config: The backbone's `model.data_config` ("image_size", "mean", "std").

    Returns:
        (uint8 (B, 3, S, S) the resized images, float32 (B, 3, S, S) the normalised input).

    Raises:
        DatasetError: naming the first file that cannot be used.
    """
    if isinstance(images, (str, os.PathLike, bytes, bytearray, memoryview, np.ndarray)):
        images = [images]
    size = int(data_config["image_size"])
    batch = torch.stack([load_image_file(im, size) for im in images])  # (B, 3, S, S)
    return batch, to_model_input(batch, data_config["mean"], data_config["std"])


def check_image_file(path: str | Path) -> None:
    """Check an image file's header, pixel cap and structure (PIL `verify`) without decoding it; DatasetError if bad."""
    with open_image(path) as img:
        try:
            img.verify()
        except IMAGE_DECODE_ERRORS as exc:
            raise ImageFileError.of(str(path), "truncated or corrupt", str(exc),
                                    "re-export or re-download it") from None


class UnreadableImagesError(DatasetError):
    """Image files that cannot be decoded; `errors` holds (path, message) of each, `total` the files tried."""

    def __init__(self, message: str, errors: Sequence[tuple[Path, str]] = (), total: int = 0):
        super().__init__(message)
        self.errors, self.total = list(errors), total

    @classmethod
    def of(cls, errors: Sequence[tuple[Path, str]], total: int) -> UnreadableImagesError:
        """The error listing the first MAX_LISTED bad files and how many there are."""
        errors = sorted(errors)
        listed = "; ".join(msg for _, msg in errors[:MAX_LISTED])
        more = f" (first {MAX_LISTED} listed)" if len(errors) > MAX_LISTED else ""
        return cls(f"{len(errors)} of {total} image files cannot be read{more} - remove or replace them: "
                   f"{listed}", errors, total)


def _each_file(paths: list[Path], fn: Callable[[int, Path], None], threads: int) -> None:
    """Run `fn(i, path)` on every file (threaded: PIL releases the GIL); then report all bad files at once."""
    errors: list[tuple[Path, str]] = []

    def run(item: tuple[int, Path]) -> None:
        try:
            fn(*item)
        except DatasetError as exc:
            errors.append((item[1], str(exc)))

    if threads > 1 and len(paths) > 1:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(run, enumerate(paths)))
    else:
        for item in enumerate(paths):
            run(item)
    if errors:
        raise UnreadableImagesError.of(errors, len(paths))


def default_threads() -> int:
    """Decoding threads for a whole-dataset load: the CPU count (at most 8)."""
    return max(1, min(8, os.cpu_count() or 1))


class ArraySource:
    """Images held in memory as one uint8 array at their native size (N, C, h, w), C = 1 or 3."""

    def __init__(self, images: np.ndarray):
        """Wrap uint8 images (N, h, w) (greyscale) or (N, C, h, w)."""
        if images.ndim == 3:
            images = images[:, None]  # (N, h, w) -> (N, 1, h, w)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
            raise DatasetError(f"image array must be uint8 (N, 1|3, h, w), got {images.dtype} {images.shape}")
        self.images = images

    @property
    def channels(self) -> int:
        """Stored channels: 1 (greyscale, repeated to 3 at batch time) or 3."""
        return int(self.images.shape[1])

    def __len__(self) -> int:
        return len(self.images)

    def stream_workers(self) -> int:
        """DataLoader workers when streamed: none, resizing an array batch is quick in-process."""
        return 0

    def fetch(self, index: np.ndarray, size: int, threads: int = 1) -> torch.Tensor:
        """uint8 (k, C, size, size) of the images at `index` (positions in this source)."""
        batch = torch.from_numpy(np.ascontiguousarray(self.images[index]))  # (k, C, h, w)
        return resize_uint8(batch, size)

    def check(self, index: np.ndarray, threads: int = 1) -> None:
        """Nothing to check: the pixels are already decoded."""


class FileSource:
    """Images as files on disk, decoded with PIL on fetch."""

    channels = 3

    def __init__(self, paths: Sequence[str | Path]):
        """Wrap a list of image file paths."""
        self.paths = [Path(p) for p in paths]

    def __len__(self) -> int:
        return len(self.paths)

    def stream_workers(self) -> int:
        """DataLoader workers when streamed: decoding is the slow part, so all but one core (at most 4)."""
        return min(4, max(1, (os.cpu_count() or 1) - 1))

    def fetch(self, index: np.ndarray, size: int, threads: int = 1) -> torch.Tensor:
        """uint8 (k, 3, size, size) of the files at `index`; DatasetError naming every unreadable one."""
        out = torch.empty((len(index), 3, size, size), dtype=torch.uint8)  # (k, 3, S, S)

        def put(i: int, path: Path) -> None:
            out[i] = load_image_file(path, size)

        _each_file([self.paths[i] for i in index], put, threads)
        return out

    def check(self, index: np.ndarray, threads: int = 1) -> None:
        """Verify the files at `index` without decoding them (streamed data); DatasetError if any is bad."""
        _each_file([self.paths[i] for i in index], lambda i, p: check_image_file(p), threads)
