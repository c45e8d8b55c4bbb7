"""CPU kernels that fail part-way through a fit."""


class FailingKernels:
    """The CPU kernels, raising `exc` as epoch `at` returns (where Python
    delivers an exception, a Ctrl-C's KeyboardInterrupt included, raised
    during a nogil kernel)."""

    def __init__(self, at, exc=KeyboardInterrupt):
        from fmnumba import cpu
        self._cpu, self._at, self._n, self._exc = cpu, at, 0, exc

    def __getattr__(self, name):
        return getattr(self._cpu, name)

    def _epoch(self, fn, *a):
        out = fn(*a)
        self._n += 1
        if self._n == self._at:
            raise self._exc
        return out

    def adam_epoch(self, *a):
        return self._epoch(self._cpu.adam_epoch, *a)

    def sgd_epoch(self, *a):
        return self._epoch(self._cpu.sgd_epoch, *a)
