"""Does stage 2 help where stage 1 never looked? (issue 4, item 2: ``lsn-fast experiment stage2-transfer``)

Stage 2 trains on radiographs *without* layer ground truth (what users own): reconstruction,
bone-mask supervision, random-shift consistency and the soft-tissue discriminator. This
experiment measures whether that adapts a stage-1 model to a setting it was not trained on:

* **the unseen setting** (:func:`shifted_setting`): phantoms with wider tilt (±20°), bone
  attenuation ×0.8–1.2 and soft tissue ×0.9–1.1 per sample (other bone density and soft-tissue
  thickness than the NIST/ICRU values stage 1 uses), a blurrier, lower-dose detector (blur 0.8–1.6
  px, n0 3e3–5e4). Its layers are known here (phantoms), but stage 2 only sees images + masks;
* **arms**: from the same initial weights, (a) stage 2 on ``n_train`` images of that setting,
  (b) the control: the same number of further *stage-1* steps (phantoms of the training setting),
  so a gain of (a) over (b) is the adaptation, not just more training;
* **metric**: every ``eval_every`` steps, both arms are scored on ``n_test`` held-out images of the
  unseen setting (disjoint seed) with :func:`lsn_fast.evaluate.score` (bone PSNR / SSIM,
  recomposition error vs the clean attenuation, JSW MAE from the separated layers).

Writes ``results.json``, ``results.md`` (before / after table) and ``curves.png`` (metrics vs step
for both arms, and the training losses).
"""

from __future__ import annotations

import json
import os
import time

import torch

from lsn_fast.synthesis.compose import compose
from lsn_fast.physics.layers import LayerStack
from lsn_fast.model.settings import SETTINGS, SHIFTED_DETECTOR, check_setting, setting_sample, shifted_setting

__all__ = ["shifted_setting", "run_stage2_transfer", "add_stage2_arguments", "run_stage2_experiment"]


def run_stage2_transfer(init: str | None = None, *, steps: int = 300, eval_every: int = 50, n_train: int = 64,
                        n_test: int = 16, size: int = 256, crop: int = 64, batch: int = 8, lr: float = 5e-4,
                        seed: int = 0, out: str = "stage2_transfer", control: bool = True, device=None,
                        progress: bool = True, recon_target: str = "teacher", anchor: float = 0.0,
                        setting: str = "shifted", loss_weights: dict | None = None) -> dict:
    """Run the experiment (module docstring); returns the results dict also written to ``out``."""
    from lsn_fast.model.evaluate import score
    from lsn_fast.model.lsn import DEFAULT_WEIGHTS, separate
    from lsn_fast.model.train import TrainConfig, Trainer, write_demo_stage2_data

    for name, v in (("steps", steps), ("eval_every", eval_every), ("n_train", n_train), ("n_test", n_test)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name}: expected a positive int, got {v!r}")
    check_setting(setting)
    init = init or DEFAULT_WEIGHTS
    data_dir = os.path.join(out, "data")
    arms = {"stage2": TrainConfig(stage=2, steps=steps, crop=crop, batch=batch, lr=lr, seed=seed, data=data_dir,
                                  init=init, device=device, progress=False, warmup=min(20, steps),
                                  recon_target=recon_target, anchor=anchor, loss_weights=dict(loss_weights or {}))}
    if control:
        arms["control_stage1"] = TrainConfig(stage=1, steps=steps, crop=crop, batch=batch, lr=lr, seed=seed + 1,
                                             init=init, device=device, progress=False, warmup=min(20, steps),
                                             pool=min(32, 4 * batch), refresh=max(50, eval_every), phantom_size=size)
    for cfg in arms.values():  # bad options fail before any data is written
        cfg.validate()
    os.makedirs(out, exist_ok=True)
    t0 = time.perf_counter()
    # training images of the unseen setting (stage 2 input format), and a disjoint test set
    write_demo_stage2_data(data_dir, n=n_train, size=size, seed=seed * 1000 + 777, setting=setting)
    te_truth, te_images, _ = shifted_setting(n_test, size, seed=seed * 1000 + 778, setting=setting)
    from lsn_fast.physics.jsw import measure_jsw

    te_jsw = measure_jsw(te_truth)

    def evaluate_model(model) -> dict:
        model.eval()
        pred = separate(te_images.to(next(model.parameters()).device), model, te_truth.spacing_mm).to("cpu")
        r = score(pred, te_truth, te_jsw, te_images)
        return {k: r[k] for k in ("bone_psnr_db", "bone_ssim", "soft_psnr_db", "recomposition_rel", "jsw_mae_mm",
                                  "jsw_unmeasured")}

    curves: dict = {}
    losses: dict = {}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=steps * len(arms), desc="stage2-transfer", unit="step", dynamic_ncols=True)
    for name, cfg in arms.items():
        tr = Trainer(cfg)
        curves[name] = [{"step": 0, **evaluate_model(tr.model)}]
        while tr.step_idx < steps:
            tr.step()
            if bar is not None:
                bar.update(1)
            if tr.step_idx % eval_every == 0 or tr.step_idx == steps:
                curves[name].append({"step": tr.step_idx, **evaluate_model(tr.model)})
        losses[name] = [{"step": h["step"], "loss": h["loss"]} for h in tr.history]
        if name == "stage2":
            from lsn_fast.model.lsn import save_weights

            save_weights(tr.model, os.path.join(out, "stage2_model.safetensors"), {"train_stage": "2", "init": str(init)})
    if bar is not None:
        bar.close()
    res = {"init": str(init), "steps": steps, "eval_every": eval_every, "n_train": n_train, "n_test": n_test,
           "size": size, "crop": crop, "batch": batch, "lr": lr, "seed": seed, "setting": setting, "setting_spec": SETTINGS[setting],
           "recon_target": recon_target, "anchor": anchor, "loss_weights": dict(loss_weights or {}),
           "curves": curves, "losses": losses,
           "seconds": time.perf_counter() - t0}
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(res, f, indent=1)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(format_results(res) + "\n")
    try:
        plot_results(res, os.path.join(out, "curves.png"))
    except Exception as e:  # noqa: BLE001 - the numbers are written; a plot failure is not fatal
        print(f"plot failed: {type(e).__name__}: {e}")
    return res


_METRICS = (("bone_psnr_db", "bone PSNR (dB)", "{:.2f}"), ("bone_ssim", "bone SSIM", "{:.4f}"),
            ("soft_psnr_db", "soft PSNR (dB)", "{:.2f}"), ("recomposition_rel", "recomposition (rel.)", "{:.4f}"),
            ("jsw_mae_mm", "JSW MAE (mm)", "{:.4f}"), ("jsw_unmeasured", "JSW unmeasured", "{}"))


def format_results(res: dict) -> str:
    c = res["curves"]
    first = c["stage2"][0]
    lines = [f"# stage-2 transfer: {res['n_test']} held-out images of the unseen setting "
             f"'{res.get('setting', 'shifted')}', {res['size']}² px",
             "", f"init `{os.path.basename(res['init'])}`; {res['steps']} steps per arm, crop {res['crop']}, batch "
             f"{res['batch']}, lr {res['lr']}, recon target {res.get('recon_target')}, anchor {res.get('anchor')}, "
             f"loss weights {res.get('loss_weights') or 'default'}, "
             f"{res['n_train']} stage-2 training images; {res['seconds']:.0f} s", "",
             "| metric | initial | " + " | ".join(f"after {k}" for k in c) + " |",
             "|---|---:|" + "---:|" * len(c)]
    for key, label, fmt in _METRICS:
        lines.append(f"| {label} | {fmt.format(first[key])} | " + " | ".join(fmt.format(c[k][-1][key]) for k in c) + " |")
    return "\n".join(lines)


def plot_results(res: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [m for m in _METRICS if m[0] != "jsw_unmeasured"]
    fig, axes = plt.subplots(1, len(keys) + 1, figsize=(4 * (len(keys) + 1), 3.4))
    for ax, (key, label, _) in zip(axes, keys):
        for arm, pts in res["curves"].items():
            ax.plot([p["step"] for p in pts], [p[key] for p in pts], marker="o", ms=3, label=arm)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    ax = axes[-1]
    for arm, pts in res["losses"].items():
        ax.plot([p["step"] for p in pts], [p["loss"] for p in pts], lw=0.8, label=arm)
    ax.set_yscale("log")
    ax.set_title("training loss (each arm its own loss)", fontsize=9)
    ax.set_xlabel("step")
    ax.legend(fontsize=7)
    fig.suptitle("LSN stage 2 on an unseen phantom setting vs more stage 1 (held-out images of that setting)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------------ CLI
def add_stage2_arguments(p) -> None:
    p.add_argument("--init", default=None, help="stage-1 weights (default: the shipped lsn_default.safetensors)")
    p.add_argument("--steps", type=int, default=300, help="training steps per arm")
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--n-train", type=int, default=64, help="stage-2 training images (unseen setting)")
    p.add_argument("--n-test", type=int, default=16, help="held-out images of the unseen setting")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-control", action="store_true", help="skip the more-stage-1 control arm")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default=None)
    from lsn_fast.model.train import add_loss_arguments

    add_loss_arguments(p, stages=(2,))
    p.add_argument("--setting", choices=sorted(SETTINGS), default="shifted",
                   help="the unseen setting: 'shifted' (bone ×0.8–1.2, soft ×0.9–1.1, blurrier lower-dose detector) or "
                        "'ra' (that detector with osteopenic bone ×0.45–0.65 and swollen soft tissue ×1.3–1.7)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--out", default="stage2_transfer")


def run_stage2_experiment(args) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    res = run_stage2_transfer(args.init, steps=args.steps, eval_every=args.eval_every, n_train=args.n_train,
                              n_test=args.n_test, size=args.size, crop=args.crop, batch=args.batch, lr=args.lr,
                              seed=args.seed, out=args.out, control=not args.no_control, device=args.device,
                              recon_target=args.recon_target, anchor=args.anchor, setting=args.setting,
                              loss_weights=dict(args.loss_weight), progress=not args.no_progress)
    print(format_results(res))
    print("wrote", args.out)
    return 0
