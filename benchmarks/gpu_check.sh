#!/usr/bin/env bash
# The GPU checks of issue #8 (speed), in ONE call on a lent GPU, about 7 minutes (the parts' limits add up to
# 600 s: give the call timeout_s 600, or drop a part with PARTS):
#   0. the CUDA-only tests (CUDA graph replays equal eager steps; the trainer with and without graphs);
#   1. a VTAB-1k-protocol-shaped run through the Trainer on synthetic data, with train.cuda_graph on and off:
#      1,000 training and 10,000 test random images at 224 px already on the GPU, adapter (gist) + GIST, batch 64,
#      100 epochs, 10 warm-up epochs, test evaluation every 10 epochs (target: <= 60 s wall time, model build
#      included);
#   2. the bench as the trainer runs (bf16 frozen weights), then ours plain eager and with CUDA graphs: ViT-B/16
#      (random init) at 224 px, batch 128, bf16; every method with GIST off/on and the plain timm + hooked adapter /
#      timm + peft LoRA references (targets: adapter+gist >= 2x the eager reference, GIST overhead on adapter
#      <= 2%);
#   3. the bench with --compile for the adapter;
#   4. ours with --stock-modules (timm's attention, autocast's float32 LayerNorms): what the packed-qkv attention
#      and the bf16 frozen norms give, against part 2's rows;
#   5. (optional, PARTS="... profile") where the step's time goes: benchmarks/gpu_profile.py for adapter+GIST;
#   6. (optional, PARTS="... autotune") the adapter compiled with max-autotune-no-cudagraphs (GEMM epilogue fusion;
#      minutes of autotuning first).
# Each part has its own time limit; the JSON files are rewritten as results come, so a part cut short still
# reports what it measured. PARTS picks parts (default "tests vtab bench stock eager graph compile"; "profile" adds
# the kernel profile, "autotune" the max-autotune compile); FROZEN sets train.frozen_dtype of the VTAB and compiled runs (default auto: bf16 on CUDA);
# VTAB_GRAPHS lists the train.cuda_graph settings the VTAB run is timed with (default "true false").
#
# Usage (repository root):  bash benchmarks/gpu_check.sh      results go to $OUT (or /tmp/gpu_check_out)
#   DRY_RUN=1 bash benchmarks/gpu_check.sh   the same steps on the CPU with tiny sizes (checks the script, not speed)
# Measured on one H200 (2026-11-28): see README.md, "Speed".
# On the device machine of this workplace: python3 is its own PyTorch (torch, timm, peft, pandas, ... are there);
# other packages travel as wheels in .whl (see the device README): the script installs .whl/*.whl when the folder
# exists, and stands in for platformdirs (two functions) when it is missing.
set -uo pipefail
OUT="${OUT:-/tmp/gpu_check_out}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
if [ -d .whl ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# platformdirs is the one runtime dependency the device image lacked (2026-11): a two-function stand-in suffices here
if ! "$PY" -c "import platformdirs" 2>/dev/null; then
  mkdir -p /tmp/gist_shim
  printf '%s\n' 'import os' \
    'def user_cache_dir(appname=None, *args, **kwargs): return os.path.join(os.path.expanduser("~/.cache"), appname or "")' \
    'def user_data_dir(appname=None, *args, **kwargs): return os.path.join(os.path.expanduser("~/.local/share"), appname or "")' \
    > /tmp/gist_shim/platformdirs.py
  export PYTHONPATH="$PYTHONPATH:/tmp/gist_shim"
fi

if [ "${DRY_RUN:-0}" = 1 ]; then
  DEV=cpu; SMALL=(--backbone test_vit --image-size 32 --batch-size 4 --repeats 1 --steps 1 --warmup 1)
  COMPILE=(--compile-backend aot_eager)
else
  DEV=cuda; SMALL=(); COMPILE=(--repeats 3 --warmup 3)
fi
export DRY_RUN="${DRY_RUN:-0}"

PARTS=" ${PARTS:-tests vtab bench stock eager graph compile} "
FROZEN="${FROZEN:-auto}"; export FROZEN
T_BENCH="${T_BENCH:-120}"; T_VTAB="${T_VTAB:-90}"; T_COMPILE="${T_COMPILE:-120}"
part() { [[ "$PARTS" == *" $1 "* ]]; }

{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || echo "no nvidia-smi"
  "$PY" -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__, 'cuda', torch.cuda.is_available())"
  "$PY" -c "import peft; print('peft', peft.__version__)" || echo "peft missing: the LoRA reference is skipped"
  "$PY" -c "import gist_engine" || { echo "gist_engine does not import: carry the missing wheels in .whl"; exit 3; }
} 2>&1 | tee "$OUT/log.txt"
[ "${PIPESTATUS[0]}" = 0 ] || exit 3

part tests && { echo "== the CUDA tests: graph replays vs eager steps, the trainer with and without graphs (limit 60 s)"
timeout 60 "$PY" -m pytest -q -p no:cacheprovider tests/train/test_step.py tests/speed/test_precision.py 2>&1 | tail -15 | tee -a "$OUT/log.txt"; }

VTAB_PY="$(mktemp --suffix .py)"
cat > "$VTAB_PY" <<'PY'
"""1,000 train / 10,000 test random 224 px images on the GPU, 100 epochs, eval every 10: wall time of the run."""
import json
import os
import sys
import time

import torch

from gist_engine import Trainer
from gist_engine.data import DatasetSplits, TensorSplit

dry = os.environ.get("DRY_RUN") == "1"  # CPU, tiny: checks the script only
dev, size, n_train, n_test, epochs = ("cpu", 32, 40, 40, 2) if dry else ("cuda", 224, 1000, 10_000, 100)
sync = (lambda: None) if dry else torch.cuda.synchronize
wall = time.perf_counter()
g = torch.Generator(device=dev).manual_seed(0)
classes = 100
names = [f"c{i}" for i in range(classes)]
half = (0.5, 0.5, 0.5)


def split(n: int) -> TensorSplit:
    x = torch.randint(0, 256, (n, 3, size, size), generator=g, device=dev, dtype=torch.uint8)
    y = torch.arange(n) % classes
    return TensorSplit(x, y, names, half, half, dev)


data = DatasetSplits(train=split(n_train), val=None, test=split(n_test), class_names=names,
                     info={"name": "synthetic"})
sync()
data_s = time.perf_counter() - wall
cfg = {"backbone": "test_vit" if dry else "vit_base_patch16_224", "pretrained": False, "image_size": size,
       "method": "adapter", "method_args": {"variant": "gist"}, "gist": {"enabled": True},
       "train": {"epochs": epochs, "batch_size": 64, "lr": 1e-3, "weight_decay": 1e-4, "warmup_epochs": epochs / 10,
                 "eval_every": epochs // 10 or 1, "device": dev,
                 "frozen_dtype": os.environ.get("FROZEN", "fp32"), "precision": "bf16",
                 "cuda_graph": os.environ.get("GRAPH", "false") == "true"}}
evals = []


class Timer:
    def on_train_start(self, trainer): self.t = time.perf_counter()
    def on_step_end(self, trainer, step, metrics): pass
    def on_eval_end(self, trainer, step, metrics): evals.append(time.perf_counter())
    def on_train_end(self, trainer, result): pass


trainer = Trainer(cfg, data=data, callbacks=[Timer()])
eval_s = []
real_evaluate = trainer.evaluate


def timed_evaluate(*args, **kwargs):
    tick = time.perf_counter()
    metrics = real_evaluate(*args, **kwargs)  # ends with a read-back: the time is the GPU's
    eval_s.append(round(time.perf_counter() - tick, 3))
    return metrics


trainer.evaluate = timed_evaluate
result = trainer.run()
sync()
total = time.perf_counter() - wall
out = {"status": result.status, "wall_s_with_model_build": total - data_s, "wall_s_total": total,
       "synthetic_data_s": data_s, "train_seconds": result.train_seconds,
       "images_per_second_train": result.images_per_second, "steps": result.steps, "evals": len(evals),
       "peak_mem_gb": 0 if dry else torch.cuda.max_memory_allocated() / 2**30,
       "frozen_dtype": cfg["train"]["frozen_dtype"], "cuda_graph": trainer.train_step.graphed,
       "graph_error": trainer.train_step.graph_error, "eval_seconds": eval_s, "target_le_60s": total - data_s <= 60,
       "device": "cpu (dry run)" if dry else torch.cuda.get_device_name(),
       "error": result.error}
print(json.dumps(out, indent=2))
json.dump(out, open(sys.argv[1], "w"), indent=2)
PY
part vtab && for GRAPH in ${VTAB_GRAPHS:-true false}; do
  echo "== VTAB-1k-shaped synthetic run, frozen weights $FROZEN, train.cuda_graph $GRAPH (limit ${T_VTAB} s)"
  GRAPH="$GRAPH" timeout "$T_VTAB" "$PY" "$VTAB_PY" "$OUT/vtab_graph_$GRAPH.json" 2>&1 | tee -a "$OUT/log.txt"
done

part bench && { echo "== bench, as the trainer runs (limit ${T_BENCH} s)"
timeout "$T_BENCH" "$PY" -m benchmarks.bench --device "$DEV" "${SMALL[@]}" --json-out "$OUT/bench_eager.json" 2>&1 \
  | tee -a "$OUT/log.txt"; }

part stock && { echo "== bench, ours with timm's attention and float32 autocast LayerNorms (limit 40 s)"
timeout 40 "$PY" -m benchmarks.bench --device "$DEV" "${SMALL[@]}" --methods adapter --stock-modules \
  --no-reference --json-out "$OUT/bench_stock.json" 2>&1 | tee -a "$OUT/log.txt"; }

part eager && { echo "== bench, ours plain eager: frozen weights fp32 (limit 40 s)"
timeout 40 "$PY" -m benchmarks.bench --device "$DEV" "${SMALL[@]}" --methods adapter --frozen-dtype fp32 \
  --no-reference --json-out "$OUT/bench_plain_eager.json" 2>&1 | tee -a "$OUT/log.txt"; }

part graph && { echo "== bench, ours with CUDA graph replays (limit 40 s)"
timeout 40 "$PY" -m benchmarks.bench --device "$DEV" "${SMALL[@]}" --methods adapter --cuda-graph \
  --no-reference --json-out "$OUT/bench_graph.json" 2>&1 | tee -a "$OUT/log.txt"; }

part profile && { echo "== profile of adapter+gist (limit 60 s)"
for f in fp32 bf16; do
  timeout 30 "$PY" -m benchmarks.gpu_profile --frozen-dtype "$f" $([ "$DEV" = cpu ] && echo --batch-size 4) 2>&1 \
    | grep -v "^USDT\|^ERROR\|^STAGE" | tee -a "$OUT/profile.txt"
done; }


part compile && { echo "== bench --compile, adapter, frozen weights $FROZEN (limit ${T_COMPILE} s)"
timeout "$T_COMPILE" "$PY" -m benchmarks.bench --device "$DEV" "${SMALL[@]}" --methods adapter --compile \
  "${COMPILE[@]}" --frozen-dtype "$FROZEN" $([ "$DEV" = cpu ] && [ "$FROZEN" = bf16 ] && echo --precision bf16) \
  ${COMPILE_ARGS:-} --json-out "$OUT/bench_compile.json" 2>&1 | tee -a "$OUT/log.txt"; }
part autotune && { echo "== bench --compile max-autotune-no-cudagraphs, adapter (limit ${T_AUTOTUNE:-300} s)"
timeout "${T_AUTOTUNE:-300}" "$PY" -m benchmarks.bench --device "$DEV" "${SMALL[@]}" --methods adapter --compile \
  "${COMPILE[@]}" --compile-mode max-autotune-no-cudagraphs --no-reference \
  --json-out "$OUT/bench_autotune.json" 2>&1 | tee -a "$OUT/log.txt"; }
echo "== done; results in $OUT"
