#!/usr/bin/env bash
# Install the peer FM libraries into a separate virtualenv (default .venv-peers).
# Usage: bash bench/peers/install_peers.sh [VENV_DIR]
# Each step is bounded and may fail on its own; the runners only need the peers
# that installed. Verified on Python 3.11 / x86_64 Linux (see README.md).
set -u
VENV=${1:-.venv-peers}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
. "$VENV/bin/activate"
pip install -q numpy scipy scikit-learn
# modern-fm and myfm ship manylinux wheels for cp311
timeout 900 pip install modern-fm || echo "modern-fm: install failed"
timeout 900 pip install myfm || echo "myfm: install failed"
# xlearn: sdist built with cmake + g++ (~4 min on 2 cores). USER is only needed
# at run time (run_xlearn.py sets it); harmless here.
USER=${USER:-root} timeout 900 pip install xlearn || echo "xlearn: install failed"
# fastFM: sdist; needs Cython + wheel in the env and no build isolation
timeout 900 pip install Cython wheel && \
  timeout 900 pip install --no-build-isolation fastFM || echo "fastFM: install failed"
python - <<'PY'
for mod in ("modern_fm", "myfm", "xlearn", "fastFM.als"):
    try:
        __import__(mod)
        print("ok  ", mod)
    except Exception as e:  # noqa: BLE001
        print("FAIL", mod, type(e).__name__, str(e).splitlines()[0] if str(e) else "")
PY
