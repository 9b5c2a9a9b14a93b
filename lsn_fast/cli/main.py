"""The ``lsn-fast`` command line.

Exit codes: 0 success, 2 bad usage (argparse or invalid arguments, a device this torch does not
have, an input file that is missing or unreadable), 1 failure; the same with ``--debug``, which
adds the traceback. Errors are one line on stderr and name the command-line flag; argparse's
errors too (no usage dump: ``--help`` shows it). Every option's help shows its default, and every
subcommand takes ``--no-progress``.

Examples::

    lsn-fast demo                       # gallery PNGs in ./lsn_fast_demo/
    lsn-fast demo --out /tmp/demo --n 8 --size 256 --seed 3
    lsn-fast phantom --n 64 --out phantoms.safetensors --png phantoms.png
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
import traceback
import warnings

from lsn_fast.cli.common import UsageError, positive_float, positive_int
from lsn_fast.cli.separate import add_separate_parser
from lsn_fast.physics.moves import BONES, INTERPS, MOVES
from lsn_fast.utils.files import apply_umask, atomic_write


# ------------------------------------------------------------------------------- demo
def cmd_demo(args) -> int:
    import torch

    import lsn_fast as lf
    from lsn_fast import viz

    t0 = time.perf_counter()
    os.makedirs(args.out, exist_ok=True)
    print(f"lsn_fast {lf.__version__} demo: {args.n} phantoms of {args.size}x{args.size} px at {args.spacing} mm, seed {args.seed}")
    stack, info = lf.phantom.generate(args.n, size=args.size, spacing_mm=args.spacing, seed=args.seed,
                                      progress=not args.no_progress)
    det = lf.Detector()
    images = lf.compose(stack, detector=det, seed=args.seed)
    true_jsw = info["jsw_mm"]
    measured = lf.measure_jsw(stack)
    labels = [f"true {viz.fmt_mm(t)} mm\nmeasured {viz.fmt_mm(m)} mm" for t, m in zip(true_jsw, measured)]
    p1 = viz.image_grid(images, labels, stack.spacing_mm, os.path.join(args.out, "phantoms.png"),
                        ncols=min(4, args.n), title="finger-joint phantoms through the detector chain (attenuation, bone bright)")
    k = min(4, args.n)
    p2 = viz.layer_sheet(stack[torch.arange(k)], images[:k], os.path.join(args.out, "layers.png"),
                         titles=[f"JSW {float(j):.2f} mm" for j in true_jsw[:k]])
    targets = torch.tensor([0.0, 0.5, 1.0, 2.0, 3.0])
    one = stack[0]
    fam = lf.LayerStack.cat([one.with_jsw(float(j)) for j in targets])
    sweep_measured = lf.measure_jsw(fam)
    imgs, labels_mm = lf.synthesize(one, torch.zeros(len(targets), dtype=torch.int64), jsw_mm=targets, detector=det,
                                    seed=args.seed, sample_index=torch.arange(len(targets)))
    p3 = viz.jsw_sweep(imgs, sweep_measured, labels_mm, stack.spacing_mm, os.path.join(args.out, "jsw_sweep.png"))
    print("  sample  true JSW  measured   |err|")
    for i, (t, m) in enumerate(zip(true_jsw, measured)):
        print(f"  {i:6d}  {float(t):8.3f}  {float(m):8.3f}  {abs(float(t - m)):6.3f} mm")
    print("  sweep of sample 0: asked -> measured: " + ", ".join(f"{float(a):.2f}->{viz.fmt_mm(m)}" for a, m in zip(targets, sweep_measured)))
    print(f"wrote {p1}\nwrote {p2}\nwrote {p3}\nbackends: {lf.backends()}  ({time.perf_counter() - t0:.1f} s)")
    return 0


# ----------------------------------------------------------------------------- phantom
def cmd_phantom(args) -> int:
    import lsn_fast as lf
    from lsn_fast import viz

    if os.path.splitext(args.out)[1] not in (".safetensors", ".npz"):
        raise UsageError("--out must end in .safetensors or .npz")
    check_out_file(args.out)
    if args.png:
        check_out_file(args.png, "--png")
    stack, info = lf.phantom.generate(args.n, size=args.size, spacing_mm=args.spacing, seed=args.seed,
                                      texture=args.texture, progress=not args.no_progress)
    atomic_write(args.out, stack.save)  # never a partial bank at --out
    import json

    meta = {"n": args.n, "size": args.size, "spacing_mm": args.spacing, "seed": args.seed,
            "jsw_mm": [round(float(j), 5) for j in info["jsw_mm"]],
            "tilt_deg": [round(float(t), 3) for t in info["tilt_deg"]]}
    with open(args.out + ".json", "w") as f:
        json.dump(meta, f, indent=1)
    print(f"wrote {args.out} ({args.n} stacks) and {args.out}.json")
    if args.png:
        images = lf.compose(stack[: min(16, args.n)], detector=lf.Detector(), seed=args.seed)
        labels = [f"JSW {float(j):.2f} mm" for j in info["jsw_mm"][: images.shape[0]]]
        print("wrote", viz.image_grid(images, labels, stack.spacing_mm, args.png))
    return 0


def check_out_file(path: str, flag: str = "--out") -> None:
    """An output file's folder exists (or can be made) and can be written: checked before any work."""
    d = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UsageError(f"{flag} {path}: is a folder; give a file name")
    try:
        os.makedirs(d, exist_ok=True)
    except OSError as e:
        raise UsageError(f"{flag} {path}: cannot create its folder ({e.strerror or e})") from None
    if not os.access(d, os.W_OK):
        raise UsageError(f"{flag} {path}: its folder {d} is not writable")


# ------------------------------------------------------------------------------- synth
def check_sweep_fits(bank, entries, jsw, bone: str) -> None:
    """Refuse (``--jsw``) a JSW whose move takes the joint out of the frame: the layers moved to it
    must still measure that JSW (within max(0.1 mm, 1 px)); else the label would be a number the
    image does not show."""
    import torch

    import lsn_fast as lf

    tol = max(0.1, bank.spacing_mm)
    H, W = bank.shape[1:]
    for e in entries:
        one = bank[e]
        fam = lf.LayerStack.cat([one.with_jsw(float(j), bone=bone) for j in jsw])
        got = lf.measure_jsw(fam)
        bad = [(j, float(g)) for j, g in zip(jsw, got) if not (torch.isfinite(g) and abs(float(g) - j) <= tol)]
        if bad:
            ok = [j for j, g in zip(jsw, got) if torch.isfinite(g) and abs(float(g) - j) <= tol]
            j, g = bad[0]
            more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
            fit = f"; the largest asked JSW that fits is {max(ok):g} mm" if ok else ""
            raise UsageError(f"--jsw {j:g}{more}: at {j:g} mm the {bone} bone of stack {e} leaves the "
                             f"{H}x{W} px frame ({W * bank.spacing_mm:g} mm; the moved layers measure "
                             f"{'no JSW' if g != g else f'{g:.3f} mm'}){fit}")


def parse_jsw_sweep(v: str) -> list[float]:
    """``"lo:hi:step"`` (hi included) or ``"a,b,c"`` -> JSW values in mm (all >= 0)."""
    try:
        if ":" in v:
            lo, hi, step = (float(t) for t in v.split(":"))
            if step <= 0 or hi < lo:
                raise ValueError
            n = int(round((hi - lo) / step))
            vals = [lo + k * step for k in range(n + 1) if lo + k * step <= hi + 1e-9]
        else:
            vals = [float(t) for t in v.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO:HI:STEP (mm, STEP > 0) or a comma list, got {v!r}") from None
    if not vals or min(vals) < 0 or len(vals) > 10000:
        raise argparse.ArgumentTypeError(f"JSW values must be >= 0 mm (1..10000 of them), got {v!r}")
    return vals


def cmd_synth(args) -> int:
    if args.layers is None:
        from lsn_fast.synthesis import export

        return export.run_synth(args)
    import torch

    import lsn_fast as lf
    from lsn_fast import io, viz

    if args.jsw is None:
        raise UsageError("--layers needs --jsw LO:HI:STEP (or a comma list)")
    try:
        bank, (flagged, reasons) = lf.LayerStack.load(args.layers, return_flags=True)
    except (ValueError, FileNotFoundError) as e:
        raise UsageError(f"--layers {args.layers}: {str(e).split(': ', 1)[-1]}") from None
    entries = list(range(bank.batch_size)) if args.index is None else [args.index]
    if any(not 0 <= e < bank.batch_size for e in entries):
        raise UsageError(f"--index {args.index} is outside the {bank.batch_size} stacks of {args.layers}")
    bad = [] if flagged is None else [e for e in entries if bool(flagged[e])]
    if bad:
        why = "; ".join(reasons[bad[0]]) or "no reason recorded"
        if not args.allow_flagged:
            raise UsageError(f"--layers {args.layers}: stack(s) {bad[:8]} were flagged by their separation's quality "
                             f"gates (stack {bad[0]}: {why}); their families would not be trustworthy. Pass "
                             "--allow-flagged to synthesize them anyway")
        warnings.warn(f"synthesizing flagged stack(s) {bad[:8]} (--allow-flagged): {why}", stacklevel=1)
    targets = torch.tensor(args.jsw, dtype=torch.float32)
    det = lf.Detector(n0=args.n0, blur_sigma_px=args.blur, electronic_sigma=args.electronic)
    check_sweep_fits(bank, entries, args.jsw, args.bone)
    os.makedirs(args.out, exist_ok=True)
    from tqdm import tqdm

    all_imgs, all_labels, all_entries = [], [], []
    for e in tqdm(entries, desc="synth", unit="joint", disable=len(entries) < 2 or args.no_progress):
        idx = torch.full((len(targets),), e, dtype=torch.int64)
        sample_index = torch.arange(len(targets)) + e * len(targets)
        imgs, labels = lf.synthesize(bank, idx, jsw_mm=targets, detector=det, seed=args.seed, bone=args.bone,
                                     sample_index=sample_index, moves=args.moves, interp=args.interp)
        # the layers at each label (whole-pixel moves: the JSW reached), measured for the contact sheet
        fam = lf.LayerStack.cat([bank[e].with_jsw(float(j), bone=args.bone, interp=args.interp) for j in labels])
        measured = lf.measure_jsw(fam)
        viz.jsw_sweep(imgs, measured, targets, bank.spacing_mm, os.path.join(args.out, f"sweep_{e:04d}.png"), reached_mm=labels)
        if args.png:
            for k in range(len(targets)):
                png = io.write_png(os.path.join(args.out, f"joint{e:04d}_jsw{float(targets[k]):.3f}.png"), imgs[k, 0], bits=16)
                apply_umask(png)  # io.write_png writes through mkstemp (0600)
        all_imgs.append(imgs)
        all_labels.append(labels)
        all_entries.append(idx)
    from safetensors.torch import save_file

    out = os.path.join(args.out, "sweep.safetensors")
    atomic_write(out, lambda tmp: save_file({"images": torch.cat(all_imgs).contiguous(), "jsw_mm": torch.cat(all_labels), "bank_index": torch.cat(all_entries)},
              tmp, metadata={"spacing_mm": str(bank.spacing_mm), "seed": str(args.seed), "bone": args.bone,
                                "moves": args.moves, "interp": args.interp}))
    print(f"wrote {out} ({sum(len(i) for i in all_imgs)} images) and {len(entries)} contact sheet(s) in {args.out}")
    return 0


# ---------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    from lsn_fast._version import __version__

    p = Parser(
        prog="lsn-fast",
        description="Layer separation and adjustable-JSW synthesis of finger-joint radiographs.",
        epilog="examples:\n  lsn-fast demo --out demo/\n  lsn-fast phantom --n 64 --out bank.safetensors --png bank.png",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"lsn-fast {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors (the exit code stays the same) and "
                   "warnings in Python's own format")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    d = sub.add_parser("demo", help="phantoms, their layers and one joint re-synthesized at JSW 0-3 mm (PNG gallery)",
                       epilog="example: lsn-fast demo --out demo/ --n 8", formatter_class=HelpFormatter)
    d.add_argument("--out", default="lsn_fast_demo", help="output directory")
    d.add_argument("--n", type=positive_int, default=8, help="number of phantoms")
    d.add_argument("--size", type=positive_int, default=256, help="image size in px")
    d.add_argument("--spacing", type=positive_float, default=0.1, help="pixel spacing in mm")
    d.add_argument("--seed", type=int, default=0, help="random seed")
    d.set_defaults(func=cmd_demo)

    ph = sub.add_parser("phantom", help="generate a bank of phantom layer stacks (safetensors/npz)",
                        epilog="example: lsn-fast phantom --n 64 --out bank.safetensors --png bank.png",
                        formatter_class=HelpFormatter)
    ph.add_argument("--n", type=positive_int, default=64, help="number of phantoms")
    ph.add_argument("--size", type=positive_int, default=256, help="image size in px")
    ph.add_argument("--spacing", type=positive_float, default=0.1, help="pixel spacing in mm")
    ph.add_argument("--seed", type=int, default=0, help="random seed")
    ph.add_argument("--texture", type=float, default=1.0,
                    help="trabecular texture contrast scale (default 1; 0: textureless bone, all else unchanged)")
    ph.add_argument("--out", required=True, help="output file, .safetensors or .npz")
    ph.add_argument("--png", default=None, help="also write a contact sheet PNG")
    ph.set_defaults(func=cmd_phantom)

    add_separate_parser(sub)

    sy = sub.add_parser("synth", help="synthesize radiographs at new JSWs: a sweep of given layers, or shards from a stream",
                        epilog="examples:\n  lsn-fast synth --layers joint/layers.safetensors --jsw 0:3:0.25 --out sweep/\n"
                        "  lsn-fast synth --phantoms 256 --n 100000 --out shards/   (offline export, see --help)",
                        formatter_class=HelpFormatter)
    sy.add_argument("--layers", default=None, help="LayerStack file (.safetensors/.npz) to sweep (e.g. from lsn-fast separate)")
    sy.add_argument("--jsw", type=parse_jsw_sweep, default=None, help="JSW values in mm: LO:HI:STEP (HI included) or a,b,c")
    sy.add_argument("--index", type=int, default=None, help="only this stack of --layers (default: all)")
    sy.add_argument("--bone", choices=BONES, default="upper",
                    help="which bone moves (default upper; both: half each, the gap stays centred)")
    sy.add_argument("--moves", choices=MOVES, default="subpixel",
                    help="subpixel: the exact shift, interpolated with --interp (default); integer: whole-pixel moves "
                         "(exact copies of the bone, e.g. for layers that carry their noise), labelled with the JSW reached")
    sy.add_argument("--interp", choices=INTERPS, default="linear",
                    help="resampling of sub-pixel moves: linear (default) or cubic (Keys)")
    sy.add_argument("--allow-flagged", action="store_true",
                    help="with --layers: synthesize stacks that `lsn-fast separate` flagged (refused by default)")
    sy.add_argument("--n0", type=positive_float, default=1.0e4, help="photons per pixel in air (default 1e4)")
    sy.add_argument("--blur", type=float, default=0.6, help="detector blur sigma in px (default 0.6)")
    sy.add_argument("--electronic", type=float, default=2.0, help="electronic noise sigma in counts (default 2)")
    sy.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    sy.add_argument("--png", action="store_true", help="also write one 16-bit PNG per image")
    sy.add_argument("--out", required=True, help="output directory")
    try:
        from lsn_fast.synthesis import export as _export

        _export.add_synth_arguments(sy)
    except ImportError:  # the stream exporter is optional
        pass
    sy.set_defaults(func=cmd_synth)

    _add_lazy(sub, "train-lsn", "train the Layer Separation Network (stage 1 phantoms, stage 2 radiographs)",
              "lsn_fast.model.train", "add_train_arguments", "run_train",
              "examples:\n  lsn-fast train-lsn --stage 1 --model small --steps 3000 --crop 64 --out runs/lsn_s1\n"
              "  lsn-fast train-lsn --stage 2 --data my_images/ --init runs/lsn_s1 --out runs/lsn_s2")
    _add_lazy(sub, "eval-lsn", "evaluate an LSN on held-out phantoms (PSNR, SSIM, recomposition, JSW MAE)",
              "lsn_fast.model.evaluate", "add_eval_arguments", "run_eval",
              "example:\n  lsn-fast eval-lsn --n 32 --size 256")
    _add_lazy(sub, "bench", "benchmark the fused synthesis operator against eager PyTorch, kornia, torch.compile",
              "lsn_fast.bench", "add_bench_arguments", "run_bench",
              "examples:\n  lsn-fast bench --quick\n"
              "  lsn-fast bench --device cpu --sizes 256 --batches 64 --bank 64 --dtypes fp32,bf16\n"
              "  lsn-fast bench --device cuda --sizes 256,512 --batches 64,256,1024 --bank 64,4096 --blur 0,0.6\n"
              "prints ms, samples/s and floor/time per implementation; writes results.md/.csv/.json/.png")
    ex = sub.add_parser("experiment", help="reproducible experiments (five-percent: the paper's 5%%-of-the-labels claim)",
                        epilog="examples:\n  lsn-fast experiment five-percent --quick --out five_percent_quick/\n"
                        "  lsn-fast experiment five-percent --seeds 0 1 2 --out five_percent/",
                        formatter_class=HelpFormatter)
    exsub = ex.add_subparsers(dest="experiment", metavar="EXPERIMENT", required=True)
    _add_lazy(exsub, "five-percent", "train JSW/JSN/SvdH tasks on 100%%, 5%%, 5%%+LSN families, 5%%+augmentation",
              "lsn_fast.experiments.five_percent", "add_experiment_arguments", "run_experiment",
              "example:\n  lsn-fast experiment five-percent --quick")
    _add_lazy(exsub, "stage2-transfer", "does LSN stage 2 adapt a stage-1 model to an unseen phantom setting? (vs more stage 1)",
              "lsn_fast.experiments.stage2_transfer", "add_stage2_arguments", "run_stage2_experiment",
              "example:\n  lsn-fast experiment stage2-transfer --steps 300 --eval-every 50 --out stage2_transfer/")
    _finish(p)
    return p


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error (``lsn-fast synth: error: argument --n: ...``) instead of the
    usage dump; exit code 2. Subparsers inherit the class."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Examples kept as written; every option's help ends with its default (unless it says it)."""

    def _get_help_string(self, action):
        text = action.help or ""
        d = action.default
        if (not action.option_strings or d is None or d is False or d is argparse.SUPPRESS or "%(default)" in text
                or "default" in text.lower() or isinstance(action, argparse._HelpAction)):
            return text
        return (text + " " if text else "") + "(default: %(default)s)"


NO_PROGRESS_HELP = "no progress bars"
# help for the options that their subcommand's module left without one (the same meaning everywhere)
FALLBACK_HELP = {
    "--batch": "batch size", "--lr": "learning rate", "--seed": "random seed", "--model": "LSN size",
    "--size": "image size in px", "--phantom-size": "phantom size in px", "--ckpt-every": "checkpoint every N steps",
    "--threads": "torch CPU threads (default: torch's own)", "--device": "cpu or cuda[:N] (default: cuda if available)",
    "--eval-every": "evaluate every N steps", "--crop": "training crop in px", "--no-plot": "do not write the plot",
    "--warmup": "untimed calls before timing", "--repeats": "timed calls per row", "--copy-mb": "size of the copy-bandwidth test in MiB",
    "--out": "output directory", "--no-progress": NO_PROGRESS_HELP,
}


def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sp in action.choices.items():
                yield name, sp
                yield from _subparsers(sp)


def _finish(parser) -> None:
    """Every subcommand: the help formatter, a help text on every option, ``--no-progress``."""
    for _, sp in _subparsers(parser):
        sp.formatter_class = HelpFormatter
        if any(isinstance(a, argparse._SubParsersAction) for a in sp._actions):
            continue  # a group of subcommands (experiment)
        opts = {o for a in sp._actions for o in a.option_strings}
        if "--no-progress" not in opts:
            sp.add_argument("--no-progress", action="store_true", help=NO_PROGRESS_HELP)
        for a in sp._actions:
            if not a.help and a.option_strings:
                a.help = next((FALLBACK_HELP[o] for o in a.option_strings if o in FALLBACK_HELP), None)


def _add_lazy(sub, name, help_text, module, add_fn, run_fn, epilog):
    """A sub-command whose arguments and runner live in another module (imported on use)."""
    import importlib

    sp = sub.add_parser(name, help=help_text, epilog=epilog, formatter_class=HelpFormatter)
    mod = importlib.import_module(module)
    getattr(mod, add_fn)(sp)
    sp.set_defaults(func=lambda args: getattr(importlib.import_module(module), run_fn)(args))


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: 2 on bad usage, 0 after --help
        return int(e.code or 0)
    if args.command is None:
        parser.print_help()
        return 2
    args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded by commands that log their command line
    with warnings.catch_warnings():
        if not args.debug:  # one line per warning, like the errors (--debug: Python's own format)
            warnings.showwarning = lambda msg, cat, *a, **k: print(
                f"lsn-fast {args.command}: warning: {msg}", file=sys.stderr)
        return _run_command(args)


# exceptions that mean bad usage (exit 2): a wrong argument, a missing or unreadable input
USAGE_ERRORS = (UsageError, ValueError, TypeError, FileNotFoundError, IsADirectoryError, NotADirectoryError,
                PermissionError)
# a missing optional package -> the extra that installs it
EXTRAS = {"triton": "triton", "pydicom": "io", "tifffile": "io", "kornia": "bench", "pytest_benchmark": "bench"}


def exit_code(e: BaseException) -> int:
    """2 for bad usage, 1 for a failure (whatever ``--debug`` says)."""
    return 2 if isinstance(e, USAGE_ERRORS) else 1


def check_device_flag(args) -> None:
    """``--device`` names a device this torch has (else bad usage, exit 2, before any work)."""
    dev = getattr(args, "device", None)
    if not isinstance(dev, str) or not dev:
        return
    import torch

    try:
        d = torch.device(dev)
    except (RuntimeError, ValueError):
        raise UsageError(f"--device {dev}: not a device name (cpu, cuda, cuda:N)") from None
    if d.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {dev}: this torch ({torch.__version__}) sees no CUDA device; use --device cpu")
        if d.index is not None and d.index >= torch.cuda.device_count():
            raise UsageError(f"--device {dev}: only {torch.cuda.device_count()} CUDA device(s) here")


def flag_message(e: BaseException, args) -> str:
    """The error text with a leading API argument name (``steps: ...``) replaced by its flag."""
    msg = str(e) or type(e).__name__
    if isinstance(e, FileNotFoundError) and e.filename and not msg.startswith("--"):
        msg = f"no such file or directory: {e.filename}"
    m = re.match(r"([A-Za-z_][A-Za-z0-9_]*): ", msg)
    flags = getattr(args, "api_flags", None) or {}
    if m and m.group(1) in flags:
        return flags[m.group(1)] + msg[len(m.group(1)):]
    if m and m.group(1) in vars(args) and not m.group(1).startswith("_"):
        return "--" + m.group(1).replace("_", "-") + msg[len(m.group(1)):]
    return msg


def _run_command(args) -> int:
    name = args.command + (f" {args.experiment}" if getattr(args, "experiment", None) else "")
    try:
        check_device_flag(args)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"lsn-fast {name}: interrupted", file=sys.stderr)
        return 1
    except ModuleNotFoundError as e:
        if args.debug:
            traceback.print_exc()
        extra = EXTRAS.get((e.name or "").split(".")[0])
        hint = f": pip install 'lsn_fast[{extra}]'" if extra else ""
        print(f"lsn-fast {name}: failed: this needs the package {e.name!r}{hint}", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - one-line message, traceback with --debug, same exit code
        if args.debug:
            traceback.print_exc()
        code = exit_code(e)
        kind = "error" if code == 2 else f"failed: {type(e).__name__}"
        print(f"lsn-fast {name}: {kind}: {flag_message(e, args)}", file=sys.stderr)
        return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
