"""How far the run-time estimate is from what a run takes: its step and evaluation costs against the real ones, timed
back to back (so that a loaded machine's drift hits both), and optionally a whole run against its estimate.

    python -m benchmarks.estimate_check --config assets/configs/demo_cpu.yaml --reps 4 [--threads 1] [--run]

Per repetition it prints the run's own training step (the trainer's `TrainStep` on the model with the speed
shortcuts, at `train.batch_size`) and one evaluation batch (64 on CPU), each the faster of two, beside:
- `fit`: what `measure_throughput` (timed at batch 2 and 8, as the app does) predicts for them;
- `single`: the plain model's cross-entropy step timed at batch 4 alone, scaled per image (the estimate before the
  fit: it charges a step's fixed part, some thousand operator calls and their thread synchronisation, to 4 images).
Then the median ratio of each to the real cost. `--run` also trains the config (setup, training, evaluations,
probes, checkpoint) and prints its wall time beside `estimate_run_time`'s total. Prints the load average: on a
shared machine these are figures of that moment, not of the method.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import tempfile
import time
from dataclasses import replace

import torch

import gist_engine as ge
from gist_engine import speed
from gist_engine.train import TrainStep, make_optimizer, param_groups


def _faster(fn, n: int = 2) -> float:
    best = float("inf")
    for _ in range(n):
        tick = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - tick)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="assets/configs/demo_cpu.yaml")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--images", type=int, default=None, help="images in the dataset (default: counted)")
    parser.add_argument("--reps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: chosen as a run would)")
    parser.add_argument("--run", action="store_true", help="also train the config and compare the whole run")
    args = parser.parse_args()
    cfg = replace(ge.load_run_config(args.config), num_classes=args.classes)
    tc, dev = cfg.train, torch.device("cpu")
    model = ge.build_model(cfg, seed=tc.seed).eval()
    real = copy.deepcopy(model)
    speed.install(real, dev, cpu_threads=args.threads)
    opt = make_optimizer(param_groups(real, tc.weight_decay), tc.lr, dev)
    step = TrainStep(real, opt, [p for g in opt.param_groups for p in g["params"]], dev, "fp32", tc.grad_clip,
                     gist=cfg.gist)
    size, batch, eval_batch = model.image_size, tc.batch_size, speed.eval_batch_size(dev, tc.eval_batch_size)
    x, y, xe = torch.randn(batch, 3, size, size), torch.zeros(batch, dtype=torch.long), torch.randn(eval_batch, 3,
                                                                                                     size, size)
    x4, y4 = x[:4], y[:4]
    rows = []
    for rep in range(args.reps):
        fit = ge.measure_throughput(model, min(8, batch), "cpu", args.threads, cfg)
        model.train()  # the plain model's cross-entropy step at batch 4 (warm-up pass first)
        ce = lambda: torch.nn.functional.cross_entropy(model(x4).cls_logits, y4).backward()  # noqa: E731
        ce()
        single_step = _faster(ce) / 4 * batch
        model.zero_grad(set_to_none=True)
        model.eval()
        with torch.inference_mode():
            single_eval = _faster(lambda: model(x4)) / 4 * eval_batch
        real.train()
        step(x, y)
        actual_step = _faster(lambda: step(x, y))
        real.eval()
        with torch.inference_mode():
            actual_eval = _faster(lambda: real(xe))
        row = {"rep": rep, "load": round(os.getloadavg()[0], 1), "threads": torch.get_num_threads(),
               "step_actual_s": round(actual_step, 3),
               "step_fit_s": round(fit["train_s_per_step"] + batch * fit["train_s_per_image"], 3),
               "step_single_s": round(single_step, 3), "eval_actual_s": round(actual_eval, 3),
               "eval_fit_s": round(fit["eval_s_per_batch"] + eval_batch * fit["eval_s_per_image"], 3),
               "eval_single_s": round(single_eval, 3)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    for what in ("step", "eval"):
        for how in ("fit", "single"):
            ratios = [r[f"{what}_{how}_s"] / r[f"{what}_actual_s"] for r in rows]
            print(f"{what} {how} / actual: median {statistics.median(ratios):.2f} "
                  f"(each: {', '.join(f'{v:.2f}' for v in ratios)})")
    if args.run:
        tick = time.perf_counter()
        tp = ge.measure_throughput(model, min(8, batch), "cpu", args.threads, cfg)
        sizes = ge.split_sizes(cfg.data)  # the dataset's images, as the app's dataset list gives them
        images = args.images or sizes["train"] + sizes["val"] + sizes["test"]
        est = ge.estimate_run_time(cfg, {**tp, "build_s": 0.0}, images, sizes["classes"])
        load = os.getloadavg()
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as folder:
            result = ge.Trainer(cfg, run_dir=folder).run()
        wall = time.perf_counter() - start
        print(json.dumps({"config": args.config, "status": result.status, "estimate_s": round(est["seconds"], 1),
                          "measured_s": round(wall, 1), "ratio": round(est["seconds"] / wall, 2),
                          "measuring_s": round(start - tick, 1), "load_before": [round(v, 1) for v in load],
                          "load_after": [round(v, 1) for v in os.getloadavg()], "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
