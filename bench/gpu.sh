#!/usr/bin/env bash
# GPU benchmark for a machine without network: `bash bench/gpu.sh [--methods dpo,orpo,kto] [--variants lora,qlora]
# [--rows plain,recipe,...]` installs the wheels carried in .whl/ into /tmp/site, then runs bench/gpu_dpo.py with the
# arguments given; each row also goes to $OUT/gpu_dpo.jsonl when $OUT is set (the device tool's output folder). Fill
# .whl/ where PyPI is reachable (torch, accelerate, triton, pyarrow and tqdm come with the GPU machine's image;
# bitsandbytes is needed for qlora only):
#   pip download --no-deps -d .whl bitsandbytes==0.50.2 transformers==5.24.0 trl==1.16.0 peft==0.21.2 datasets==5.2.0 \
#     dill==0.4.0 multiprocess==0.70.18 hydra-core==1.3.8 omegaconf==2.3.1 \
#     liger-kernel==0.8.5 --python-version 3.12 --only-binary=:all:   # the image's Python (multiprocess: one wheel per version)
#   pip wheel --no-deps -w .whl antlr4-python3-runtime==4.9.3          # published as a source archive only
# liger-kernel is needed only for the `liger` lever; leave it out when the carried tree must stay under a size limit.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
# prefopt and the recipes are imported from this checkout; nothing is installed editable there.
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, transformers, trl, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'trl', trl.__version__, 'peft', peft.__version__)"
python3 -c "import bitsandbytes; print('bnb', bitsandbytes.__version__)" || echo "bitsandbytes: not installed (qlora rows fail)"
# Shared-prompt rows on CUDA's attention kernels give TRL's hidden states (seconds); the timings run either way.
python3 -m pytest -q -p no:cacheprovider tests/prefopt/test_shared_prompt.py -k cuda || echo "shared-prompt check on CUDA: FAILED"
PYTHONUNBUFFERED=1 python3 bench/gpu_dpo.py ${OUT:+--out "$OUT/gpu_dpo.jsonl"} "$@"
