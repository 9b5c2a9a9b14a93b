"""Offline export of a :class:`lsn_fast.JSWStream` to shards (``lsn-fast synth --n N --out DIR``).

Samples ``[0, n)`` of a stream (global indices, so the shards hold exactly what the stream
yields for those indices, whatever its batch size or sharding) are written in shards of
``shard_size`` samples:

* ``format="safetensors"``: ``shard-000000.safetensors`` with tensors ``images`` (count,1,H,W)
  in the stream's ``out_dtype``, ``jsw_mm``, ``index``, ``bank_index``, ``bone``, ``jsw0_mm``,
  ``shift_px``, ``grade`` and, where used, ``detector.<field>``, ``augment.<name>`` and (whole-pixel
  moves) ``disp_dy_px`` / ``disp_dx_px``;
* ``format="webdataset"``: ``shard-000000.tar`` with, per sample, ``<index:010d>.image.npy``
  ((1,H,W) float32, or float16 for float16 streams) and ``<index:010d>.json`` (labels and info),
  the WebDataset convention (members grouped by basename), deterministic tar headers.

``manifest.json`` records the stream configuration, seed, counts, a fingerprint of the bank and
each shard's file, first index, count, bytes and sha256. Each shard is written to a temporary
file and moved into place with ``os.replace``; the manifest is rewritten (atomically) after every
shard, so an interrupted export resumes: shards whose file matches the manifest's sha256 are
skipped, the rest are regenerated (deterministically, so byte-identical).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import tarfile

import torch

from lsn_fast.synthesis.stream import JSWStream
from lsn_fast.utils.files import apply_umask, atomic_write_text

__all__ = ["export_shards", "read_shard", "verify_export", "add_synth_arguments", "run_synth", "MANIFEST"]

MANIFEST = "manifest.json"
FORMATS = {"safetensors": ".safetensors", "webdataset": ".tar"}


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _bank_fingerprint(stream: JSWStream) -> str:
    """sha256 of the bank's shape, dtype, spacing, measured geometry and a strided subsample."""
    
    bank = stream.bank
    h = hashlib.sha256()
    h.update(json.dumps([list(bank.shape), str(bank.dtype), bank.spacing_mm]).encode())
    axis, jsw0 = bank.geometry()
    for t in (axis, jsw0):
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    for t in (bank.soft, bank.upper, bank.lower):
        flat = t.reshape(-1)
        step = max(1, flat.numel() // (1 << 20))
        h.update(flat[::step].detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def _json_roundtrip(x):
    return json.loads(json.dumps(x))


def _write_atomic_text(path: str, text: str) -> None:
    atomic_write_text(path, text)


def _flat_info(images: torch.Tensor, jsw: torch.Tensor, info: dict) -> dict[str, torch.Tensor]:
    out = {"images": images.detach().cpu().contiguous(), "jsw_mm": jsw.detach().cpu().to(torch.float32).contiguous()}
    for k in ("index", "bank_index", "bone", "jsw0_mm", "shift_px", "grade"):
        out[k] = info[k].detach().cpu().contiguous()
    if "disp_px" in info:  # whole-pixel moves: the upper bone's displacement, one scalar field per axis
        d = info["disp_px"].detach().cpu().to(torch.float32)
        out["disp_dy_px"], out["disp_dx_px"] = d[:, 0].contiguous(), d[:, 1].contiguous()
    for group in ("detector", "augment"):
        for k, v in info.get(group, {}).items():
            out[f"{group}.{k}"] = v.detach().cpu().contiguous()
    return out


def _generate_shard(stream: JSWStream, first: int, count: int) -> dict[str, torch.Tensor]:
    parts = []
    for b0 in range(first, first + count, stream.batch_size):
        b1 = min(first + count, b0 + stream.batch_size)
        parts.append(_flat_info(*stream.generate(torch.arange(b0, b1, dtype=torch.int64))))
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def _write_safetensors(path: str, data: dict, meta: dict) -> None:
    from safetensors.torch import save_file

    # one metadata entry: safetensors stores the metadata map in an unordered (hash) map, so several
    # keys would be serialized in a random order and the shard bytes (and sha256) would not repeat
    save_file(data, path, metadata={"lsn_fast": json.dumps(meta, sort_keys=True)})


def _npy_bytes(t: torch.Tensor) -> bytes:
    import numpy as np

    if t.dtype == torch.bfloat16:
        t = t.to(torch.float32)
    buf = io.BytesIO()
    np.save(buf, t.numpy(), allow_pickle=False)
    return buf.getvalue()


def _write_webdataset(path: str, data: dict) -> None:
    n = data["images"].shape[0]
    scalars = {k: v for k, v in data.items() if k != "images"}
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for i in range(n):
            key = f"{int(data['index'][i]):010d}"
            label = {}
            for k, v in scalars.items():
                x = v[i]
                label[k] = bool(x) if x.dtype == torch.bool else (int(x) if not x.is_floating_point() else float(x))
            for name, payload in ((f"{key}.image.npy", _npy_bytes(data["images"][i])),
                                  (f"{key}.json", json.dumps(label, sort_keys=True).encode())):
                ti = tarfile.TarInfo(name)
                ti.size, ti.mtime, ti.mode, ti.uid, ti.gid, ti.uname, ti.gname = len(payload), 0, 0o644, 0, 0, "", ""
                tar.addfile(ti, io.BytesIO(payload))


def read_shard(path: str) -> dict:
    """Read one shard back: safetensors -> dict of tensors; webdataset tar -> dict with
    ``images`` (count,1,H,W) float32 and the label fields stacked as tensors."""
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    if path.endswith(".tar"):
        import numpy as np

        imgs, labels = {}, {}
        with tarfile.open(path, "r") as tar:
            for m in tar.getmembers():
                if not m.isfile():
                    raise ValueError(f"path: {path} holds a non-file member {m.name!r}")
                data = tar.extractfile(m).read()
                key, _, ext = m.name.partition(".")
                if ext == "image.npy":
                    imgs[key] = torch.from_numpy(np.load(io.BytesIO(data), allow_pickle=False).copy())
                elif ext == "json":
                    labels[key] = json.loads(data)
        keys = sorted(imgs)
        if keys != sorted(labels):
            raise ValueError(f"path: {path} has images and labels for different samples")
        out = {"images": torch.stack([imgs[k] for k in keys])}
        for f in labels[keys[0]] if keys else []:
            vals = [labels[k][f] for k in keys]
            dt = torch.bool if isinstance(vals[0], bool) else (torch.int64 if isinstance(vals[0], int) else torch.float32)
            out[f] = torch.tensor(vals, dtype=dt)
        return out
    raise ValueError(f"path: unknown shard format {path!r}")


def verify_export(out_dir: str) -> dict:
    """Check every shard of an export against its manifest (sha256). Returns the manifest."""
    with open(os.path.join(out_dir, MANIFEST)) as f:
        man = json.load(f)
    for s in man["shards"]:
        p = os.path.join(out_dir, s["file"])
        if not os.path.isfile(p) or _sha256(p) != s["sha256"]:
            raise ValueError(f"out_dir: shard {s['file']} is missing or does not match the manifest")
    return man


def export_shards(stream_or_args, n: int, out_dir: str, shard_size: int = 1024, format: str = "safetensors", *,
                  progress: bool = True, overwrite: bool = False, first_index: int = 0, recipe: dict | None = None) -> dict:
    """Write samples ``[first_index, first_index + n)`` of a stream to shards plus ``manifest.json``.

    Args:
        stream_or_args: a :class:`JSWStream`, or a dict of its constructor arguments.
        n: number of samples (>= 1). out_dir: output directory (created).
        shard_size: samples per shard (>= 1). format: ``"safetensors"`` or ``"webdataset"``.
        progress: tqdm bar. overwrite: discard an existing export with another configuration, or
            with more samples than ``n`` (without it, both raise ``ValueError`` and nothing is
            written: an export is never shrunk or replaced silently).
        first_index: global index of the first exported sample.
        recipe: a JSON-able description of how the stream was made (the CLI's options), stored
            in the manifest so that a later run can recognise the export before building a bank.
    Returns:
        The manifest (dict).
    """
    stream = stream_or_args if isinstance(stream_or_args, JSWStream) else None
    if stream is None:
        if not isinstance(stream_or_args, dict):
            raise TypeError(f"stream_or_args: expected a JSWStream or a dict of its arguments, got {type(stream_or_args).__name__}")
        stream = JSWStream(**stream_or_args)
    for name, v, lo in (("n", n, 1), ("shard_size", shard_size, 1), ("first_index", first_index, 0)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{name}: expected an int, got {type(v).__name__}")
        if v < lo:
            raise ValueError(f"{name}: must be >= {lo}, got {v}")
    if format not in FORMATS:
        raise ValueError(f"format: expected one of {sorted(FORMATS)}, got {format!r}")
    os.makedirs(out_dir, exist_ok=True)
    # what determines the shards' bytes (not the batch size, epoch length or drop_last of the stream)
    content = {k: v for k, v in stream.config().items() if k not in ("batch_size", "num_samples", "drop_last")}
    key = _json_roundtrip({"shard_format": format, "shard_size": shard_size, "first_index": first_index,
                           "config": content, "bank_fingerprint": _bank_fingerprint(stream)})
    man_path = os.path.join(out_dir, MANIFEST)
    done: dict[tuple[int, int], dict] = {}
    old_files: set[str] = set()
    if os.path.isfile(man_path):
        try:
            with open(man_path) as f:
                old = json.load(f)
        except (OSError, ValueError):
            old = None
        if old is not None and old.get("key") != key and not overwrite:
            raise ValueError(f"out_dir: {out_dir} holds an export with a different configuration; pass overwrite=True "
                             "or use another directory")
        if old is not None and old.get("key") == key and int(old.get("n", 0)) > n and not overwrite:
            raise ValueError(f"n: {out_dir} holds an export of {old.get('n')} samples; n={n} would drop "
                             f"{int(old.get('n')) - n} of them; pass overwrite=True or n >= {old.get('n')}")
        if old is not None:
            old_files = {s["file"] for s in old.get("shards", []) if isinstance(s, dict) and "file" in s
                         and os.path.basename(s["file"]) == s["file"]}
        if old is not None and old.get("key") == key:
            for s in old.get("shards", []):
                done[(s["first_index"], s["count"])] = s
    ext = FORMATS[format]
    plan = [(j, first_index + j * shard_size, min(shard_size, n - j * shard_size)) for j in range((n + shard_size - 1) // shard_size)]
    shards: list[dict] = []
    bar = None
    if progress:
        try:
            from tqdm import tqdm

            bar = tqdm(total=n, desc="export", unit="img")
        except ImportError:  # pragma: no cover
            bar = None
    skipped = 0

    def write_manifest(complete: bool):
        man = {
            "format": "lsn_fast.synthesis.export", "version": 1, "key": key, "shard_format": format, "seed": stream.seed,
            "n": n, "first_index": first_index, "shard_size": shard_size, "num_shards": len(plan),
            "image_shape": [1, *stream.bank.shape[1:]], "image_dtype": str(stream.out_dtype).replace("torch.", ""),
            "config": _json_roundtrip(stream.config()),
            "counts": {"samples": sum(s["count"] for s in shards), "shards": len(shards),
                       "grades": None if not shards else [int(x) for x in torch.tensor([s["grades"] for s in shards]).sum(0).tolist()]},
            "shards": shards, "complete": complete, "recipe": _json_roundtrip(recipe),
        }
        _write_atomic_text(man_path, json.dumps(man, indent=1, sort_keys=True))
        return man

    man = None
    for j, first, count in plan:
        fname = f"shard-{j:06d}{ext}"
        path = os.path.join(out_dir, fname)
        prev = done.get((first, count))
        if prev is not None and prev["file"] == fname and os.path.isfile(path) and _sha256(path) == prev["sha256"]:
            shards.append(prev)
            skipped += 1
        else:
            data = _generate_shard(stream, first, count)
            tmp = path + ".partial"
            if format == "safetensors":
                _write_safetensors(tmp, data, {"format": "lsn_fast.JSWStream.shard", "first_index": first, "count": count,
                                               "seed": stream.seed})
            else:
                _write_webdataset(tmp, data)
            apply_umask(tmp)  # safetensors writes 0600
            os.replace(tmp, path)
            grades = torch.bincount(data["grade"], minlength=5)[:5].tolist()
            shards.append({"file": fname, "first_index": first, "count": count, "bytes": os.path.getsize(path),
                           "sha256": _sha256(path), "grades": grades})
            man = write_manifest(False)
        if bar is not None:
            bar.update(count)
    if bar is not None:
        bar.close()
    man = write_manifest(True)
    if old_files:  # an overwritten export: its shards that the new one does not hold
        keep = {s["file"] for s in shards}
        for f in old_files - keep:
            p = os.path.join(out_dir, f)
            if os.path.isfile(p):
                os.remove(p)
    man["skipped"] = skipped
    return man


# ----------------------------------------------------------------------------------- CLI
def _range(v: str) -> tuple[float, float]:
    try:
        lo, hi = (float(x) for x in v.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO:HI in mm, got {v!r}") from None
    if not (0 <= lo <= hi < float("inf")):
        raise argparse.ArgumentTypeError(f"expected 0 <= LO <= HI (mm), got {v!r}")
    return lo, hi


def _count(v: str) -> int:
    try:
        i = int(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {v!r}") from None
    if i < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {i}")
    return i


def _mm(v: str) -> float:
    try:
        f = float(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {v!r}") from None
    if not 0 < f < float("inf"):
        raise argparse.ArgumentTypeError(f"must be > 0, got {v!r}")
    return f


def add_synth_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``lsn-fast synth`` for the offline stream export (used when --layers is absent)."""
    g = parser.add_argument_group("stream export (without --layers)")
    g.add_argument("--n", type=_count, default=None, help="number of samples to export")
    g.add_argument("--bank", default=None, help="bank of layer stacks (.safetensors/.npz, e.g. from lsn-fast phantom)")
    g.add_argument("--phantoms", type=_count, default=None, help="or: build a bank of this many phantoms")
    g.add_argument("--size", type=_count, default=256, help="phantom size in px")
    g.add_argument("--spacing", type=_mm, default=0.1, help="phantom pixel spacing in mm")
    g.add_argument("--phantom-seed", type=int, default=0, help="phantom bank seed")
    g.add_argument("--bank-dtype", choices=("float32", "float16", "bfloat16"), default="float32", help="bank storage dtype")
    g.add_argument("--jsw-range", type=_range, default=(0.0, 3.0), help="target JSW LO:HI mm (default 0:3)")
    g.add_argument("--grade-balanced", action="store_true", help="targets balanced over JSN grades 0-4")
    g.add_argument("--random-bone", action="store_true", help="move the upper or the lower bone at random")
    g.add_argument("--augment", action="store_true", help="flip / small rotation / intensity augmentation")
    g.add_argument("--batch-size", type=_count, default=64, help="generation batch size")
    g.add_argument("--shard-size", type=_count, default=1024, help="samples per shard")
    g.add_argument("--format", choices=sorted(FORMATS), default="safetensors", help="shard format")
    g.add_argument("--out-dtype", choices=("float32", "float16", "bfloat16"), default="float32", help="image dtype")
    g.add_argument("--device", default=None, help="generation device (default: cuda if available, else cpu)")
    g.add_argument("--backend", default="auto", help="kernel backend")
    g.add_argument("--overwrite", action="store_true",
                   help="replace an export in --out made with other options or holding more samples than --n")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    # API argument names in error messages -> the flags that set them
    parser.set_defaults(api_flags={"out_dir": "--out", "jsw_mm": "--jsw-range", "batch_size": "--batch-size",
                                   "shard_size": "--shard-size", "n": "--n", "n0": "--n0", "blur_sigma_px": "--blur",
                                   "electronic_sigma": "--electronic", "out_dtype": "--out-dtype", "bank": "--bank"})


# the options that decide what an export holds (not --out, --device, --backend, --batch-size, --no-progress)
RECIPE_FLAGS = ("bank", "phantoms", "size", "spacing", "phantom_seed", "bank_dtype", "jsw_range", "grade_balanced",
                "random_bone", "bone", "moves", "interp", "augment", "shard_size", "format", "out_dtype", "n0", "blur",
                "electronic", "seed")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _recipe(args) -> dict:
    get = lambda name, default=None: getattr(args, name, default)  # noqa: E731
    r = {k: get(k) for k in RECIPE_FLAGS}
    if r["bank"] is not None:  # the file's content, not its name
        r["bank"] = {"sha256": _sha256(r["bank"])}
    else:
        for k in ("bank",):
            r.pop(k)
    if r.get("phantoms") is None:
        for k in ("phantoms", "size", "spacing", "phantom_seed"):
            r.pop(k)
    if r.get("interp") in (None, "linear"):  # the default: manifests written before --interp stay valid
        r.pop("interp", None)
    return _json_roundtrip(r)


def _prepare_out(out: str) -> None:
    """--out must be a folder that can be written (created if missing): checked before any work."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"--out {out}: exists and is not a folder")
    try:
        os.makedirs(out, exist_ok=True)
        probe = os.path.join(out, ".lsn_fast_write_test")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as e:
        raise ValueError(f"--out {out}: cannot write there ({e.strerror or e})") from None


def _check_existing(out: str, recipe: dict, n: int, overwrite: bool):
    """Compare --out's manifest with this run before building anything. Returns the manifest of a
    finished export of exactly this run (nothing to do), else None; raises ``ValueError`` naming
    the flags when this run would replace or shrink an export without --overwrite."""
    man_path = os.path.join(out, MANIFEST)
    if not os.path.isfile(man_path):
        stray = sorted(f for f in os.listdir(out) if f.startswith("shard-"))
        if stray and not overwrite:
            raise ValueError(f"--out {out}: holds {len(stray)} shard file(s) but no {MANIFEST}; pass --overwrite to "
                             "replace them, or choose another --out")
        return None
    try:
        with open(man_path) as f:
            old = json.load(f)
        old_recipe, old_n = old.get("recipe"), int(old["n"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        if overwrite:
            return None
        raise ValueError(f"--out {out}: its {MANIFEST} is unreadable; pass --overwrite to replace the export, or choose "
                         "another --out") from None
    if overwrite:
        return None
    if old_recipe is None:  # written through the API: export_shards compares the configurations
        return None
    if old_recipe != recipe:
        diff = sorted({k for k in set(old_recipe) | set(recipe) if old_recipe.get(k) != recipe.get(k)})
        was = ", ".join(f"{_flag(k)} {old_recipe.get(k)!r}" for k in diff)
        raise ValueError(f"--out {out}: holds an export of {old_n} samples made with other options ({was}); pass "
                         "--overwrite to replace it, or choose another --out")
    if old_n > n:
        raise ValueError(f"--out {out}: holds an export of {old_n} samples; --n {n} would drop {old_n - n} of them; "
                         f"pass --n {old_n} (or more) to keep them, or --overwrite")
    if old_n == n and old.get("complete"):
        for sh in old.get("shards", []):
            p = os.path.join(out, sh["file"])
            if not os.path.isfile(p) or os.path.getsize(p) != sh["bytes"]:
                return None  # a shard is missing or damaged: regenerate (export_shards checks sha256)
        return old
    return None


def run_synth(args) -> int:
    """``lsn-fast synth --n N --out DIR (--bank FILE | --phantoms N --size S)``: export shards.

    The options and --out are checked before any bank is built: an export made with other
    options, or holding more samples than --n, is refused without --overwrite; a finished
    export of the same options returns at once (its shards' sizes checked;
    :func:`verify_export` checks their sha256)."""
    import lsn_fast as lf

    from lsn_fast.synthesis.stream import bank_from_phantoms

    get = lambda name, default=None: getattr(args, name, default)  # noqa: E731
    if get("jsw") is not None:
        raise ValueError("--jsw: sweeps need --layers; the stream export takes --jsw-range LO:HI")
    if get("n") is None:
        raise ValueError("--n: give the number of samples to export (>= 1)")
    if (get("bank") is None) == (get("phantoms") is None):
        raise ValueError("--bank, --phantoms: give exactly one bank source (or --layers for a sweep)")
    if get("bank") is not None and not os.path.isfile(get("bank")):
        raise ValueError(f"--bank {get('bank')}: no such file")
    out = get("out")
    _prepare_out(out)
    recipe = _recipe(args)
    done = _check_existing(out, recipe, get("n"), get("overwrite", False))
    if done is not None:
        print(f"{out} already holds this export: {done['counts']['samples']} samples in {done['num_shards']} "
              f"{done['shard_format']} shard(s); nothing to do (manifest: {os.path.join(out, MANIFEST)})")
        return 0
    device = get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = getattr(torch, get("bank_dtype", "float32"))
    if get("bank") is not None:
        try:
            bank, stored = lf.LayerStack.load(get("bank"), return_flags=True)  # the flags `lsn-fast separate` stored
            bank = bank.to(dtype)
        except ValueError as e:
            raise ValueError(f"--bank {get('bank')}: not a readable bank of layer stacks "
                             f"({str(e).split(': ', 1)[-1]})") from None
    else:
        stored = None
        bank = bank_from_phantoms(get("phantoms"), get("size", 256), get("spacing", 0.1), get("phantom_seed", 0), dtype,
                                  progress=not get("no_progress", False))
    if torch.device(device).type == "cuda":
        bank = bank.to(device)
    det = lf.Detector(n0=get("n0", 1.0e4), blur_sigma_px=get("blur", 0.6), electronic_sigma=get("electronic", 2.0))
    quality = stored if stored is not None and stored.flagged is not None else None
    try:
        stream = JSWStream(
            bank, get("batch_size", 64), jsw_mm=get("jsw_range", (0.0, 3.0)), detector=det, seed=get("seed", 0),
            device=device, grade_balanced=get("grade_balanced", False),
            bone="random" if get("random_bone") else get("bone", "upper"), moves=get("moves", "subpixel"),
            interp=get("interp", "linear"), augment=True if get("augment") else None,
            out_dtype=getattr(torch, get("out_dtype", "float32")), backend=get("backend", "auto"),
            quality=quality, on_flagged="allow" if get("allow_flagged", False) else "refuse",
        )
    except ValueError as e:
        if str(e).startswith("quality:"):
            raise ValueError(f"--bank {get('bank')}: " + str(e).split(": ", 1)[1].split(" Pass on_flagged")[0]
                             + " Pass --allow-flagged to use them anyway") from None
        raise
    try:
        man = export_shards(stream, get("n"), out, shard_size=get("shard_size", 1024), format=get("format", "safetensors"),
                            progress=not get("no_progress", False), overwrite=get("overwrite", False), recipe=recipe)
    except ValueError as e:  # the API's own checks (an export written without a recipe), in flags
        msg = str(e).replace("pass overwrite=True", "pass --overwrite").replace("n=", "--n ")
        raise ValueError(msg) from None
    print(f"wrote {man['counts']['samples']} samples in {man['num_shards']} {man['shard_format']} shard(s) to {out} "
          f"({man['skipped']} already complete); manifest: {os.path.join(out, MANIFEST)}")
    return 0
