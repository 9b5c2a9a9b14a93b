"""Low-level, hostile-input-safe pieces of the radiograph readers (no torch; numpy only).

* :func:`read_regular_file` — opens a path without blocking (``O_NONBLOCK``), refuses anything
  that is not a regular file (FIFO, socket, device, directory) *after* opening it (``fstat`` on
  the open descriptor, so there is no check-then-open race), bounds the size, returns the bytes.
  Every reader then parses those bytes, never the path again.
* :func:`check_png_stream` — walks a PNG's chunks, inflates its IDAT stream with a bound and
  checks that it holds exactly the bytes the IHDR declares (filter byte + packed samples per
  row, Adam7 passes included): a complete zlib stream that holds 10 of 400 rows is refused.
* :func:`read_metaimage` — MetaImage ``.mha`` (data attached) / ``.mhd`` (data in a separate
  file) with raw or zlib-compressed data, ``ElementSpacing``/``ElementSize`` as spacing.
* :func:`read_nrrd` — NRRD (attached or detached data; ``raw`` or ``gzip`` encoding), spacing from
  ``spacings`` or the norms of ``space directions``.
* :func:`check_spacing` — a spacing must be finite and in [:data:`MIN_SPACING_MM`,
  :data:`MAX_SPACING_MM`]; a header value outside is not a pixel spacing.

Both image parsers check the declared size against ``max_pixels`` before touching the data,
never decompress more than the declared size (+1 byte, to notice excess), and refuse data shorter
than declared. Errors are ``ValueError`` with a message; :mod:`lsn_fast.io.readers` wraps them in
``RadiographError`` with the file name.
"""

from __future__ import annotations

import math
import os
import stat
import struct
import zlib
from pathlib import Path

import numpy as np

__all__ = ["MAX_SPACING_MM", "MIN_SPACING_MM", "check_png_stream", "check_spacing", "read_metaimage", "read_nrrd",
           "read_regular_file"]

#: Plausible pixel spacings of a radiograph, mm (beyond: a corrupt or hostile header).
MIN_SPACING_MM = 0.005
MAX_SPACING_MM = 5.0


def read_regular_file(path, max_bytes: int) -> bytes:
    """The bytes of ``path``, which must be a regular file of at most ``max_bytes``.

    Raises FileNotFoundError, IsADirectoryError, or ValueError (not a regular file, too large,
    unreadable)."""
    path = os.fspath(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise IsADirectoryError(f"{path}: is a directory, expected a radiograph file") from None
    except OSError as e:
        raise ValueError(f"cannot open: {type(e).__name__}: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(f"{path}: is a directory, expected a radiograph file")
        if not stat.S_ISREG(st.st_mode):
            kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                    else "a character device" if stat.S_ISCHR(st.st_mode)
                    else "a block device" if stat.S_ISBLK(st.st_mode) else "not a regular file")
            raise ValueError(f"is {kind}; only regular files are read")
        if st.st_size > max_bytes:
            raise ValueError(f"file of {st.st_size} bytes exceeds the limit of {max_bytes} bytes")
        chunks, total = [], 0
        while True:
            b = os.read(fd, min(1 << 24, max_bytes + 1 - total))
            if not b:
                break
            chunks.append(b)
            total += len(b)
            if total > max_bytes:
                raise ValueError(f"file grew beyond the limit of {max_bytes} bytes while being read")
        return b"".join(chunks)
    finally:
        os.close(fd)


def check_spacing(values, what: str) -> tuple[float, float]:
    """(row, column) spacing in mm from one or two header numbers; ValueError when a value is not
    finite or outside [MIN_SPACING_MM, MAX_SPACING_MM]."""
    vals = [float(v) for v in values]
    if len(vals) == 1:
        vals = vals * 2
    if len(vals) != 2:
        raise ValueError(f"{what} {vals}: expected one or two numbers")
    for v in vals:
        if not (math.isfinite(v) and MIN_SPACING_MM <= v <= MAX_SPACING_MM):
            raise ValueError(f"{what} {vals} mm is not a radiograph pixel spacing "
                             f"(finite, in [{MIN_SPACING_MM}, {MAX_SPACING_MM}] mm)")
    return vals[0], vals[1]


# ------------------------------------------------------------------------------------------ PNG
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def _png_rowbytes(width, channels, depth):
    return 1 + (width * channels * depth + 7) // 8


def check_png_stream(data: bytes) -> dict:
    """Check a PNG's IDAT stream against its IHDR; returns the IHDR fields. ValueError if the
    chunks are malformed, the zlib stream is incomplete or corrupt, or it inflates to fewer (or
    more) bytes than the declared rows need."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG signature")
    pos, ihdr, idat = 8, None, []
    saw_iend = False
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        ctype = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if len(body) != length or pos + 12 + length > len(data):
            raise ValueError(f"truncated PNG: chunk {ctype!r} declares {length} bytes, the file ends first")
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        if zlib.crc32(ctype + body) & 0xFFFFFFFF != crc:
            raise ValueError(f"PNG chunk {ctype!r} fails its CRC check (corrupt file)")
        if ctype == b"IHDR":
            if length != 13:
                raise ValueError("PNG IHDR chunk has the wrong length")
            w, h, depth, color, _comp, _filt, interlace = struct.unpack(">IIBBBBB", body)
            ihdr = {"width": w, "height": h, "depth": depth, "color_type": color, "interlace": interlace}
        elif ctype == b"IDAT":
            idat.append(body)
        elif ctype == b"IEND":
            saw_iend = True
            break
        pos += 12 + length
    if ihdr is None:
        raise ValueError("PNG has no IHDR chunk")
    if not idat:
        raise ValueError("truncated PNG: no image data (IDAT)")
    if not saw_iend:
        raise ValueError("truncated PNG: no IEND chunk (the file ends early)")
    ch = _PNG_CHANNELS.get(ihdr["color_type"])
    if ch is None or ihdr["depth"] not in (1, 2, 4, 8, 16):
        raise ValueError(f"PNG colour type {ihdr['color_type']} / bit depth {ihdr['depth']} is invalid")
    w, h, d = ihdr["width"], ihdr["height"], ihdr["depth"]
    if ihdr["interlace"] == 0:
        expected = h * _png_rowbytes(w, ch, d)
    elif ihdr["interlace"] == 1:
        expected = 0
        for x0, y0, dx, dy in ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
                               (0, 1, 1, 2)):
            pw, ph = (w - x0 + dx - 1) // dx, (h - y0 + dy - 1) // dy
            if pw > 0 and ph > 0:
                expected += ph * _png_rowbytes(pw, ch, d)
    else:
        raise ValueError(f"PNG interlace method {ihdr['interlace']} is invalid")
    z = zlib.decompressobj()
    got = 0
    for part in idat:
        while part:
            out = z.decompress(part, expected + 1 - got)
            got += len(out)
            if got > expected:
                raise ValueError(f"PNG image data inflates to more than the {expected} bytes its IHDR declares")
            part = z.unconsumed_tail
            if not out and part:  # no progress
                break
    got += len(z.flush())
    if got < expected:
        rows = got // _png_rowbytes(w, ch, d) if ihdr["interlace"] == 0 else None
        held = f" (about {rows} of {h} rows)" if rows is not None else ""
        end = "a complete zlib stream" if z.eof else "an incomplete zlib stream"
        raise ValueError(f"truncated PNG: {end} holds {got} of the {expected} bytes its IHDR declares{held}")
    if not z.eof:
        raise ValueError("PNG zlib stream is incomplete (no end marker)")
    return ihdr


# ------------------------------------------------------------------------------------ MetaImage
_MET_TYPES = {"MET_UCHAR": "u1", "MET_CHAR": "i1", "MET_USHORT": "u2", "MET_SHORT": "i2", "MET_UINT": "u4",
              "MET_INT": "i4", "MET_ULONG_LONG": "u8", "MET_LONG_LONG": "i8", "MET_FLOAT": "f4",
              "MET_DOUBLE": "f8"}
_MAX_HEADER = 1 << 16


def _split_dims(sizes, what):
    """2-D image from (x, y) or (x, y, 1) sizes; returns (rows, cols)."""
    if len(sizes) == 3 and sizes[2] == 1:
        sizes = sizes[:2]
    if len(sizes) != 2:
        raise ValueError(f"{what} {sizes}: only 2-D images (or 3-D with one slice) are supported")
    return sizes[1], sizes[0]


def _inflate(payload: bytes, expected: int, what: str, gzip: bool = False) -> bytes:
    z = zlib.decompressobj(47 if gzip else 15)  # 47: zlib or gzip header, detected
    out = z.decompress(payload, expected + 1)
    if len(out) > expected:
        raise ValueError(f"{what}: compressed data inflates to more than the {expected} bytes declared")
    out += z.flush()
    if len(out) < expected:
        raise ValueError(f"truncated {what}: compressed data holds {len(out)} of the {expected} bytes declared")
    if not z.eof:
        raise ValueError(f"{what}: compressed stream is incomplete")
    return out[:expected]


def _decode(raw: bytes, dtype: np.dtype, rows: int, cols: int) -> np.ndarray:
    return np.frombuffer(raw, dtype=dtype, count=rows * cols).reshape(rows, cols)


def read_metaimage(data: bytes, path, max_pixels: int, max_bytes: int) -> tuple[np.ndarray, dict]:
    """Parse a MetaImage file (``.mha`` attached, ``.mhd`` detached data). Returns the (rows, cols)
    array in its stored dtype and metadata (``file_spacing_yx_mm`` when the header has one)."""
    end = data.find(b"ElementDataFile", 0, _MAX_HEADER)
    if end < 0:
        raise ValueError("MetaImage header has no ElementDataFile line (or is longer than 64 KiB)")
    eol = data.find(b"\n", end)
    if eol < 0:
        raise ValueError("truncated MetaImage: the header's last line has no end")
    try:
        header = data[:eol].decode("ascii")
    except UnicodeDecodeError:
        raise ValueError("MetaImage header is not ASCII text") from None
    kv = {}
    for line in header.splitlines():
        if not line.strip():
            continue
        if "=" not in line:
            raise ValueError(f"MetaImage header line {line[:60]!r} is not 'Key = Value'")
        k, v = line.split("=", 1)
        kv[k.strip()] = v.strip()
    meta: dict = {"metaimage_header": {k: kv[k] for k in list(kv)[:40]}}
    if kv.get("ObjectType", "Image") != "Image":
        raise ValueError(f"MetaImage ObjectType {kv.get('ObjectType')!r} is not an Image")

    def ints(key):
        try:
            return [int(t) for t in kv[key].split()]
        except KeyError:
            raise ValueError(f"MetaImage header has no {key}") from None
        except ValueError:
            raise ValueError(f"MetaImage {key} {kv[key]!r} is not a list of integers") from None

    ndims = ints("NDims")
    sizes = ints("DimSize")
    if len(ndims) != 1 or ndims[0] != len(sizes):
        raise ValueError(f"MetaImage NDims {kv['NDims']!r} disagrees with DimSize {kv['DimSize']!r}")
    rows, cols = _split_dims(sizes, "MetaImage DimSize")
    if rows <= 0 or cols <= 0:
        raise ValueError(f"zero-sized MetaImage ({rows}x{cols})")
    if rows * cols > max_pixels:
        raise ValueError(f"declared MetaImage size {rows}x{cols} = {rows * cols} pixels exceeds max_pixels={max_pixels}")
    nch = int(kv.get("ElementNumberOfChannels", "1"))
    if nch != 1:
        raise ValueError(f"MetaImage ElementNumberOfChannels={nch}: only grayscale images are supported")
    et = kv.get("ElementType")
    if et not in _MET_TYPES:
        raise ValueError(f"MetaImage ElementType {et!r} is not supported (one of {sorted(_MET_TYPES)})")
    msb = kv.get("BinaryDataByteOrderMSB", kv.get("ElementByteOrderMSB", "False")).lower() == "true"
    dtype = np.dtype(_MET_TYPES[et]).newbyteorder(">" if msb else "<")
    meta["bits"] = dtype.itemsize * 8
    meta["integer"] = dtype.kind in "ui"
    meta["dtype"] = str(dtype)
    for key in ("ElementSpacing", "ElementSize"):
        if key in kv:
            try:
                sp = [float(t) for t in kv[key].split()]
            except ValueError:
                raise ValueError(f"MetaImage {key} {kv[key]!r} is not numeric") from None
            if len(sp) < 2:
                raise ValueError(f"MetaImage {key} {kv[key]!r}: expected one number per dimension")
            dx, dy = check_spacing(sp[:2], f"MetaImage {key}")
            meta["file_spacing_yx_mm"], meta["spacing_source"] = (dy, dx), key
            break
    if kv.get("TransformMatrix") not in (None, "1 0 0 0 1 0 0 0 1", "1 0 0 1"):
        meta["conversion_note"] = f"MetaImage TransformMatrix {kv['TransformMatrix']} not applied (pixels as stored)"
    expected = rows * cols * dtype.itemsize
    compressed = kv.get("CompressedData", "False").lower() == "true"
    edf = kv["ElementDataFile"]
    if edf == "LOCAL":
        payload = data[eol + 1:]
        meta["metaimage"] = "attached (.mha)"
    elif edf.upper() == "LIST" or "%" in edf:
        raise ValueError(f"MetaImage ElementDataFile {edf!r}: file lists are not supported")
    else:
        if path is None:
            raise ValueError("MetaImage with a detached data file needs the header's path")
        target = Path(os.fspath(path)).parent / edf
        payload = read_regular_file(target, max_bytes)
        meta["metaimage"] = f"detached (.mhd), data in {edf}"
    if "HeaderSize" in kv:
        hs = int(kv["HeaderSize"])
        if hs == -1:  # data at the end of the file
            payload = payload[-expected:] if not compressed else payload
        elif hs >= 0:
            payload = payload[hs:]
    if compressed:
        raw = _inflate(payload, expected, "MetaImage")
    else:
        if len(payload) < expected:
            raise ValueError(f"truncated MetaImage: {len(payload)} data bytes, DimSize x ElementType needs "
                             f"{rows}x{cols}x{dtype.itemsize} = {expected}")
        raw = payload[:expected]
    return _decode(raw, dtype, rows, cols), meta


# ----------------------------------------------------------------------------------------- NRRD
_NRRD_TYPES = {}
for names, code in ((("signed char", "int8", "int8_t"), "i1"), (("uchar", "unsigned char", "uint8", "uint8_t"), "u1"),
                    (("short", "short int", "signed short", "signed short int", "int16", "int16_t"), "i2"),
                    (("ushort", "unsigned short", "unsigned short int", "uint16", "uint16_t"), "u2"),
                    (("int", "signed int", "int32", "int32_t"), "i4"), (("uint", "unsigned int", "uint32", "uint32_t"), "u4"),
                    (("float",), "f4"), (("double",), "f8")):
    for n in names:
        _NRRD_TYPES[n] = code


def read_nrrd(data: bytes, path, max_pixels: int, max_bytes: int) -> tuple[np.ndarray, dict]:
    """Parse a NRRD file (raw or gzip encoding, attached or detached data)."""
    if not data.startswith(b"NRRD000"):
        raise ValueError("not a NRRD file (no NRRD000x magic)")
    end = data.find(b"\n\n", 0, _MAX_HEADER)
    sep = 2
    if end < 0:
        end = data.find(b"\r\n\r\n", 0, _MAX_HEADER)
        sep = 4
    detached_only = False
    if end < 0:
        end, sep, detached_only = len(data), 0, True
        if len(data) > _MAX_HEADER:
            raise ValueError("NRRD header has no end (blank line) within 64 KiB")
    try:
        header = data[:end].decode("ascii")
    except UnicodeDecodeError:
        raise ValueError("NRRD header is not ASCII text") from None
    fields = {}
    for line in header.splitlines()[1:]:
        if not line.strip() or line.startswith("#"):
            continue
        if ":=" in line:
            continue  # key/value pairs: not needed
        if ": " not in line:
            raise ValueError(f"NRRD header line {line[:60]!r} is not 'field: value'")
        k, v = line.split(": ", 1)
        fields[k.strip().lower()] = v.strip()
    meta: dict = {}
    try:
        dim = int(fields["dimension"])
        sizes = [int(t) for t in fields["sizes"].split()]
    except KeyError as e:
        raise ValueError(f"NRRD header has no {e.args[0]!r} field") from None
    except ValueError:
        raise ValueError("NRRD dimension/sizes are not integers") from None
    if dim != len(sizes):
        raise ValueError(f"NRRD dimension {dim} disagrees with sizes {sizes}")
    rows, cols = _split_dims(sizes, "NRRD sizes")
    if rows <= 0 or cols <= 0:
        raise ValueError(f"zero-sized NRRD ({rows}x{cols})")
    if rows * cols > max_pixels:
        raise ValueError(f"declared NRRD size {rows}x{cols} = {rows * cols} pixels exceeds max_pixels={max_pixels}")
    t = fields.get("type", "")
    if t not in _NRRD_TYPES:
        raise ValueError(f"NRRD type {t!r} is not supported")
    dtype = np.dtype(_NRRD_TYPES[t])
    if dtype.itemsize > 1:
        endian = fields.get("endian")
        if endian not in ("little", "big"):
            raise ValueError(f"NRRD endian {endian!r}: expected little or big")
        dtype = dtype.newbyteorder("<" if endian == "little" else ">")
    meta["bits"] = dtype.itemsize * 8
    meta["integer"] = dtype.kind in "ui"
    meta["dtype"] = str(dtype)
    spacing = None
    if "spacings" in fields:
        try:
            spacing = [float(s) for s in fields["spacings"].split()[:2]]
        except ValueError:
            raise ValueError(f"NRRD spacings {fields['spacings']!r} are not numeric") from None
        src = "spacings"
    elif "space directions" in fields:
        vecs = []
        for tok in fields["space directions"].replace(")", ") ").split()[:2]:
            tok = tok.strip()
            if tok == "none":
                continue
            try:
                vecs.append(math.sqrt(sum(float(c) ** 2 for c in tok.strip("()").split(","))))
            except ValueError:
                raise ValueError(f"NRRD space directions {fields['space directions']!r} are not numeric") from None
        if len(vecs) == 2:
            spacing, src = vecs, "space directions"
    if spacing is not None:
        dx, dy = check_spacing(spacing, f"NRRD {src}")
        meta["file_spacing_yx_mm"], meta["spacing_source"] = (dy, dx), f"NRRD {src}"
    enc = fields.get("encoding", "")
    expected = rows * cols * dtype.itemsize
    if "data file" in fields or "datafile" in fields:
        name = fields.get("data file", fields.get("datafile"))
        if " " in name.strip() or name.strip().upper().startswith("LIST"):
            raise ValueError(f"NRRD data file {name!r}: file lists are not supported")
        if path is None:
            raise ValueError("NRRD with a detached data file needs the header's path")
        payload = read_regular_file(Path(os.fspath(path)).parent / name.strip(), max_bytes)
        meta["nrrd"] = f"detached, data in {name.strip()}"
    else:
        if detached_only:
            raise ValueError("truncated NRRD: no blank line between header and data")
        payload = data[end + sep:]
        meta["nrrd"] = "attached"
    skip = int(fields.get("byte skip", "0"))
    if skip == -1 and enc == "raw":
        payload = payload[-expected:] if len(payload) >= expected else payload
    elif skip > 0:
        payload = payload[skip:]
    if enc == "raw":
        if len(payload) < expected:
            raise ValueError(f"truncated NRRD: {len(payload)} data bytes, sizes x type need {expected}")
        raw = payload[:expected]
    elif enc in ("gzip", "gz"):
        raw = _inflate(payload, expected, "NRRD", gzip=True)
    else:
        raise ValueError(f"NRRD encoding {enc!r} is not supported (raw or gzip)")
    return _decode(raw, dtype, rows, cols), meta
