"""A fixed number of daemon threads serving one queue: started on first use, stopped by
queuing one stop item per thread (each thread returns when it takes one)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any


class Workers:
    def __init__(
        self, name: str, count: int, target: Callable[[], None], jobs: queue.SimpleQueue[Any]
    ) -> None:
        self.name, self.count = name, count
        self._target, self._jobs = target, jobs
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    @property
    def threads(self) -> list[threading.Thread]:
        """The running threads (none before the first use or after `stop`)."""
        return list(self._threads)

    def ensure_started(self) -> None:
        if self._threads:
            return
        with self._lock:
            if not self._threads:
                self._threads = [
                    threading.Thread(target=self._target, name=f"{self.name}-{n}", daemon=True)
                    for n in range(self.count)
                ]
                for thread in self._threads:
                    thread.start()

    def stop(self, stop_item: Any, timeout: float = 10.0) -> bool:
        """Queue `stop_item` once per thread, after what is queued, and wait for them to
        return; False if one did not in time. They start again on the next use."""
        with self._lock:
            threads, self._threads = self._threads, []
        for _ in threads:
            self._jobs.put(stop_item)
        for thread in threads:
            thread.join(timeout=timeout)
        return not any(thread.is_alive() for thread in threads)
