"""The CUDA random-gather ceiling kernel of bench/cuda_bench.py: per CSR row,
gather and sum the k-wide rows of V (the irreducible part of predict), with
the same lanes-per-row layout and lane reduction as fmnumba/gpu/predict.py."""
from numba import cuda, float64

from fmnumba.gpu._device import TPB
from fmnumba.gpu._row import group_sum


@cuda.jit
def gather_sum(indptr, indices, V, lanes, out):
    red = cuda.shared.array(TPB, float64)
    tid = cuda.threadIdx.x
    lane = tid % lanes
    r = (cuda.blockIdx.x * TPB + tid) // lanes
    k = V.shape[1]
    acc = V[0, 0] * 0
    if r < out.shape[0]:
        for p in range(indptr[r], indptr[r + 1]):
            j = indices[p]
            for f in range(lane, k, lanes):
                acc += V[j, f]
    s = group_sum(red, tid, lane, lanes, acc)
    if r < out.shape[0] and lane == 0:
        out[r] = s
