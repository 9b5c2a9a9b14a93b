"""Real radiographs in: safe readers for DICOM / PNG / JPEG / TIFF / MetaImage / NRRD, joint ROI crops, PNG writer.

Everything lsn_fast processes is an *attenuation image* ``y = −log(q/N0)`` (DESIGN.md §2): about
0 in air, larger through tissue, bone bright. Files on disk are rarely that, so
:func:`read_radiograph` converts them, and records what it did in ``Radiograph.source``.

Conversions (``kind``)
----------------------
Let ``v`` be the stored pixel values after the DICOM modality transform
(``v = stored · RescaleSlope + RescaleIntercept``; PNG/TIFF: the stored values).

``"raw"`` — *for processing* images (DICOM ``PresentationIntentType == "FOR PROCESSING"``, or the
    caller says so). Values are taken as proportional to detector counts ``q``. The unattenuated
    (air) level is a high percentile, ``p_air = P99.5(v)`` (:data:`AIR_PERCENTILE`), and::

        y = −log(max(v, ε) / p_air),   clamped to y ≥ 0,

    with ``ε = 1`` (one count) for integer data and ``ε = p_air · 2⁻¹⁶`` for float data. The
    photometric interpretation is only recorded (raw values are counts whatever the display).

``"presentation"`` — *for presentation* images (DICOM ``FOR PRESENTATION`` or no intent, and the
    default for integer PNG/TIFF). These are already log-like and, in MONOCHROME2, displayed with
    bone bright. MONOCHROME1 (minimum = white) is inverted first (``v → −v``). Then a linear
    normalization puts air at 0 and the bright end at a nominal attenuation::

        y = NOMINAL_ATTENUATION · (v − P0.5(v)) / (P99.5(v) − P0.5(v)),   clamped to y ≥ 0,

    :data:`NOMINAL_ATTENUATION` ``= 1.0``: the line integral through a finger's bony part at
    ~50 keV, soft tissue ≈ 0.22 /cm × ~1.5 cm plus the cortical-bone excess ≈ 0.7 /cm × ~1 cm
    (NIST XCOM / ICRU-44). The absolute scale of a presentation image is unknowable (the
    vendor's processing is not invertible), only its shape and a plausible range.

``"presentation-anchored"`` — for presentation images, three anchors instead of two: the
    background's grey level -> 0, the soft tissue's median -> 0.21 and the bone's median -> 0.45
    (the phantoms' levels), with a power law between them that undoes a gamma-like display curve
    to first order (:mod:`lsn_fast.io.presentation`, which documents what it does and does not
    undo). Measured on the dev images in ``lab/2026-12-07-real-front-end/``.

``"attenuation"`` — values are taken as they are (the default for floating-point TIFF, e.g. what
    an earlier lsn_fast run wrote). NaN/Inf are rejected; negative values are kept with a warning.

``"auto"`` — DICOM: ``raw`` for FOR PROCESSING, else ``presentation``; PNG, JPEG and integer
    TIFF / MetaImage / NRRD: ``presentation``; float TIFF / MetaImage / NRRD: ``attenuation``.

Pixel spacing
-------------
DICOM: ``PixelSpacing`` (0028,0030) if present (calibrated to the patient plane when the vendor
fills it), else ``ImagerPixelSpacing`` (0018,1164), which is measured at the detector front plate
(so it includes the geometric magnification, ~1.0–1.1 for a hand lying on the detector); a
:class:`RadiographWarning` says which one was used. Anisotropic spacing is averaged (with a
warning). MetaImage: ``ElementSpacing`` (or ``ElementSize``); NRRD: ``spacings`` or the norms of
``space directions``. Every header spacing must be finite and in [0.005, 5] mm
(:func:`lsn_fast.io.formats.check_spacing`): DICOM values outside are ignored with a warning
(``PixelSpacing = 1e308`` is not a spacing), MetaImage/NRRD files with one are refused.
PNG/JPEG/TIFF carry no trustworthy spacing: it must come from the caller (``spacing_mm``),
else ``Radiograph.spacing_mm`` is ``None`` and a warning is issued. A caller's ``spacing_mm``
always wins over the file's.

Hostile input
-------------
The file is opened once, without blocking, and only if it is a regular file (a FIFO, socket or
device is refused after ``fstat`` of the open descriptor, so nothing can block or race); its
bytes, bounded in size, are what every parser reads. Files are identified by their magic bytes
(``DICM`` at offset 128, the PNG, TIFF, JPEG and NRRD signatures, a MetaImage header), not by
their names. A ``.dcm`` file without the ``DICM`` preamble is handed to
pydicom with ``force=False``, which refuses it (deliberately: ``force=True`` parses anything).
Declared sizes (DICOM Rows×Columns×Frames, PNG IHDR, TIFF first-page shape) are checked against
``max_pixels`` *before* any decoding; native DICOM pixel data shorter than
Rows×Columns×Samples×BitsAllocated/8 is rejected; a PNG's zlib stream must inflate to exactly the
bytes its IHDR rows need (a complete stream holding 10 of 400 rows is refused), TIFF strips must
lie inside the file, MetaImage/NRRD data (raw or zlib/gzip, inflated with a bound) must hold the
declared size, a truncated JPEG fails; zero-sized, constant, NaN/Inf images are
rejected. Every parser exception (pydicom, Pillow, tifffile, struct, zlib, ...) is re-raised as
:class:`RadiographError` (a ``ValueError``) naming the file; only that, ``FileNotFoundError``,
``IsADirectoryError``, ``TypeError``/``ValueError`` for bad arguments can escape.

ROI crops
---------
:func:`crop_roi` resamples a joint ROI (rotated so the finger is vertical, at the network's
spacing) and returns a :class:`RoiCrop` that maps points both ways (``to_full`` / ``from_full``,
edge coordinates) and pastes crop-domain layers back onto the full grid (``paste_back``).
"""

from __future__ import annotations

import io as _io
import math
import os
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lsn_fast.io.formats import check_png_stream, check_spacing, read_metaimage, read_nrrd, read_regular_file
from lsn_fast.io.presentation import presentation_to_attenuation
from lsn_fast.utils.files import atomic_write

__all__ = [
    "AIR_PERCENTILE",
    "NOMINAL_ATTENUATION",
    "Radiograph",
    "RadiographError",
    "RadiographWarning",
    "RoiCrop",
    "crop_roi",
    "read_radiograph",
    "write_png",
]

#: Percentile taken as the unattenuated (air) level of raw images, and as the bright reference
#: of presentation images.
AIR_PERCENTILE = 99.5
#: Percentile taken as the air level (dark end) of presentation images.
LOW_PERCENTILE = 0.5
#: Attenuation assigned to the P99.5 level of a presentation image (see the module docstring).
NOMINAL_ATTENUATION = 1.0

_KINDS = ("auto", "raw", "presentation", "presentation-anchored", "attenuation")
_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_MAX_PERCENTILE_SAMPLES = 4_000_000


class RadiographError(ValueError):
    """A radiograph file is unreadable, unsupported, truncated or hostile."""


class RadiographWarning(UserWarning):
    """Something about a radiograph the caller should know (spacing source, dropped channels)."""


@dataclass
class Radiograph:
    """A radiograph converted to the attenuation domain.

    Attributes:
        image: (H, W) float32 tensor, attenuation (≈0 in air, bone bright), finite.
        spacing_mm: pixel spacing in mm, or ``None`` when unknown.
        source: metadata: ``format``, ``path``, ``kind`` (the conversion applied), ``conversion``
            (a formula with its numbers), ``modality``, ``photometric``, ``bits_allocated``,
            ``bits_stored``, ``transfer_syntax``, ``presentation_intent``, ``spacing_source``, ...
    """

    image: torch.Tensor
    spacing_mm: float | None
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.image.shape)  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------


def _fail(path, what: str) -> RadiographError:
    return RadiographError(f"{os.fspath(path)}: {what}")


def _one_line(e: BaseException) -> str:
    msg = " ".join(str(e).split())
    if len(msg) > 300:
        msg = msg[:300] + "..."
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


def _check_args(path, spacing_mm, kind, max_pixels):
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected str or os.PathLike, got {type(path).__name__}")
    path = Path(path)
    if spacing_mm is not None:
        if isinstance(spacing_mm, bool) or not isinstance(spacing_mm, (int, float, np.floating, np.integer)):
            raise TypeError(f"spacing_mm: expected a float or None, got {type(spacing_mm).__name__}")
        spacing_mm = float(spacing_mm)
        if not (math.isfinite(spacing_mm) and spacing_mm > 0):
            raise ValueError(f"spacing_mm: must be a positive finite number, got {spacing_mm}")
    if not isinstance(kind, str):
        raise TypeError(f"kind: expected a str, got {type(kind).__name__}")
    if kind not in _KINDS:
        raise ValueError(f"kind: expected one of {_KINDS}, got {kind!r}")
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)):
        raise TypeError(f"max_pixels: expected an int, got {type(max_pixels).__name__}")
    if max_pixels <= 0:
        raise ValueError(f"max_pixels: must be positive, got {max_pixels}")
    return path, spacing_mm, int(max_pixels)


def read_radiograph(path, *, spacing_mm=None, kind: str = "auto", max_pixels: int = 64_000_000) -> Radiograph:
    """Read a DICOM, PNG or TIFF radiograph and convert it to the attenuation domain.

    Args:
        path: file path (str or os.PathLike).
        spacing_mm: pixel spacing in mm; overrides the file's. Required for PNG/TIFF to get a
            spacing at all.
        kind: ``"auto"``, ``"raw"``, ``"presentation"`` or ``"attenuation"`` (module docstring).
        max_pixels: refuse images whose declared size exceeds this, before decoding.
    Returns:
        :class:`Radiograph` with a finite (H, W) float32 image.
    Raises:
        RadiographError: unreadable, unsupported, truncated, oversized or inconsistent file.
        FileNotFoundError / IsADirectoryError: ``path`` is missing / a directory.
        TypeError / ValueError: bad arguments.
    """
    path, spacing_mm, max_pixels = _check_args(path, spacing_mm, kind, max_pixels)
    # one open, of a regular file only (a FIFO or a device would block or never end), bounded
    # in size; every parser then reads these bytes, never the path again
    try:
        data = read_regular_file(path, max_pixels * 8 + (64 << 20))
    except (FileNotFoundError, IsADirectoryError):
        raise
    except (OSError, ValueError) as e:
        raise _fail(path, str(e)) from e
    if len(data) == 0:
        raise _fail(path, "empty file")
    head = data[:132]

    if len(head) >= 132 and head[128:132] == b"DICM":
        fmt = "dicom"
    elif head.startswith(_PNG_MAGIC):
        fmt = "png"
    elif head[:4] in _TIFF_MAGICS:
        fmt = "tiff"
    elif head[:3] == _JPEG_MAGIC:
        fmt = "jpeg"
    elif head.startswith(b"NRRD000"):
        fmt = "nrrd"
    elif _looks_like_metaimage(data):
        fmt = "metaimage"
    elif path.suffix.lower() in (".dcm", ".dicom"):
        fmt = "dicom"  # pydicom with force=False decides (and refuses a missing preamble)
    else:
        raise _fail(path, "unrecognised format: no DICOM 'DICM' magic at offset 128, PNG, TIFF, JPEG, NRRD "
                          "signature or MetaImage header")

    reader = {"dicom": _read_dicom, "png": _read_png, "tiff": _read_tiff, "jpeg": _read_jpeg,
              "nrrd": _read_nrrd, "metaimage": _read_metaimage}[fmt]
    try:
        arr, meta = reader(path, data, max_pixels)
        meta["format"] = fmt
        meta["path"] = os.fspath(path)
        return _finish(path, arr, meta, spacing_mm, kind)
    except RadiographError:
        raise
    except Exception as e:  # any parser/decoder internals: never let them escape as-is
        raise _fail(path, f"cannot decode {fmt}: {_one_line(e)}") from e


def _looks_like_metaimage(data: bytes) -> bool:
    head = data[:4096]
    first = head.split(b"\n", 1)[0].strip()
    return b"ElementDataFile" in data[:65536] and (first.startswith(b"ObjectType") or first.startswith(b"NDims")
                                                   or first.startswith(b"Comment"))


def _check_dims(path, rows, cols, max_pixels, what="image", extra=1):
    rows, cols = int(rows), int(cols)
    if rows <= 0 or cols <= 0:
        raise _fail(path, f"zero-sized {what} ({rows}x{cols})")
    n = rows * cols * max(1, int(extra))
    if n > max_pixels:
        raise _fail(path, f"declared {what} size {rows}x{cols}" + (f"x{extra}" if extra > 1 else "")
                    + f" = {n} pixels exceeds max_pixels={max_pixels}")
    return rows, cols


# --- DICOM -----------------------------------------------------------------------------------


def _dicom_str(ds, keyword, default=None):
    v = ds.get(keyword, default)
    if v is None:
        return default
    return str(v).strip()


def _dicom_int(path, ds, keyword, default=None):
    v = ds.get(keyword, default)
    if v is None:
        if default is None:
            raise _fail(path, f"DICOM attribute {keyword} is missing")
        return default
    try:
        return int(v)
    except (TypeError, ValueError) as e:
        raise _fail(path, f"DICOM attribute {keyword} is not an integer ({v!r})") from e


def _read_dicom(path, data, max_pixels):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(_io.BytesIO(data), force=False)
    except InvalidDicomError as e:
        raise _fail(path, f"not a DICOM file ({_one_line(e)})") from e

    meta: dict[str, Any] = {}
    fm = getattr(ds, "file_meta", None)
    tsuid = fm.get("TransferSyntaxUID", None) if fm is not None else None
    if tsuid is None:
        raise _fail(path, "DICOM file meta has no TransferSyntaxUID")
    tsuid = pydicom.uid.UID(str(tsuid).strip())
    meta["transfer_syntax"] = f"{tsuid} ({tsuid.name})" if tsuid.is_valid else str(tsuid)
    meta["modality"] = _dicom_str(ds, "Modality")
    meta["presentation_intent"] = _dicom_str(ds, "PresentationIntentType")
    photometric = _dicom_str(ds, "PhotometricInterpretation")
    meta["photometric"] = photometric

    if "PixelData" not in ds:
        if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
            raise _fail(path, "float pixel data in DICOM is not supported")
        raise _fail(path, "DICOM has no PixelData")
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise _fail(path, f"PhotometricInterpretation {photometric!r} is not a grayscale radiograph "
                          "(expected MONOCHROME1 or MONOCHROME2)")
    rows = _dicom_int(path, ds, "Rows")
    cols = _dicom_int(path, ds, "Columns")
    spp = _dicom_int(path, ds, "SamplesPerPixel", 1)
    frames = _dicom_int(path, ds, "NumberOfFrames", 1)
    ba = _dicom_int(path, ds, "BitsAllocated")
    bs = _dicom_int(path, ds, "BitsStored", ba)
    pr = _dicom_int(path, ds, "PixelRepresentation", 0)
    meta.update(bits=bs, bits_allocated=ba, bits_stored=bs, pixel_representation=pr, rows=rows, columns=cols)
    _check_dims(path, rows, cols, max_pixels, "DICOM image", extra=max(frames, 1) * max(spp, 1))
    if spp != 1:
        raise _fail(path, f"SamplesPerPixel={spp}: only single-sample grayscale images are supported")
    if frames != 1:
        raise _fail(path, f"NumberOfFrames={frames}: only single-frame radiographs are supported")
    if ba not in (8, 16, 32):
        raise _fail(path, f"BitsAllocated={ba} is not supported (expected 8, 16 or 32)")
    if not (1 <= bs <= ba):
        raise _fail(path, f"BitsStored={bs} is inconsistent with BitsAllocated={ba}")
    if pr not in (0, 1):
        raise _fail(path, f"PixelRepresentation={pr} is invalid (expected 0 or 1)")

    from pydicom.pixels import get_decoder

    compressed = bool(tsuid.is_compressed) if tsuid.is_valid and tsuid.is_transfer_syntax else None
    if compressed is None:
        raise _fail(path, f"unknown transfer syntax {tsuid}")
    if not compressed:
        expected = rows * cols * spp * frames * ba // 8
        got = len(ds.PixelData)
        if got < expected:
            raise _fail(path, f"pixel data is {got} bytes, shorter than Rows x Columns x Samples x "
                              f"BitsAllocated/8 = {rows}x{cols}x{spp}x{ba}/8 = {expected} bytes")
    else:
        try:
            decoder = get_decoder(tsuid)
        except NotImplementedError as e:
            raise _fail(path, f"no pixel data decoder exists for transfer syntax {tsuid.name}") from e
        if not decoder.is_available:
            missing = "; ".join(f"{k}: {v}" for k, v in decoder.missing_dependencies.items()) \
                if isinstance(decoder.missing_dependencies, dict) else str(decoder.missing_dependencies)
            raise _fail(path, f"transfer syntax {tsuid.name} needs a decoder plugin that is not installed "
                              f"({missing})")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arr = ds.pixel_array
    arr = np.asarray(arr)
    if arr.shape != (rows, cols):
        raise _fail(path, f"decoded pixel array has shape {arr.shape}, expected ({rows}, {cols})")
    if arr.dtype.kind not in "ui":
        raise _fail(path, f"unexpected decoded dtype {arr.dtype}")
    if pr == 0 and bs < arr.dtype.itemsize * 8:
        arr = arr & np.asarray((1 << bs) - 1, dtype=arr.dtype)
    meta["integer"] = True

    # padding pixels (outside the exposed area) -> excluded, later set to air
    pad = ds.get("PixelPaddingValue", None)
    pad_mask = None
    if pad is not None:
        try:
            pad_mask = arr == int(pad)
            meta["pixel_padding_value"] = int(pad)
        except (TypeError, ValueError):
            pad_mask = None

    if "ModalityLUTSequence" in ds:
        from pydicom.pixels import apply_modality_lut

        v = np.asarray(apply_modality_lut(arr, ds), dtype=np.float64).astype(np.float32)
        meta["modality_lut"] = "ModalityLUTSequence"
    else:
        slope = ds.get("RescaleSlope", None)
        intercept = ds.get("RescaleIntercept", None)
        slope = 1.0 if slope is None else float(slope)
        intercept = 0.0 if intercept is None else float(intercept)
        if not (math.isfinite(slope) and math.isfinite(intercept)) or slope == 0:
            raise _fail(path, f"invalid RescaleSlope/RescaleIntercept ({slope}, {intercept})")
        meta["rescale_slope"], meta["rescale_intercept"] = slope, intercept
        v = arr.astype(np.float32)
        if slope != 1.0 or intercept != 0.0:
            v = (arr.astype(np.float64) * slope + intercept).astype(np.float32)
    if pad_mask is not None and pad_mask.any():
        meta["padding_mask"] = pad_mask

    # spacing
    meta["file_spacing_mm"], meta["spacing_source"] = None, None
    for key in ("PixelSpacing", "ImagerPixelSpacing"):
        try:
            val = ds.get(key, None)
            if val is None:
                continue
            seq = [val] if isinstance(val, (str, bytes)) or not hasattr(val, "__len__") else list(val)
            vals = [float(x) for x in seq]
        except Exception:  # noqa: BLE001 - malformed optional metadata: ignore it, loudly
            val = "<unparseable>"
            warnings.warn(f"{path}: {key} {val!r} is not numeric; ignored", RadiographWarning, stacklevel=4)
            continue
        try:
            dy, dx = check_spacing(vals, key)
        except ValueError as e:  # not finite, <= 0, or absurd (1e308): not a spacing
            warnings.warn(f"{path}: {e}; ignored", RadiographWarning, stacklevel=4)
            continue
        meta["spacing_yx_mm"] = (dy, dx)
        if abs(dy - dx) > 0.01 * max(dy, dx):
            warnings.warn(f"{path}: anisotropic {key} (row {dy} mm, column {dx} mm); using the mean",
                          RadiographWarning, stacklevel=4)
        meta["file_spacing_mm"] = 0.5 * (dy + dx)
        meta["spacing_source"] = key
        if key == "ImagerPixelSpacing":
            mag = ds.get("EstimatedRadiographicMagnificationFactor", None)
            note = ""
            if mag is not None:
                try:
                    meta["estimated_magnification"] = float(mag)
                    note = f" (EstimatedRadiographicMagnificationFactor {float(mag)} not applied)"
                except (TypeError, ValueError):
                    pass
            meta["spacing_note"] = "ImagerPixelSpacing is at the detector plane" + note
            warnings.warn(f"{path}: no PixelSpacing; using ImagerPixelSpacing {meta['file_spacing_mm']} mm, "
                          f"measured at the detector plane (includes geometric magnification){note}",
                          RadiographWarning, stacklevel=4)
        break
    return v, meta


# --- PNG -------------------------------------------------------------------------------------


def _gray_from_channels(path, arr, channel_axis, meta):
    """Colour image: accept only if all colour channels are equal (a gray image stored as RGB)."""
    arr = np.moveaxis(arr, channel_axis, -1)
    n = arr.shape[-1]
    color = arr[..., : min(n, 3)] if n >= 3 else arr[..., :1]
    if n >= 3 and not (np.array_equal(color[..., 0], color[..., 1]) and np.array_equal(color[..., 0], color[..., 2])):
        raise _fail(path, f"colour image ({n} channels with different values): a radiograph must be grayscale")
    dropped = "alpha" if n in (2, 4) else None
    meta["conversion_note"] = f"{n}-channel image with equal colour channels: took the first channel" + (
        ", dropped alpha" if dropped else "")
    warnings.warn(f"{path}: {meta['conversion_note']}", RadiographWarning, stacklevel=5)
    return np.ascontiguousarray(color[..., 0])


def _read_png(path, data, max_pixels):
    from PIL import Image

    hdr = data[:33]
    # signature (8) + chunk length (4) + b"IHDR" + width, height (4+4) + depth, colour type, ...
    if len(hdr) < 33 or hdr[12:16] != b"IHDR":
        raise _fail(path, "truncated PNG header (no IHDR chunk)")
    width, height, depth, ctype = struct.unpack(">IIBB", hdr[16:26])
    _check_dims(path, height, width, max_pixels, "PNG image")
    try:  # every declared row must be in the (complete) zlib stream: Pillow fills missing rows with 0
        check_png_stream(data)
    except ValueError as e:
        raise _fail(path, str(e)) from e
    meta: dict[str, Any] = {"bits": int(depth), "png_color_type": int(ctype), "photometric": "MONOCHROME2"}
    with warnings.catch_warnings():
        # our own max_pixels check already ran on the header; Pillow's bomb *warning* is noise here
        # (Pillow's DecompressionBombError above 2×MAX_IMAGE_PIXELS still applies and is wrapped).
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(_io.BytesIO(data), formats=["PNG"]) as im:
            if im.size != (width, height):
                raise _fail(path, f"PNG size {im.size} disagrees with its IHDR ({width}, {height})")
            im.load()
            mode = im.mode
            if mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            elif mode == "1":
                im = im.convert("L")
            arr = np.array(im)
    meta["mode"] = mode
    if arr.ndim == 3:
        arr = _gray_from_channels(path, arr, -1, meta)
    if arr.ndim != 2 or arr.shape != (height, width):
        raise _fail(path, f"decoded PNG has shape {arr.shape}, expected ({height}, {width})")
    if arr.dtype.kind not in "ui":
        raise _fail(path, f"unexpected decoded PNG dtype {arr.dtype}")
    meta["integer"] = True
    return arr.astype(np.float32), meta


# --- TIFF ------------------------------------------------------------------------------------


def _read_tiff(path, data, max_pixels):
    import tifffile

    meta: dict[str, Any] = {"photometric": "MONOCHROME2"}
    with tifffile.TiffFile(_io.BytesIO(data)) as tif:
        pages = tif.pages
        if len(pages) == 0:
            raise _fail(path, "TIFF has no pages")
        page = pages.first if hasattr(pages, "first") else pages[0]
        shape, axes = tuple(int(s) for s in page.shape), str(page.axes)
        if len(shape) == 0 or 0 in shape:
            raise _fail(path, f"zero-sized TIFF image (shape {shape})")
        if "Y" not in axes or "X" not in axes:
            raise _fail(path, f"TIFF page has axes {axes!r}, expected an image with Y and X")
        h, w = shape[axes.index("Y")], shape[axes.index("X")]
        _check_dims(path, h, w, max_pixels, "TIFF image", extra=int(np.prod(shape)) // max(h * w, 1))
        if len(pages) > 1:
            meta["pages"] = len(pages)
            meta["conversion_note"] = f"multi-page TIFF ({len(pages)} pages): read the first page"
        try:
            pm = page.photometric
            meta["tiff_photometric"] = getattr(pm, "name", str(pm))
        except Exception:  # noqa: BLE001 - metadata only
            pass
        counts = getattr(page, "databytecounts", None)
        offsets = getattr(page, "dataoffsets", None)
        if counts is not None and offsets is not None:
            if any(o + c > len(data) for o, c in zip(offsets, counts)):
                raise _fail(path, "truncated TIFF: image data extends beyond the end of the file")
            if not page.is_tiled and page.compression == 1 and sum(counts) < int(np.prod(shape)) * page.dtype.itemsize:
                raise _fail(path, f"truncated TIFF: uncompressed strips hold {sum(counts)} bytes, the page needs "
                                  f"{int(np.prod(shape)) * page.dtype.itemsize}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = np.asarray(page.asarray())
    if arr.shape != shape:
        raise _fail(path, f"decoded TIFF has shape {arr.shape}, expected {shape}")
    if arr.dtype.kind not in "uif":
        raise _fail(path, f"unsupported TIFF sample type {arr.dtype}")
    meta["bits"] = arr.dtype.itemsize * 8
    meta["dtype"] = str(arr.dtype)
    extra = [i for i, a in enumerate(axes) if a not in "YX"]
    if extra:
        if len(extra) > 1 or axes[extra[0]] != "S":
            raise _fail(path, f"TIFF page has axes {axes!r}; only YX or YX with samples is supported")
        arr = _gray_from_channels(path, arr, extra[0], meta)
    if meta.get("tiff_photometric") == "MINISWHITE":
        meta["photometric"] = "MONOCHROME1"
    meta["integer"] = arr.dtype.kind in "ui"
    if arr.dtype.kind == "f":
        with np.errstate(over="ignore", invalid="ignore"):
            arr = arr.astype(np.float32)
        if not np.isfinite(arr).all():
            raise _fail(path, "float TIFF contains NaN or Inf (or values beyond float32)")
        return arr, meta
    return arr.astype(np.float32), meta


# --- JPEG ------------------------------------------------------------------------------------


def _read_jpeg(path, data, max_pixels):
    from PIL import Image, ImageFile

    meta: dict[str, Any] = {"photometric": "MONOCHROME2"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(_io.BytesIO(data), formats=["JPEG"]) as im:
            width, height = im.size
            _check_dims(path, height, width, max_pixels, "JPEG image")
            old = ImageFile.LOAD_TRUNCATED_IMAGES
            ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated JPEG must fail, not load grey
            try:
                im.load()
            finally:
                ImageFile.LOAD_TRUNCATED_IMAGES = old
            mode = im.mode
            if mode in ("RGB", "YCbCr", "CMYK"):
                rgb = np.asarray(im.convert("RGB")).astype(np.int16)
                spread = int(np.abs(rgb - rgb[..., :1]).max())
                if spread > 8:  # JPEG chroma rounding moves gray pixels by a few levels, no more
                    raise _fail(path, f"colour JPEG (channels differ by up to {spread} levels): a radiograph must "
                                      "be grayscale")
                meta["conversion_note"] = f"{mode} JPEG with gray content: took the luminance"
                arr = np.asarray(im.convert("L"))
            elif mode in ("L", "I;16", "I"):
                arr = np.asarray(im)
            else:
                raise _fail(path, f"JPEG mode {mode} is not a grayscale radiograph")
    meta.update(mode=mode, bits=8 if arr.dtype == np.uint8 else 16, integer=True)
    return arr.astype(np.float32), meta


# --- MetaImage / NRRD ------------------------------------------------------------------------


def _with_spacing(path, arr, meta):
    sp = meta.pop("file_spacing_yx_mm", None)
    meta.setdefault("file_spacing_mm", None)
    if sp is not None:
        dy, dx = sp
        meta["spacing_yx_mm"] = (dy, dx)
        if abs(dy - dx) > 0.01 * max(dy, dx):
            warnings.warn(f"{path}: anisotropic spacing (row {dy} mm, column {dx} mm); using the mean",
                          RadiographWarning, stacklevel=5)
        meta["file_spacing_mm"] = 0.5 * (dy + dx)
    if arr.dtype.kind == "f":
        with np.errstate(over="ignore", invalid="ignore"):
            out = arr.astype(np.float32)
        if not np.isfinite(out).all():
            raise _fail(path, f"{meta.get('format', 'image')} float data contains NaN or Inf")
        return out, meta
    return arr.astype(np.float32), meta


def _read_metaimage(path, data, max_pixels):
    try:
        arr, meta = read_metaimage(data, path, max_pixels, max_pixels * 8 + (64 << 20))
    except ValueError as e:
        raise _fail(path, str(e)) from e
    meta["photometric"] = "MONOCHROME2"
    return _with_spacing(path, arr, meta)


def _read_nrrd(path, data, max_pixels):
    try:
        arr, meta = read_nrrd(data, path, max_pixels, max_pixels * 8 + (64 << 20))
    except ValueError as e:
        raise _fail(path, str(e)) from e
    meta["photometric"] = "MONOCHROME2"
    return _with_spacing(path, arr, meta)


# --- conversion to attenuation ---------------------------------------------------------------


def _percentiles(v: np.ndarray, qs, mask=None):
    flat = v.reshape(-1)
    if mask is not None:
        flat = flat[~mask.reshape(-1)]
    if flat.size == 0:
        return [float("nan")] * len(qs)
    if flat.size > _MAX_PERCENTILE_SAMPLES:
        step = -(-flat.size // _MAX_PERCENTILE_SAMPLES)
        flat = flat[::step]
    return [float(x) for x in np.percentile(flat, qs)]


def _finish(path, v: np.ndarray, meta: dict, spacing_mm, kind) -> Radiograph:
    if v.ndim != 2 or 0 in v.shape:
        raise _fail(path, f"zero-sized or non-2-D image (shape {v.shape})")
    if not np.isfinite(v).all():
        raise _fail(path, "image contains NaN or Inf")
    pad_mask = meta.pop("padding_mask", None)
    fmt = meta["format"]
    if kind == "auto":
        if fmt == "dicom":
            kind = "raw" if (meta.get("presentation_intent") or "").upper() == "FOR PROCESSING" else "presentation"
        elif fmt in ("tiff", "metaimage", "nrrd") and not meta.get("integer", True):
            kind = "attenuation"
        else:
            kind = "presentation"
    meta["kind"] = kind

    if kind == "raw":
        (p_air,) = _percentiles(v, [AIR_PERCENTILE], pad_mask)
        eps = 1.0 if meta.get("integer", True) else p_air * 2.0**-16
        if not (math.isfinite(p_air) and p_air > eps and p_air > 0):
            raise _fail(path, f"raw image has no usable unattenuated (air) level (P{AIR_PERCENTILE} = {p_air})")
        y = -np.log(np.maximum(v, eps) / np.float32(p_air))
        y = np.maximum(y, 0.0, dtype=np.float32)
        meta["air_level"] = p_air
        meta["conversion"] = (f"raw: y = -log(max(v, {eps:g}) / p_air), p_air = P{AIR_PERCENTILE}(v) = {p_air:g}, "
                              "clamped at 0")
    elif kind == "presentation":
        inverted = meta.get("photometric") == "MONOCHROME1"
        if inverted:
            v = -v
        lo, hi = _percentiles(v, [LOW_PERCENTILE, AIR_PERCENTILE], pad_mask)
        if not (math.isfinite(lo) and math.isfinite(hi)) or hi - lo <= 1e-6 * max(abs(hi), abs(lo), 1e-30):
            raise _fail(path, "image is constant (no contrast between air and tissue)")
        y = (v - np.float32(lo)) * np.float32(NOMINAL_ATTENUATION / (hi - lo))
        y = np.maximum(y, 0.0, dtype=np.float32)
        meta["air_level"], meta["ref_level"] = lo, hi
        meta["conversion"] = (("MONOCHROME1 inverted (v -> -v); " if inverted else "")
                              + f"presentation: y = {NOMINAL_ATTENUATION:g} * (v - P{LOW_PERCENTILE}) / "
                              f"(P{AIR_PERCENTILE} - P{LOW_PERCENTILE}), P{LOW_PERCENTILE} = {lo:g}, "
                              f"P{AIR_PERCENTILE} = {hi:g}, clamped at 0")
    elif kind == "presentation-anchored":
        inverted = meta.get("photometric") == "MONOCHROME1"
        if inverted:
            v = -v
        try:
            y, info = presentation_to_attenuation(v, mask=pad_mask)
        except ValueError as e:
            raise _fail(path, str(e)) from e
        meta.update({k: info[k] for k in ("air_level", "soft_level", "bone_level", "gamma")})
        meta["conversion"] = ("MONOCHROME1 inverted (v -> -v); " if inverted else "") + info["conversion"]
    else:  # attenuation
        y = v.astype(np.float32, copy=False)
        meta["conversion"] = "attenuation: values taken as they are"
        if float(y.min()) < 0:
            warnings.warn(f"{path}: attenuation image has negative values (min {float(y.min()):g})",
                          RadiographWarning, stacklevel=3)
    if pad_mask is not None:
        y = np.where(pad_mask, np.float32(0.0), y)
        meta["padding_pixels"] = int(pad_mask.sum())
    if not np.isfinite(y).all():
        raise _fail(path, "conversion produced NaN or Inf")

    file_spacing = meta.get("file_spacing_mm")
    if spacing_mm is not None:
        meta["spacing_source"] = "caller"
        out_spacing = spacing_mm
    elif file_spacing is not None:
        out_spacing = float(file_spacing)
    else:
        out_spacing = None
        meta["spacing_source"] = None
        warnings.warn(f"{path}: pixel spacing unknown (none in the file, none given as spacing_mm); "
                      "Radiograph.spacing_mm is None", RadiographWarning, stacklevel=3)
    image = torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))
    meta["shape"] = tuple(image.shape)
    return Radiograph(image=image, spacing_mm=out_spacing, source=meta)


# ----------------------------------------------------------------------------------------------
# ROI crops
# ----------------------------------------------------------------------------------------------


def _as_points(points):
    """(..., 2) points -> (float64 tensor, restore function)."""
    if isinstance(points, torch.Tensor):
        dtype = points.dtype if points.dtype.is_floating_point else torch.float64
        device = points.device
        p = points.detach().to(torch.float64)

        def back(q):
            return q.to(dtype=dtype, device=device)
    else:
        try:
            p = torch.as_tensor(np.asarray(points, dtype=np.float64))
        except (TypeError, ValueError) as e:
            raise TypeError(f"points_xy: expected an array-like of (x, y) points, got {type(points).__name__}") from e

        def back(q):
            return q
    if p.ndim == 0 or p.shape[-1] != 2:
        raise ValueError(f"points_xy: expected shape (..., 2), got {tuple(p.shape)}")
    return p.cpu(), back


@dataclass
class RoiCrop:
    """A joint ROI resampled from a full radiograph, with the affine map between the two.

    Coordinates are (x, y) edge coordinates: pixel (row i, column j) covers [j, j+1) × [i, i+1).
    A crop point ``c`` maps to the full image point ``p = center + scale · R · (c − c0)`` with
    ``c0 = (w/2, h/2)``, ``scale = out_spacing_mm / full_spacing_mm`` (full pixels per crop
    pixel) and ``R`` the rotation that turns the crop's "up" ``(0, −1)`` into the finger axis
    ``(sin a, −cos a)`` (``axis_from_angle`` in :mod:`lsn_fast.layers`, as (dy, dx)).

    Attributes:
        image: (1, 1, h, w) crop (same dtype/device as the input image).
        center_xy, angle_deg, full_spacing_mm, out_spacing_mm: the crop geometry.
        full_shape: (H, W) of the full image; size: (h, w) of the crop.
        inside_fraction: fraction of the crop's sample points that fell inside the full image.
    """

    image: torch.Tensor
    center_xy: tuple[float, float]
    angle_deg: float
    full_spacing_mm: float
    out_spacing_mm: float
    full_shape: tuple[int, int]
    size: tuple[int, int]
    inside_fraction: float = 1.0

    @property
    def spacing_mm(self) -> float:
        """Spacing of the crop (what to pass to ``separate``/``LayerStack``)."""
        return self.out_spacing_mm

    @property
    def scale(self) -> float:
        return self.out_spacing_mm / self.full_spacing_mm

    def _rot(self):
        a = math.radians(self.angle_deg)
        return torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]], dtype=torch.float64)

    @property
    def affine(self) -> torch.Tensor:
        """(2, 3) float64 matrix: ``full = affine @ [x_crop, y_crop, 1]``."""
        m = self.scale * self._rot()
        c0 = torch.tensor([self.size[1] / 2.0, self.size[0] / 2.0], dtype=torch.float64)
        t = torch.tensor(self.center_xy, dtype=torch.float64) - m @ c0
        return torch.cat([m, t[:, None]], dim=1)

    def to_full(self, points_xy):
        """Crop (x, y) points (..., 2) -> full-image (x, y) points."""
        p, back = _as_points(points_xy)
        a = self.affine
        return back(p @ a[:, :2].T + a[:, 2])

    def from_full(self, points_xy):
        """Full-image (x, y) points (..., 2) -> crop (x, y) points."""
        p, back = _as_points(points_xy)
        a = self.affine
        inv = torch.linalg.inv(a[:, :2])
        return back((p - a[:, 2]) @ inv.T)

    def apply(self, full_image) -> torch.Tensor:
        """Crop another full image (same (H, W)) with this geometry -> (1, 1, h, w)."""
        img = _as_image(full_image, "full_image")
        if tuple(img.shape[-2:]) != tuple(self.full_shape):
            raise ValueError(f"full_image: expected spatial shape {self.full_shape}, got {tuple(img.shape[-2:])}")
        return _resample_crop(img, self)[0]

    def paste_back(self, crop) -> torch.Tensor:
        """Map a crop-domain image (..., h, w) back onto the full grid -> (..., H, W).

        Bilinear resampling (area-averaged by supersampling when the full grid is finer than the
        crop); pixels outside the ROI are 0 and pixels on its border get the covered fraction.
        """
        if not isinstance(crop, torch.Tensor):
            raise TypeError(f"crop: expected a torch.Tensor, got {type(crop).__name__}")
        if crop.ndim < 2 or tuple(crop.shape[-2:]) != tuple(self.size):
            raise ValueError(f"crop: expected shape (..., {self.size[0]}, {self.size[1]}), got {tuple(crop.shape)}")
        if not crop.dtype.is_floating_point:
            crop = crop.float()
        if not bool(torch.isfinite(crop).all()):
            raise ValueError("crop: contains NaN or Inf")
        lead = crop.shape[:-2]
        h, w = self.size
        H, W = self.full_shape
        src = crop.reshape(1, -1, h, w)
        out = torch.zeros(src.shape[1], H, W, dtype=crop.dtype, device=crop.device)
        # bounding box of the ROI on the full grid
        corners = self.to_full(torch.tensor([[0.0, 0.0], [w, 0.0], [0.0, h], [w, h]], dtype=torch.float64))
        x0 = max(0, int(math.floor(float(corners[:, 0].min()))))
        x1 = min(W, int(math.ceil(float(corners[:, 0].max()))))
        y0 = max(0, int(math.floor(float(corners[:, 1].min()))))
        y1 = min(H, int(math.ceil(float(corners[:, 1].max()))))
        if x1 <= x0 or y1 <= y0:
            return out.reshape(*lead, H, W)
        k = _supersampling(1.0 / self.scale)
        pts = _subpixel_points(y1 - y0, x1 - x0, k, x_off=x0, y_off=y0)  # (hh, ww, k*k, 2) xy in full
        c = self.from_full(pts)
        inside = ((c[..., 0] >= 0) & (c[..., 0] <= w) & (c[..., 1] >= 0) & (c[..., 1] <= h)).to(crop.dtype)
        grid = torch.stack([2.0 * c[..., 0] / w - 1.0, 2.0 * c[..., 1] / h - 1.0], dim=-1)
        hh, ww = y1 - y0, x1 - x0
        grid = grid.reshape(1, hh, ww * k * k, 2).to(dtype=crop.dtype, device=crop.device)
        vals = F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=False)
        vals = vals.reshape(src.shape[1], hh, ww, k * k) * inside.to(crop.device).reshape(1, hh, ww, k * k)
        out[:, y0:y1, x0:x1] = vals.mean(dim=-1)
        return out.reshape(*lead, H, W)


def _supersampling(factor: float) -> int:
    """Sub-samples per axis so that one output pixel averages its footprint (capped at 8)."""
    return int(min(8, max(1, math.ceil(factor - 1e-6))))


def _subpixel_points(h, w, k, x_off=0.0, y_off=0.0) -> torch.Tensor:
    """(h, w, k*k, 2) float64 (x, y) sample points, k×k per pixel, centred in each sub-cell."""
    sub = (torch.arange(k, dtype=torch.float64) + 0.5) / k
    ys = (torch.arange(h, dtype=torch.float64) + y_off)[:, None] + sub[None, :]  # (h, k)
    xs = (torch.arange(w, dtype=torch.float64) + x_off)[:, None] + sub[None, :]  # (w, k)
    Y = ys[:, None, :, None].expand(h, w, k, k)
    X = xs[None, :, None, :].expand(h, w, k, k)
    return torch.stack([X, Y], dim=-1).reshape(h, w, k * k, 2)


def _as_image(image, name="image") -> torch.Tensor:
    if isinstance(image, Radiograph):
        image = image.image
    if isinstance(image, np.ndarray):
        image = torch.from_numpy(np.ascontiguousarray(image))
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor (H,W), (1,H,W) or (1,1,H,W), got {type(image).__name__}")
    if image.ndim == 4 and image.shape[:2] == (1, 1):
        image = image[0, 0]
    elif image.ndim == 3 and image.shape[0] == 1:
        image = image[0]
    if image.ndim != 2:
        raise ValueError(f"{name}: expected shape (H,W), (1,H,W) or (1,1,H,W), got {tuple(image.shape)}")
    if 0 in image.shape:
        raise ValueError(f"{name}: zero-sized image {tuple(image.shape)}")
    if image.dtype == torch.bool or image.is_complex():
        raise TypeError(f"{name}: expected a real numeric tensor, got {image.dtype}")
    if not image.dtype.is_floating_point:
        image = image.float()
    elif image.dtype in (torch.float16, torch.bfloat16):
        image = image.float()
    if not bool(torch.isfinite(image).all()):
        raise ValueError(f"{name}: contains NaN or Inf")
    return image


def _resample_crop(img2d: torch.Tensor, roi: RoiCrop):
    h, w = roi.size
    H, W = img2d.shape
    k = _supersampling(roi.scale)
    c = _subpixel_points(h, w, k)
    p = roi.to_full(c)  # (h, w, k*k, 2) full xy
    inside = ((p[..., 0] >= 0) & (p[..., 0] <= W) & (p[..., 1] >= 0) & (p[..., 1] <= H)).double().mean().item()
    grid = torch.stack([2.0 * p[..., 0] / W - 1.0, 2.0 * p[..., 1] / H - 1.0], dim=-1)
    grid = grid.reshape(1, h, w * k * k, 2).to(dtype=img2d.dtype, device=img2d.device)
    vals = F.grid_sample(img2d[None, None], grid, mode="bilinear", padding_mode="border", align_corners=False)
    return vals.reshape(1, 1, h, w, k * k).mean(dim=-1), inside


def _pos_float(x, name):
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)) and not (
            isinstance(x, torch.Tensor) and x.numel() == 1):
        raise TypeError(f"{name}: expected a number, got {type(x).__name__}")
    x = float(x)
    if not (math.isfinite(x) and x > 0):
        raise ValueError(f"{name}: must be a positive finite number, got {x}")
    return x


def crop_roi(image, center_xy, *, size=256, spacing_mm=None, out_spacing_mm: float = 0.1,
             angle_deg: float = 0.0) -> RoiCrop:
    """Resample a joint ROI around ``center_xy``, finger made vertical, at ``out_spacing_mm``.

    Args:
        image: (H, W), (1, H, W) or (1, 1, H, W) tensor (or a :class:`Radiograph`, whose spacing is
            used when ``spacing_mm`` is None).
        center_xy: (x, y) joint centre in full-image pixels (edge coordinates); inside the image.
        size: crop size, int or (h, w).
        spacing_mm: spacing of ``image`` in mm.
        out_spacing_mm: spacing of the crop (the network's), mm.
        angle_deg: the finger axis' tilt from vertical in the full image (``axis_from_angle``
            convention: positive turns the proximal end towards +x); the crop is rotated so the
            finger is vertical with the proximal bone on top.
    Returns:
        :class:`RoiCrop`. Bilinear ``grid_sample`` (align_corners=False, border padding); when the
        full image is finer than the crop, each crop pixel averages k×k sub-samples of its
        footprint (k = ceil(scale), ≤ 8) so the crop integrates over pixel area as DESIGN.md asks.
    """
    if spacing_mm is None and isinstance(image, Radiograph):
        spacing_mm = image.spacing_mm
    img = _as_image(image, "image")
    if spacing_mm is None:
        raise ValueError("spacing_mm: required (the image's pixel spacing in mm)")
    spacing_mm = _pos_float(spacing_mm, "spacing_mm")
    out_spacing_mm = _pos_float(out_spacing_mm, "out_spacing_mm")
    if isinstance(angle_deg, bool) or not isinstance(angle_deg, (int, float, np.integer, np.floating)) and not (
            isinstance(angle_deg, torch.Tensor) and angle_deg.numel() == 1):
        raise TypeError(f"angle_deg: expected a number, got {type(angle_deg).__name__}")
    angle_deg = float(angle_deg)
    if not math.isfinite(angle_deg):
        raise ValueError(f"angle_deg: must be finite, got {angle_deg}")
    if isinstance(size, bool):
        raise TypeError("size: expected an int or (h, w)")
    if isinstance(size, (int, np.integer)):
        size = (int(size), int(size))
    elif isinstance(size, (tuple, list)) and len(size) == 2 and all(
            isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in size):
        size = (int(size[0]), int(size[1]))
    else:
        raise TypeError(f"size: expected an int or a pair of ints (h, w), got {size!r}")
    if not all(1 <= s <= 16384 for s in size):
        raise ValueError(f"size: each side must be in [1, 16384], got {size}")
    try:
        c = [float(v) for v in (center_xy.tolist() if isinstance(center_xy, (torch.Tensor, np.ndarray)) else center_xy)]
    except (TypeError, ValueError) as e:
        raise TypeError(f"center_xy: expected (x, y) numbers, got {center_xy!r}") from e
    if len(c) != 2 or not all(math.isfinite(v) for v in c):
        raise ValueError(f"center_xy: expected two finite numbers (x, y), got {center_xy!r}")
    H, W = img.shape
    if not (0 <= c[0] <= W and 0 <= c[1] <= H):
        raise ValueError(f"center_xy: ({c[0]}, {c[1]}) lies outside the image (W={W}, H={H})")
    roi = RoiCrop(image=img.new_zeros(0), center_xy=(c[0], c[1]), angle_deg=angle_deg,
                  full_spacing_mm=spacing_mm, out_spacing_mm=out_spacing_mm, full_shape=(H, W), size=size)
    roi.image, roi.inside_fraction = _resample_crop(img, roi)
    return roi


# ----------------------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------------------


def write_png(path, image, *, window=None, bits: int = 8) -> Path:
    """Save an attenuation image as a grayscale PNG, bone bright, atomically.

    Args:
        path: destination (str or os.PathLike); written via a temp file in the same directory and
            ``os.replace``, so readers never see a partial file.
        image: (H, W), (1, H, W) or (1, 1, H, W) tensor or ndarray, finite.
        window: (lo, hi) attenuation mapped to black..white; default (min, max) of the image.
        bits: 8 or 16.
    Returns:
        The path written.
    """
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected str or os.PathLike, got {type(path).__name__}")
    if isinstance(bits, bool) or bits not in (8, 16):
        raise ValueError(f"bits: expected 8 or 16, got {bits!r}")
    img = _as_image(image, "image").detach().to("cpu", torch.float64).numpy()
    if window is None:
        lo, hi = float(img.min()), float(img.max())
    else:
        try:
            lo, hi = (float(v) for v in window)
        except (TypeError, ValueError) as e:
            raise TypeError(f"window: expected (lo, hi) numbers, got {window!r}") from e
        if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
            raise ValueError(f"window: expected finite lo < hi, got {window!r}")
    if hi <= lo:
        hi = lo + 1.0
    top = (1 << bits) - 1
    q = np.clip(np.rint((img - lo) / (hi - lo) * top), 0, top).astype(np.uint8 if bits == 8 else np.uint16)
    from PIL import Image

    path = Path(path)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            Image.fromarray(q).save(fh, format="PNG")
            fh.flush()
            os.fsync(fh.fileno())

    atomic_write(path, write)  # never a partial file; the user's umask
    return path
