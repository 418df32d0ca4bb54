#!/bin/bash
# Fourteenth session (2026-12-02): the training step as one CUDA graph (trainer.cuda_graphs,
# bench.cuda_graphs; mambalab/training/cuda_graph.py). One H200, no kernel build (the Triton path).
#   bash scripts/gpu/s15.sh graphs 2>&1 | tee $OUT/s15_graphs.log
source scripts/gpu/common.sh
LOGS=$OUT/logs; mkdir -p $LOGS
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
SYN="data=synthetic tokenizer=byte trainer.epochs=null trainer.eval_every=null trainer.eval_at_end=false trainer.checkpoint_every=null trainer.progress_bar=false logger=[jsonl]"
PLAIN="~experiment model=mamba_130m data.seq_len=2048 trainer.mixed_precision=bf16 $SYN"
# `train NAME LIMIT OVERRIDES...`: python -m mambalab.train; tokens/s per log interval (the first left out)
train() {
  local name=$1 limit=$2; shift 2
  stamp "start $name"
  timeout -k 10 $limit python3 -m mambalab.train "$@" hydra.run.dir=$OUT/runs/$name > $LOGS/$name.log 2>&1
  local rc=$?
  grep -E "cuda_graphs|Error" $LOGS/$name.log | head -4
  python3 scripts/gpu/run_summary.py "$OUT/runs/$name" "$name" "$rc"
}
if [ "$1" = graphs ]; then
  stamp "bench: mambalab[triton] eager and as a CUDA graph"
  timeout -k 10 300 python3 -m mambalab.bench 'bench.implementations=[mambalab]' 'bench.kernels=[triton]' \
    'bench.cuda_graphs=[false,true]' 'bench.batch_sizes=[8,16,32]' bench.out=$OUT/s15-bench.json \
    > $LOGS/bench.log 2>&1
  stamp "bench rc=$?"; grep -A 12 "tokens/s" $LOGS/bench.log | head -16; tail -3 $LOGS/bench.log
  for b in 8 16; do
    NAN="trainer.debug_inject_nan_at_steps=[15]"
    train eager_b$b 120 $PLAIN data.batch_size=$b trainer.max_steps=40 trainer.log_every=10 $NAN
    train graph_b$b 120 $PLAIN data.batch_size=$b trainer.max_steps=40 trainer.log_every=10 $NAN trainer.cuda_graphs=true
  done
  stamp "GPU tests"
  timeout -k 10 240 python3 -m pytest -m gpu -s -q -p no:cacheprovider tests/training/test_cuda_graph_gpu.py > $LOGS/tests.log 2>&1
  stamp "tests rc=$?"; grep -E "passed|failed|eager|graphed|whole|resumed|Error|assert" $LOGS/tests.log | head -30
fi
# verify (call 2): the graph GPU tests, the trainer at 32 x 2048 and the seed recipe eager and
# graphed, then the fused mixer's full-size GPU test (from s14.sh next_b) if the call has time
if [ "$1" = verify ]; then
  stamp "GPU tests"
  timeout -k 10 200 python3 -m pytest -m gpu -s -q -p no:cacheprovider tests/training/test_cuda_graph_gpu.py > $LOGS/tests.log 2>&1
  stamp "tests rc=$?"; grep -E "passed|failed|eager|graphed|whole|resumed|Error|^E " $LOGS/tests.log | head -30
  train eager_b32 200 $PLAIN data.batch_size=32 trainer.max_steps=30 trainer.log_every=10
  train graph_b32 120 $PLAIN data.batch_size=32 trainer.max_steps=30 trainer.log_every=10 trainer.cuda_graphs=true
  RECIPE="$SYN trainer.max_steps=12 trainer.log_every=3"
  train recipe_graphs 120 $RECIPE trainer.cuda_graphs=true
  stamp "mixer full-size test"
  timeout 50 python3 -m pytest -q -p no:cacheprovider -m gpu tests/ops/test_triton_mamba_inner.py \
    -k "full_size_gpu_matches" 2>&1 | grep -E "^(FAILED|ERROR)|passed|failed" | tail -n 4
  stamp done
fi
# verify2 (call 3): with trainer.cuda_graphs=auto the default, the graph tests and the 130M loop
# test; at 32 x 2048 with evaluations (the graph released before each, captured again after);
# activation checkpointing under capture
if [ "$1" = verify2 ]; then
  stamp "GPU tests"
  timeout -k 10 330 python3 -m pytest -m gpu -s -q -p no:cacheprovider tests/training/test_cuda_graph_gpu.py \
    tests/training/test_train_gpu.py -k "graph or through_the_loop" > $LOGS/tests2.log 2>&1
  stamp "tests rc=$?"; grep -E "passed|failed|eager|graphed|whole|resumed|Mamba-130M|Error|^E " $LOGS/tests2.log | head -30
  train eval_b32 100 $PLAIN data.batch_size=32 trainer.max_steps=30 trainer.log_every=10 trainer.eval_every=10 trainer.eval_max_batches=4
  grep -c "captured the step" $LOGS/eval_b32.log
  python3 -c "import json,sys; r=[json.loads(x) for x in open(sys.argv[1])]; print('  eval', [(x['step'], round(x['loss'], 4)) for x in r if x.get('split')=='validation'])" $OUT/runs/eval_b32/metrics.jsonl
  train ckpt_b8 80 $PLAIN data.batch_size=8 trainer.max_steps=20 trainer.log_every=10 model.gradient_checkpointing=true
  stamp done
fi
# induction (call 5, what the device budget left): experiment=induction_heads eager and graphed
# (a small model with an evaluation every 200 steps)
if [ "$1" = induction ]; then
  IND="experiment=induction_heads trainer.max_steps=400 trainer.eval_every=200 trainer.log_every=100 trainer.progress_bar=false logger=[jsonl]"
  train ind_graphs 100 $IND
  train ind_eager 60 $IND trainer.cuda_graphs=false
  for r in ind_graphs ind_eager; do
    python3 -c "import json,sys; r=[json.loads(x) for x in open(sys.argv[1])]; print('  $r eval', [(x['step'], x.get('accuracy')) for x in r if x.get('split')=='validation'])" $OUT/runs/$r/metrics.jsonl
  done
  stamp done
fi
