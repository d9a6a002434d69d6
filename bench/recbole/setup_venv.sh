#!/usr/bin/env bash
# Create (or reuse) a separate venv with RecBole 1.2.1 + torch 2.13.0 (CPU) for the
# SASRec comparison benchmark.  Never the project's own .venv.
#
#   bench/recbole/setup_venv.sh VENV_DIR
#
# Idempotent: if VENV_DIR already imports everything the runner needs, with the pinned
# versions, and was built from the current constraints.txt, nothing is installed.
# Environment: PYTHON (interpreter to build the venv from; default python3.11, else python3).
set -euo pipefail

if [ $# -ne 1 ] || [ -z "${1:-}" ]; then
    echo "usage: $0 VENV_DIR" >&2
    exit 2
fi

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
CONSTRAINTS="$HERE/constraints.txt"
VENV="$1"
mkdir -p "$(dirname "$VENV")"
VENV="$(cd "$(dirname "$VENV")" && pwd)/$(basename "$VENV")"

if [ "$VENV" = "$REPO/.venv" ] || [ "$VENV" = "$REPO" ]; then
    echo "refusing to use the project's own environment ($VENV); pass a separate directory" >&2
    exit 2
fi

# Top-level requirements; every version comes from constraints.txt.  recbole itself is
# installed with --no-deps (see constraints.txt for why ray/thop/plotly are left out).
REQS=(torch numpy pandas scipy scikit-learn pyyaml tqdm colorlog colorama texttable tensorboard)
STAMP="$VENV/.recbole-bench-stamp"
WANT_STAMP="$(sha256sum "$CONSTRAINTS" | cut -d' ' -f1)"

smoke_test() {
    # Imports exactly what run_recbole_sasrec.py imports, and checks the pinned versions.
    "$VENV/bin/python" - <<'EOF'
import os
os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
import sys
import numpy, torch, pandas, scipy, recbole
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.model.sequential_recommender.sasrec import SASRec
from recbole.trainer import Trainer
from recbole.utils import init_logger, init_seed
assert sys.version_info[:2] == (3, 11), sys.version
assert recbole.__version__ == "1.2.1", recbole.__version__
assert torch.__version__.split("+")[0] == "2.13.0", torch.__version__
assert int(numpy.__version__.split(".")[0]) < 2, numpy.__version__
print(f"recbole {recbole.__version__}, torch {torch.__version__}, numpy {numpy.__version__}, "
      f"pandas {pandas.__version__}, scipy {scipy.__version__}")
EOF
}

if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT_STAMP" ] \
        && smoke_test >/dev/null 2>&1; then
    echo "RecBole venv already set up: $VENV ($(smoke_test 2>/dev/null | tail -1))"
    exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
    PY="${PYTHON:-}"
    if [ -z "$PY" ]; then
        if command -v python3.11 >/dev/null 2>&1; then PY=python3.11; else PY=python3; fi
    fi
    if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)'; then
        echo "need Python 3.11 (torch 2.13.0 CPU wheel on disk is cp311); got $("$PY" --version 2>&1)" >&2
        exit 1
    fi
    echo "creating venv $VENV with $("$PY" --version 2>&1)"
    "$PY" -m venv "$VENV"
fi

PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
# Constraints always pin torch==2.13.0, so no step can resolve a CUDA build.
"${PIP[@]}" install -c "$CONSTRAINTS" "${REQS[@]}"
"${PIP[@]}" install -c "$CONSTRAINTS" --no-deps recbole==1.2.1

smoke_test
echo "$WANT_STAMP" > "$STAMP"
echo "RecBole venv ready: $VENV"
