"""Pixels: decoding image files, resizing uint8 batches, normalising for the model, the two image sources."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

RESIZE_CHUNK = 512  # images per interpolate call: bounds the temporary memory of a resize
MAX_LISTED = 5  # problem files named in one error message
# What PIL raises for a missing, truncated or corrupt file, or a decompression bomb (after UnidentifiedImageError)
IMAGE_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


class DatasetError(ValueError):
    """A dataset cannot be read or split as asked; the message names the dataset, file, line or option."""


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


def load_image_file(path: str | Path, image_size: int) -> torch.Tensor:
    """Decode one image file (any PIL format; EXIF rotation applied) as RGB and resize it to a square.

    Args:
        path: The image file.
        image_size: The output side in pixels (the backbone's input size).

    Returns:
        uint8 (3, image_size, image_size) on the CPU.

    Raises:
        DatasetError: naming the file when it is missing, not an image, or corrupt.
    """
    try:
        with Image.open(path) as img:
            img.draft("RGB", (image_size, image_size))  # JPEG: decode at a reduced scale when much larger
            pixels = np.array(ImageOps.exif_transpose(img).convert("RGB"))  # (h, w, 3)
    except UnidentifiedImageError:
        raise DatasetError(f"cannot read image {path}: not an image format PIL knows, or corrupt") from None
    except IMAGE_DECODE_ERRORS as exc:
        raise DatasetError(f"cannot read image {path}: {exc}") from None
    chw = torch.from_numpy(pixels).permute(2, 0, 1)  # (h, w, 3) -> (3, h, w)
    return resize_uint8(chw[None], image_size)[0]  # (3, S, S)


def check_image_file(path: str | Path) -> None:
    """Check an image file's header and structure (PIL `verify`) without decoding it; DatasetError if bad."""
    try:
        with Image.open(path) as img:
            img.verify()
    except UnidentifiedImageError:
        raise DatasetError(f"cannot read image {path}: not an image format PIL knows, or corrupt") from None
    except IMAGE_DECODE_ERRORS as exc:
        raise DatasetError(f"cannot read image {path}: {exc}") from None


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
