"""Real gunicorn servers for the tests and the benchmark: start a WSGI app in its own session,
wait until it answers and all its workers are up, read its workers' CPU time and memory from
/proc, stop it gracefully or kill its whole process group and wait until none of it is left.

``tests/server_support.py`` (crash and multi-process tests) and ``bench/server.py`` (the HTTP
figures of ``make bench``) both start their servers through ``GunicornServer``.
"""
from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- /proc ---------------------------------------------------------------------------------------

def _stat_fields(pid: int | str) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name, from 0: state, ppid, pgrp, … utime
    at 11, stime at 12; None when the process is gone. The name may hold spaces and parentheses,
    so the split is after the last ')'."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2:].split()


def _processes() -> Iterator[tuple[int, list[str]]]:
    """(pid, stat fields) of every process /proc shows."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(entry.name)
            if fields is not None:
                yield int(entry.name), fields


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (a gunicorn master's workers)."""
    return [child for child, fields in _processes() if int(fields[1]) == pid]


def group_alive(pgid: int) -> bool:
    """Is any live (not zombie) process still in the group?"""
    if not Path("/proc").exists():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    return any(fields[0] != "Z" and int(fields[2]) == pgid for _, fields in _processes())


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the processes have used so far."""
    ticks = 0
    for pid in pids:
        fields = _stat_fields(pid)
        try:
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
        except (TypeError, ValueError, IndexError):
            pass
    return ticks / os.sysconf("SC_CLK_TCK")


def status_kb(pid: int, field_name: str) -> int:
    """A kB figure of /proc/<pid>/status (``VmHWM``: peak resident set), 0 when unreadable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


# --- gunicorn ------------------------------------------------------------------------------------

def _gunicorn_options() -> list[str]:
    from gunicorn import config

    options = []
    # gunicorn >= 24 opens a control socket in ~/.gunicorn shared by every master of the user.
    if "control_socket_disable" in config.Config().settings:
        options.append("--no-control-socket")
    return options


class GunicornServer:
    """``app`` (a ``module:variable`` importable from ``root``) under gunicorn with sync workers, in
    its own session, so that its process group is the master and its workers.

    ``ready_path`` is the path that must answer 200 (with every worker forked) before ``start``
    returns; ``options`` are more gunicorn command-line options."""

    def __init__(self, env: dict, *, log: Path, root: Path, app: str = "wsgi:app", workers: int = 2,
                 ready_path: str = "/healthz", options: tuple[str, ...] = (), port: int | None = None):
        self.env, self.log, self.root, self.app = env, log, root, app
        self.workers, self.ready_path, self.options = workers, ready_path, tuple(options)
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> None:
        """Start the master and wait until it is ready (a new port if this one stays taken)."""
        for _attempt in range(3):
            if self._spawn_and_wait(timeout):
                self.starts += 1
                return
            self.port = free_port()
        raise RuntimeError(f"gunicorn did not come up; log:\n{self.log_tail()}")

    def _spawn_and_wait(self, timeout: float) -> bool:
        command = [sys.executable, "-m", "gunicorn", "--workers", str(self.workers),
                   "--bind", f"127.0.0.1:{self.port}", *self.options, *_gunicorn_options(), self.app]
        with open(self.log, "ab") as log:
            log.write(f"\n=== start {self.starts + 1} on port {self.port} ===\n".encode())
            log.flush()
            self.process = subprocess.Popen(command, cwd=self.root, env=self.env, stdout=log, stderr=log,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._reap_group()
                return False  # exited: most likely the port was taken
            if self._answers() and len(self.worker_pids()) >= self.workers:
                return True
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"gunicorn did not answer {self.ready_path} within {timeout} s; "
                           f"log:\n{self.log_tail()}")

    def _answers(self) -> bool:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        try:
            connection.request("GET", self.ready_path, headers={"Connection": "close"})
            return connection.getresponse().status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            connection.close()

    def worker_pids(self) -> list[int]:
        process = self.process  # None once stopped, maybe while another thread asks
        return children(process.pid) if process is not None else []

    def kill(self) -> None:
        """SIGKILL the master and its workers at once, and wait until none is left."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()
        self._reap_group()
        self.process = None

    def stop(self, grace: float = 30) -> None:
        """SIGTERM the master (it lets the workers finish their requests); ``kill`` after ``grace`` s."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.kill()
            return
        self._reap_group()
        self.process = None

    def _reap_group(self) -> None:
        pgid = self.process.pid
        deadline = time.monotonic() + 10
        while group_alive(pgid):
            if time.monotonic() > deadline:
                raise RuntimeError(f"processes of group {pgid} survived SIGKILL")
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                break
            time.sleep(0.02)

    def restart(self) -> None:
        """Kill -9 and start again on the same port."""
        self.kill()
        self.start()

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@contextmanager
def running(server: GunicornServer) -> Iterator[GunicornServer]:
    """``server`` started; killed (whole process group) on the way out, whatever happened."""
    try:
        server.start()
        yield server
    finally:
        server.kill()
