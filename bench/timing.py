"""Timing and the command line shared by the measuring tools (bench/ceiling.py,
bench/throughput.py, bench/compile_time.py, bench/recommend.py)."""
import argparse
import os
import time

import numpy as np


def median_time(fn, repeats, setup=None):
    """(median seconds of fn(), all the times) over `repeats` calls; setup()
    runs untimed before each call."""
    ts = []
    for _ in range(repeats):
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts)), [float(t) for t in ts]


def in_turn(steps, repeats):
    """Times of each (setup, fn) of `steps`, run in turn within each repeat
    so that all see the same machine state (the shared machine's speed
    drifts between separate processes); setup is not timed. Returns one list
    of times per step."""
    times = [[] for _ in steps]
    for _ in range(repeats):
        for (setup, fn), acc in zip(steps, times):
            if setup is not None:
                setup()
            t0 = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - t0)
    return times


def tool_parser(doc, data=True, out=True):
    """The options every measuring tool takes: --threads, with `out` --out,
    and with `data` the kernel tools' --data, --k, --repeats, --epoch-rows
    and --batch-size. The description is the first line of `doc`."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    if data:
        p.add_argument("--data", required=True,
                       help="harness npz (indptr, indices, data, shape, y)")
        p.add_argument("--k", default="8,64", help="comma list of factor counts")
        p.add_argument("--repeats", type=int, default=3)
        p.add_argument("--epoch-rows", type=int, default=200_000)
        p.add_argument("--batch-size", type=int, default=None,
                       help="Adam batch size (default: the estimators' default)")
    p.add_argument("--threads", type=int, default=2)
    if out:
        p.add_argument("--out", default=None, help="write the JSON here too")
    return p


def parse_tool_args(p, argv):
    """Parsed options of a tool_parser(data=True): k as a list of ints and the
    batch size resolved to the estimators' default when not given."""
    a = p.parse_args(argv)
    a.k = [int(x) for x in a.k.split(",")]
    if a.batch_size is None:
        from fmnumba import FMRegressor
        a.batch_size = FMRegressor().batch_size
    return a


def load_average():
    """The 1, 5 and 15 minute load averages as "a, b, c" (two decimals)."""
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())
