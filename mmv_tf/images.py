"""Still images for deflation and classification: image folders, labelled folders, corpus frames.

Every loader returns float32 `[N, S, S, 3]` in [0, 1] (RGB, shorter side to S, centre crop) and
says what it converted or skipped: grayscale, palette and RGBA images are made RGB (alpha dropped),
unreadable files are skipped and named, a folder without images is an error.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from mmv_tf.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


class ImageFolderError(InputError):
    """An image folder that holds nothing usable."""


@dataclasses.dataclass
class LoadedImages:
    images: np.ndarray  # float32 [N, S, S, 3] in [0, 1]
    paths: list[Path]
    notes: list[str]  # conversions and skipped files, one line each


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def load_images(paths: list[Path], size: int) -> LoadedImages:
    """Load `paths` (any format Pillow reads), skipping and naming the unreadable ones."""
    from PIL import Image, UnidentifiedImageError

    from mmv_tf.data.preprocessing import frames_to_float, resize_and_centre_crop

    images, kept, notes = [], [], []
    converted: dict[str, int] = {}
    for path in paths:
        try:
            with Image.open(path) as image:
                image.load()
                if image.mode != "RGB":
                    converted[image.mode] = converted.get(image.mode, 0) + 1
                images.append(np.asarray(resize_and_centre_crop(
                    frames_to_float(np.asarray(image.convert("RGB"))), size)))
                kept.append(path)
        except (OSError, UnidentifiedImageError, ValueError) as error:
            notes.append(f"skipped {path}: not a readable image ({error})")
    notes += [f"converted {count} {mode} image(s) to RGB" + (" (alpha dropped)" if "A" in mode else "")
              for mode, count in sorted(converted.items())]
    array = np.stack(images) if images else np.zeros((0, size, size, 3), np.float32)
    return LoadedImages(array, kept, notes)


def read_image_folder(folder: str | Path, size: int) -> LoadedImages:
    """Every image directly in `folder`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageFolderError(f"image folder {folder} does not exist")
    loaded = load_images(image_files(folder), size)
    if not len(loaded.images):
        raise ImageFolderError(f"{folder} holds no readable image ({', '.join(IMAGE_SUFFIXES)})"
                               + (f"; {len(loaded.notes)} skipped" if loaded.notes else ""))
    return loaded


def read_labelled_folder(folder: str | Path, size: int) -> tuple[LoadedImages, np.ndarray, list[str]]:
    """(images, labels `[N]` int, class names) of a folder with one sub-folder of images per class."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageFolderError(f"labelled image folder {folder} does not exist")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise ImageFolderError(f"{folder} needs one sub-folder of images per class, at least two; "
                               f"found {len(classes)}")
    parts, labels = [], []
    for label, name in enumerate(classes):
        loaded = load_images(image_files(folder / name), size)
        if len(loaded.images) < 2:
            raise ImageFolderError(f"class folder {folder / name} has {len(loaded.images)} readable "
                                   "image(s); each class needs at least two (one to fit, one to test)")
        parts.append(loaded)
        labels += [label] * len(loaded.images)
    merged = LoadedImages(np.concatenate([p.images for p in parts]),
                          [path for p in parts for path in p.paths], [n for p in parts for n in p.notes])
    return merged, np.asarray(labels), classes


def corpus_frames(corpus: str | Path, size: int, count: int = 2000, split: str = "train",
                  seed: int = 0, per_video: int = 8) -> np.ndarray:
    """`count` frames `[count, size, size, 3]` of the `split` videos of a media corpus (a folder with
    videos or a manifest, as `mmv-tf data ingest` reads): `per_video` from each of randomly chosen
    videos, decoded at 2 fps."""
    from mmv_tf.data.media import decode_video
    from mmv_tf.data.preprocessing import eval_frames
    from mmv_tf.data.sources import list_sources

    sources = list_sources(corpus, split)
    rng = np.random.default_rng(seed)
    frames, total = [], 0
    for index in rng.permutation(len(sources)):
        decoded = decode_video(sources[index].path, 2.0, size)
        picked = rng.choice(len(decoded.jpeg_frames), min(per_video, len(decoded.jpeg_frames)),
                            replace=False)
        frames.append(np.asarray(eval_frames([decoded.jpeg_frames[i] for i in sorted(picked)], size)))
        total += len(frames[-1])
        if total >= count:
            break
    return np.concatenate(frames)[:count]
