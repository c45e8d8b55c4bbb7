"""fmnumba benchmark harness (GitHub issue 4): ``python -m bench --help``.

Modules: run (orchestration, datasets, the fmnumba worker, the report),
throughput (kernel throughput in nnz·k/s), ceiling (this machine's gather
and streaming bounds), compile_time (cold and cached JIT), plots (PNGs).
Peers run from bench/peers/ in their own interpreter (--peers-python or the
FMNUMBA_PEERS_PYTHON environment variable).
"""
