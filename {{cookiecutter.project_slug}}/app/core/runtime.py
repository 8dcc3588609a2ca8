"""The garbage collector, tuned for a long-running server process (GC_TUNING).

CPython's cyclic collector runs a young collection every 700 allocations and, now and then, a
full one that walks every object the process holds: the app, its routes, its models, every
imported module. A request allocates thousands of objects, so a busy worker collects all the
time, and each full collection stalls every request in flight. Two measures (`make bench`,
README "Hot path"):

- `gc.freeze()` once the app has started moves everything alive then (the code, the app, its
  caches) to a permanent generation that no collection walks again.
- A young-generation threshold of 10,000 allocations instead of 700, and the older
  generations collected every 20 younger collections instead of 10: far fewer collections.
  Garbage in reference cycles lives a little longer; objects without cycles are freed at once,
  as always.
"""

import gc
from collections.abc import Iterator
from contextlib import contextmanager

SERVER_THRESHOLDS = (10_000, 20, 20)


@contextmanager
def tuned_gc() -> Iterator[None]:
    """Freeze what start-up made and raise the thresholds; on the way out, the thresholds are
    put back and everything is unfrozen, so what the app held can be collected once it is
    gone (a test, or a process that embeds the app)."""
    previous = gc.get_threshold()
    gc.collect()  # what start-up left as garbage is not frozen with the rest
    gc.freeze()
    gc.set_threshold(*SERVER_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*previous)
        gc.unfreeze()
