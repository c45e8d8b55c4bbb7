"""fmnumba benchmark harness (GitHub issue 4): ``python -m bench --help``.

Modules: run (orchestration, datasets, the fmnumba worker, the report),
throughput (kernel throughput in nnz·k/s), ceiling (this machine's gather
and streaming bounds, and the lazy-Adam state bound), compile_time (cold and
cached JIT), plots (PNGs), defaults_grid (the grid behind the estimators'
defaults).
Peers run from bench/peers/ in their own interpreter (--peers-python or the
FMNUMBA_PEERS_PYTHON environment variable).
"""
