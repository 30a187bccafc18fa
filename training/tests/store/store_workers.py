"""Child-process entry point of the concurrency test (imports only pumit.store, not the test helpers)."""

from __future__ import annotations

from pumit.store import ModelStore


def install_and_register(root: str, sources: list[str], tuned: str, barrier, results) -> None:
    """Start together with the other processes, install ``sources`` one after the other, then register
    ``tuned`` as the next version of ``knee``; put every resulting id on ``results``."""
    store = ModelStore(root, builtin_dirs=[])
    barrier.wait(timeout=120)
    for s in sources:
        results.put(store.install(s).id)
    results.put(store.register_new_version(tuned, "knee").id)
