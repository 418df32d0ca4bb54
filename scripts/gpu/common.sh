# Sourced by the GPU call scripts: wheels on the path, the carried token cache, the LM run's overrides.
export PYTHONUNBUFFERED=1 TRITON_INTERPRET=0 OMP_NUM_THREADS=4 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=disabled
# Once per machine: scripts that run side by side source this too, and a second pip install into
# /tmp/site while another process imports from it can break that import.
if [ ! -f /tmp/site/.mambalab_wheels ]; then
  NO_KERNELS=1 source .whl/install.sh .whl > /tmp/install.log 2>&1 || { cat /tmp/install.log; exit 1; }
  touch /tmp/site/.mambalab_wheels
else
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=.:$PYTHONPATH
export MAMBALAB_CACHE=$PWD/.gpu/token_cache
C=text-gpt-neox-20b-94c2e6dc89206347
TOK=.gpu/token_cache/$C/tokenizer
# Mamba-130M on 13.2M tokens of the Wikipedia sample, wiki.valid.raw as validation (issue 8).
LM="name=wiki130m ~experiment model=mamba_130m model.kernels=triton data=cached data.path=$C data.seq_len=2048 data.batch_size=16 tokenizer=gpt_neox tokenizer.path=$TOK optimizer.lr=1e-3 scheduler.warmup_steps=30 trainer.max_steps=400 trainer.eval_every=50 trainer.eval_max_batches=null trainer.checkpoint_every=100 trainer.progress_bar=false trainer.log_every=10"
stamp() { echo "[$(date +%T) +$(( $(date +%s) - T0 ))s] $*"; }
T0=$(date +%s)
# The call's own limit (LIMIT, seconds from T0) and what is left of it; the card and versions,
# which every call's log starts with (s22.sh on; earlier scripts define their own).
LIMIT=${LIMIT:-585}
left() { echo $(( LIMIT - ($(date +%s) - T0) )); }
card() {
  nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
}
