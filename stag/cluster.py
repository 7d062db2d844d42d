"""Ray for the flows that fan out (``stag sweep``, ``stag regress``): a local Ray instance, an existing
cluster, or no Ray at all (``serial``: the same functions, in this process, in submission order).

Every task takes one CPU and is spread over the cluster's nodes (Ray's ``SPREAD`` strategy); a
task's result comes back with the id of the node it ran on. A local instance lives in a temporary
directory of its own, is started with ``address="local"`` (never attaching to a cluster that
happens to run on the machine) and is shut down, its directory removed, when the executor closes.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["SERIAL_NODE", "Done", "Executor"]

#: The node a serial run reports.
SERIAL_NODE = "serial"


@dataclass(frozen=True)
class Done:
    """A finished task: its tag, its result (None when it raised), the node it ran on and, when it
    raised or its worker died, the error as one line."""

    tag: Hashable
    result: Any
    node: str
    error: str = ""


def _on_node(fn: Callable, *args: Any) -> tuple[Any, str]:
    """Run ``fn(*args)`` in a Ray worker; its result and the worker's node id. (The arguments are
    top-level task arguments so that Ray hands object references in as their values.)"""
    import ray

    return fn(*args), ray.get_runtime_context().get_node_id()


def _one_line(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None)  # a RayTaskError carries the task's own exception
    exc = cause if isinstance(cause, BaseException) else exc
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}".rstrip(": ")


class Executor:
    """Runs tagged function calls as Ray tasks, or serially in this process.

    ``address``: an existing Ray cluster (``host:port``); None starts a local instance with
    ``num_cpus`` CPUs (default: every CPU). Use as a context manager; :meth:`submit` calls, then
    iterate :meth:`completed` (more calls may be submitted while iterating).
    """

    def __init__(self, *, serial: bool = False, address: str | None = None, num_cpus: int | None = None) -> None:
        if num_cpus is not None and (not isinstance(num_cpus, int) or num_cpus < 1):
            raise ValueError(f"--num-cpus must be a positive integer, got {num_cpus!r}")
        if serial and address is not None:
            raise ValueError("--serial runs in this process: it takes no --address")
        if address is not None and num_cpus is not None:
            raise ValueError("--num-cpus sizes a local Ray instance; an existing cluster (--address) has its own")
        self.serial = serial
        self._address = address
        self._num_cpus = num_cpus
        self._temp_dir: str | None = None
        self._queue: deque[tuple[Hashable, Callable, tuple]] = deque()
        self._refs: dict[Any, Hashable] = {}
        self._remote = None

    @property
    def where(self) -> str:
        """Where the tasks run, in words."""
        if self.serial:
            return "serially in this process"
        if self._address is not None:
            return f"on the Ray cluster at {self._address}"
        cpus = self._num_cpus or os.cpu_count() or 1
        return f"on a local Ray instance ({cpus} CPU{'s' if cpus > 1 else ''})"

    def __enter__(self) -> Executor:
        if self.serial:
            return self
        import ray

        quiet = {"log_to_driver": False, "logging_level": logging.ERROR}
        if self._address is None:
            # A short path: Ray's Unix sockets live below it (at most 107 characters).
            self._temp_dir = tempfile.mkdtemp(prefix="stag_ray_", dir="/tmp" if os.path.isdir("/tmp") else None)
            ray.init(address="local", num_cpus=self._num_cpus or os.cpu_count(), include_dashboard=False,
                     _temp_dir=self._temp_dir, **quiet)
        else:
            ray.init(address=self._address, **quiet)
        self._remote = ray.remote(num_cpus=1, scheduling_strategy="SPREAD")(_on_node)
        return self

    def __exit__(self, *exc_info) -> None:
        if self.serial:
            return
        import ray

        self._refs.clear()
        ray.shutdown()
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)

    def submit(self, tag: Hashable, fn: Callable, *args: Any) -> None:
        """Run ``fn(*args)`` (a module-level function: Ray workers import it by name)."""
        if self.serial:
            self._queue.append((tag, fn, args))
        else:
            assert self._remote is not None, "submit() inside `with Executor(...)`"
            self._refs[self._remote.remote(fn, *args)] = tag

    def put(self, value: Any) -> Any:
        """``value`` stored once for many tasks (Ray's object store; serial: ``value`` itself)."""
        if self.serial:
            return value
        import ray

        return ray.put(value)

    @property
    def pending(self) -> int:
        """Calls submitted and not yet yielded by :meth:`completed`."""
        return len(self._queue) + len(self._refs)

    def completed(self) -> Iterator[Done]:
        """Each call as it finishes (serial: in submission order), until none is pending."""
        if self.serial:
            while self._queue:
                tag, fn, args = self._queue.popleft()
                try:
                    yield Done(tag, fn(*args), SERIAL_NODE)
                except Exception as exc:  # reported with the call, like a failed Ray task
                    yield Done(tag, None, SERIAL_NODE, _one_line(exc))
            return
        import ray

        while self._refs:
            ready, _ = ray.wait(list(self._refs), num_returns=1)
            tag = self._refs.pop(ready[0])
            try:
                result, node = ray.get(ready[0])
            except Exception as exc:  # the task raised, or its worker or node died
                yield Done(tag, None, "", _one_line(exc))
            else:
                yield Done(tag, result, node)
