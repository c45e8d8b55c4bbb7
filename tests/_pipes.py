"""Pipes filled by a writer thread, for tests that read from /dev/fd paths."""
import os
import threading


def start_writer(w, chunks):
    """A started thread writing the byte strings of iterable `chunks` to fd w, then
    closing it (a closed read end ends it with BrokenPipeError)."""
    def run():
        try:
            for chunk in chunks:
                view = memoryview(chunk)
                while view:
                    view = view[os.write(w, view):]
        except OSError:
            pass
        finally:
            os.close(w)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def pipe_of(data):
    """A /dev/fd path on a pipe a thread fills with bytes `data`, its read fd, the thread."""
    r, w = os.pipe()
    return f"/dev/fd/{r}", r, start_writer(w, [data])
