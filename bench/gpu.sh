#!/usr/bin/env bash
# GPU benchmark for a machine without network: `bash bench/gpu.sh` installs the wheels carried in .whl/ (see README,
# "Performance") into /tmp/site, then runs bench/gpu_dpo.py. Extra arguments go to gpu_dpo.py.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, transformers, trl, peft, bitsandbytes; print('torch', torch.__version__, 'transformers', transformers.__version__, 'trl', trl.__version__, 'peft', peft.__version__, 'bnb', bitsandbytes.__version__)"
PYTHONUNBUFFERED=1 python3 bench/gpu_dpo.py "$@"
