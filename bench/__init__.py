"""fmnumba benchmark harness: ``python -m bench --help``.

Modules: run (runs the parts in subprocesses and collects their JSON), data
(the data sets), worker (the fmnumba runner), protocol (the npz format,
metrics and JSON output every runner shares), targets (what a run is checked
against), report (the markdown and PNGs; plots draws them), throughput
(kernel throughput in nnz·k/s), ceiling (this machine's gather and streaming
bounds, and the lazy-Adam and SGD bounds), compile_time (cold and cached
JIT), timing (what the measuring tools share), memory (peak memory of a fit
on 1M rows), defaults_grid (the grid behind the estimators' defaults),
layout (predict, Adam and SGD epochs per parameter-table layout, with the
kernels of layout_kernels).
Peers run from bench/peers/ in their own interpreter (--peers-python or the
FMNUMBA_PEERS_PYTHON environment variable).
"""
