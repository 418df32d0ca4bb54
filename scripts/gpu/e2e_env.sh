# Sourced by e2e_a.sh and e2e_b.sh (issue 8's last runs): the GPU set-up of common.sh and the
# sizes of every run. E2E_DRY=1 rehearses the scripts' logic on a CPU instead: same commands, tiny
# model, short sequences, a few steps, outputs under $E2E_ROOT (see scripts/gpu/README.md).
set -o pipefail
if [ -z "$E2E_DRY" ]; then
  source scripts/gpu/common.sh          # wheels, PYTHONPATH, MAMBALAB_CACHE, $C, $TOK, stamp
  PY=python3
  ROOT=${E2E_ROOT:-.}
  M130="model=mamba_130m model.kernels=triton"
  MHF="model=hf_mamba_130m"             # transformers' MambaForCausalLM, gradient checkpointing on
  SEQ=2048; B=16; BSEED=4               # ours 16 x 2048 per GPU; the seed's 4 x 2048 x accumulation 8
  EVALB=null                            # evaluations score the whole validation split
  SCALE_STEPS=80; SCALE_SKIP=20         # DDP scaling: tok/s over steps 21-80
  SWEEP_STEPS=250; SWEEP_CAP=150        # lr sweep: 250 steps (8.2M tokens), capped at 150 s of training
  CMP_TIME=150; CMP_STEPS=2000          # seed vs ours: 150 s of training each (steps: only a cap)
  CMP_EVAL_OURS=50; CMP_EVAL_SEED=25    # eval every ~1.6M tokens (ours), ~1.6M tokens (seed)
  # Selective copying: the experiment's settings (2 x 64 Mamba, batch 64, lr 1e-3, cosine over 12k
  # steps), ended by 300 s of training if the steps take longer.
  SC="trainer.max_time_s=300 trainer.checkpoint_every=null"
  SC_EVAL="max_batches=null"
else
  export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=disabled
  export PYTHONPATH=.:$PYTHONPATH MAMBALAB_CACHE=$PWD/.gpu/token_cache
  C=text-gpt-neox-20b-94c2e6dc89206347; TOK=.gpu/token_cache/$C/tokenizer
  T0=$(date +%s); stamp() { echo "[$(date +%T) +$(( $(date +%s) - T0 ))s] $*"; }
  PY=${PY:-/work/venv/bin/python}
  ROOT=${E2E_ROOT:-/tmp/e2e_dry}
  TINYM="model.d_model=32 model.n_layer=2 model.d_state=8 trainer.mixed_precision=no trainer.cpu_threads=1"
  M130="model=mamba_tiny $TINYM"
  MHF="model=hf_mamba_130m $TINYM model.use_mambapy=true model.gradient_checkpointing=true"
  SEQ=64; B=4; BSEED=1
  EVALB=2
  SCALE_STEPS=8; SCALE_SKIP=2
  SWEEP_STEPS=6; SWEEP_CAP=60
  CMP_TIME=4; CMP_STEPS=2000
  CMP_EVAL_OURS=10; CMP_EVAL_SEED=4
  SC="trainer.max_steps=40 data.seq_len=128 data.batch_size=8 scheduler.warmup_steps=5 trainer.max_time_s=20 trainer.eval_every=20 trainer.checkpoint_every=null data.eval_examples=32 data.eval_lengths=[128] trainer.mixed_precision=no trainer.cpu_threads=1"
  SC_EVAL="max_batches=1 kernels=reference"
  export CUDA_VISIBLE_DEVICES=""
fi
OUTS=$ROOT/outputs; MR=$ROOT/multirun
# Mamba-130M on the carried Wikipedia token cache (docs/results.md), no step limit from epochs.
BASE="~experiment data=cached data.path=$C data.seq_len=$SEQ tokenizer=gpt_neox tokenizer.path=$TOK trainer.epochs=null trainer.progress_bar=false trainer.log_every=10 logger=[jsonl]"
# `run NAME TIMEOUT CMD...`: one step with its own timeout (SIGTERM: the trainer checkpoints and
# exits; SIGKILL 20 s later if it has not), its log in $LOGS/NAME.log.
LOGS=$ROOT/e2e_logs; mkdir -p "$LOGS"
run() { local name=$1 limit=$2; shift 2; stamp "start $name"; timeout -k 20 "$limit" "$@" > "$LOGS/$name.log" 2>&1; local rc=$?; stamp "end $name rc=$rc"; [ $rc -eq 0 ] || tail -n 15 "$LOGS/$name.log"; return $rc; }
# `tests NAME TIMEOUT PYTEST_ARGS...`: a pytest run as a `run` step, its summary lines printed.
tests() {  # name, timeout, pytest arguments
  local name=$1 limit=$2; shift 2
  run "$name" "$limit" $PY -m pytest -q -p no:cacheprovider "$@"
  grep -E "^(FAILED|ERROR)|passed|failed" $LOGS/$name.log | tail -n 12
}
# `full_bench TIMEOUT`: the full benchmark (every implementation, ops table, profile) into
# $OUT/bench.json, its rendering $OUT/bench.md and its log; the tail of the log printed.
full_bench() {
  run bench "$1" $PY -m mambalab.bench bench.ops=true bench.profile=true 'bench.kernels=[triton,cuda,auto]' bench.out=$OUT/bench.json
  tail -n 60 $LOGS/bench.log
  $PY -m mambalab.benchmarks.markdown $OUT/bench.json > $OUT/bench.md 2>&1
  cp $LOGS/bench.log $OUT/ 2>/dev/null
}
# `wait_kernels`: wait (up to 5 minutes) for the detached build_kernels.sh to finish, then say
# what it built and check that mamba_ssm imports.
wait_kernels() {
  for i in $(seq 60); do [ -f /tmp/kernels_done ] && break; sleep 5; done
  cat /tmp/kernels_done 2>/dev/null || { stamp "kernel build not finished"; tail -n 5 /tmp/build.log; }
  $PY -c "import torch, mamba_ssm, causal_conv1d; print('mamba_ssm', mamba_ssm.__version__)"
}
