"""The server of the HTTP figures: ``bench.wsgi_bench:app`` under gunicorn (sync workers, as the
README's deployment line runs them), with a thread sampling its workers' peak RSS while it runs.
Starting, waiting and stopping are moralbank.testing.servers', shared with the tests."""
from __future__ import annotations

import os
import threading
from pathlib import Path

from moralbank.testing import servers

ROOT = Path(__file__).resolve().parent.parent
#: the key every bench process signs with (codes are HMACs of it; the server must agree)
BENCH_SECRET = "bench-only-secret-" + "k" * 40
HELLO_PATH = "/api/v1/bench/hello"  # the route bench/wsgi_bench.py adds


class Gunicorn:
    """gunicorn serving bench.wsgi_bench:app; samples its workers' peak RSS while it runs."""

    def __init__(self, workers: int, env: dict, log: Path):
        full_env = dict(os.environ)
        for name in ("DATABASE_URL", "REDIS_URL", "TRUSTED_HOSTS", "PROXY_FIX_HOPS"):
            full_env.pop(name, None)
        full_env.update(env)
        full_env.update({"SECRET_KEY": BENCH_SECRET, "MORALBANK_ENV": "production", "PYTHONPATH": str(ROOT),
                         "TRUSTED_HOSTS": "127.0.0.1,localhost"})
        self.server = servers.GunicornServer(full_env, log=log, root=ROOT, app="bench.wsgi_bench:app",
                                             workers=workers, ready_path=HELLO_PATH)
        self.peak_kb: dict[int, int] = {}
        self._stop = threading.Event()

    @property
    def base(self) -> str:
        return self.server.url

    def __enter__(self) -> "Gunicorn":
        self.server.start(timeout=90)
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(0.5)

    def sample(self) -> None:
        for pid in self.server.worker_pids():
            self.peak_kb[pid] = max(self.peak_kb.get(pid, 0), servers.status_kb(pid, "VmHWM"))

    def cpu_seconds(self) -> float:
        """User + system CPU of the workers so far (the master only supervises)."""
        return servers.cpu_seconds(self.server.worker_pids())

    @property
    def peak_mb(self) -> float:
        return max(self.peak_kb.values(), default=0) / 1024

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._sampler.join()
        if self.server.process is not None and self.server.process.poll() is None:
            self.sample()
        self.server.stop(grace=30)
