"""Ray (an extra: ``pip install 'guiapp[ray]'``): each item is a Ray task,
on this machine (a local instance) or a cluster (``ray start --head`` there,
then ``--ray auto`` or ``--ray ADDRESS``). Items carry paths or object-store
references, never sessions; a task whose worker dies is retried once by Ray
itself (``max_retries=1``), then becomes a ``Failed``."""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

from ..errors import Cancelled, UserError
from .base import WORKER_THREADS_ENV, ExecutorSpec, Failed, OnResult

POLL_S = 0.2
INSTALL = "Ray is not installed: pip install 'guiapp[ray]'."


def import_ray():
    try:
        import ray
    except ImportError:
        raise UserError(INSTALL) from None
    return ray


def _call(fn: Callable[[Any], Any], item: Any, threads: int) -> Any:
    os.environ[WORKER_THREADS_ENV] = str(threads)
    return fn(item)


class RayExecutor:
    def __init__(self, spec: ExecutorSpec) -> None:
        ray = import_ray()
        self.ray = ray
        if not ray.is_initialized():
            workers, _ = spec.plan()
            kwargs = {"address": spec.address} if spec.address else {"num_cpus": workers}
            # No dashboard, no usage report: nothing beyond the cluster's own traffic.
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            ray.init(include_dashboard=False, log_to_driver=False, ignore_reinit_error=True, **kwargs)
            self._owns = True
        else:
            self._owns = False
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.threads = spec.threads or 1
        self.workers = max(1, cpus // self.threads)
        self._remote = ray.remote(num_cpus=self.threads, max_retries=1)(_call)

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any], cancel, on_result: OnResult | None = None,
            catch: bool = False) -> list[Any]:
        ray = self.ray
        refs = [self._remote.remote(fn, item, self.threads) for item in items]
        index = {ref: i for i, ref in enumerate(refs)}
        results: list[Any] = [None] * len(items)
        waiting = list(refs)
        while waiting:
            if cancel.cancelled:
                for ref in waiting:
                    ray.cancel(ref, force=True)
                raise Cancelled()
            ready, waiting = ray.wait(waiting, num_returns=1, timeout=POLL_S)
            for ref in ready:
                i = index[ref]
                try:
                    results[i] = ray.get(ref)
                except ray.exceptions.WorkerCrashedError as exc:
                    results[i] = Failed(f"its worker died, twice ({type(exc).__name__})")
                except ray.exceptions.RayTaskError as exc:
                    cause = exc.as_instanceof_cause()
                    if not catch:
                        raise cause from None
                    results[i] = Failed(str(cause), cause)
                if on_result is not None:
                    on_result(i, results[i])
        return results

    def close(self) -> None:
        if self._owns and self.ray.is_initialized():
            self.ray.shutdown()
            self._owns = False
