"""Debian's nginx in front of a test gunicorn, as an unprivileged process in a folder of its own: a
self-signed certificate, a main configuration that includes the site rendered from
``deploy/nginx/moralbank.conf`` (by ``deploy/render``), and start/stop of the master's process group.

Used by ``tests/test_deploy_nginx.py`` and ``scripts/deploy-check``
(``python -m moralbank.testing.nginx cert|start|stop FOLDER …``).
"""
from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.path.exists(p)), None)


def self_signed(folder: Path, host: str = "localhost") -> tuple[Path, Path]:
    """A certificate for ``host`` (and 127.0.0.1), valid two days, and its key (openssl CLI)."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={host}",
                    "-addext", f"subjectAltName=DNS:{host},IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


def render_site(target: Path, **settings: str) -> Path:
    """``deploy/render nginx`` with ``settings`` (HOST, TLS_CERT, …) in its environment, into ``target``."""
    env = {**os.environ, **settings}
    site = subprocess.run([str(ROOT / "deploy" / "render"), "nginx"], env=env, check=True,
                          capture_output=True, text=True).stdout
    target.write_text(site)
    return target


def main_config(folder: Path, site: Path) -> Path:
    """An nginx.conf whose every path is in ``folder`` (pid, logs, temp files), including ``site``."""
    temp = folder / "temp"
    for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (temp / name).mkdir(parents=True, exist_ok=True)
    # As root the workers would switch to "nobody", who cannot read a private temp folder.
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};\n" if os.geteuid() == 0 else ""
    config = folder / "nginx.conf"
    config.write_text(f"""{user}worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 256; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    sendfile on;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    access_log {folder}/access.log;
    include {site};
}}
""")
    return config


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Nginx:
    """nginx -p FOLDER -c FOLDER/nginx.conf in the foreground, in its own session."""

    def __init__(self, folder: Path, site: Path, port: int):
        self.folder, self.site, self.port = folder, site, port
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 15) -> None:
        config = main_config(self.folder, self.site)
        binary = nginx_binary()
        if binary is None:
            raise RuntimeError("nginx is not installed (apt-get install nginx)")
        test = subprocess.run([binary, "-t", "-p", str(self.folder), "-c", str(config)], capture_output=True, text=True)
        if test.returncode != 0:
            raise RuntimeError(f"nginx -t refused the configuration:\n{test.stderr}")
        log = open(self.folder / "nginx.out", "ab")
        self.process = subprocess.Popen([binary, "-p", str(self.folder), "-c", str(config), "-g", "daemon off;"],
                                        stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while not _listening(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("nginx did not start: " + self.errors())
            time.sleep(0.05)

    def errors(self) -> str:
        text = ""
        for name in ("nginx.out", "error.log"):
            path = self.folder / name
            if path.exists():
                text += path.read_text(errors="replace")[-3000:]
        return text

    def stop(self) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGQUIT)
            self.process.wait(timeout=10)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None


def _command_line(argv: list[str]) -> int:
    """``cert FOLDER HOST`` → prints cert and key paths; ``start FOLDER SITE PORT`` → runs nginx in the
    background, writes FOLDER/master.pid; ``stop FOLDER`` → stops it."""
    command, folder = argv[0], Path(argv[1]).resolve()
    if command == "cert":
        print(*self_signed(folder, argv[2] if len(argv) > 2 else "localhost"))
    elif command == "start":
        server = Nginx(folder, Path(argv[2]).resolve(), int(argv[3]))
        server.start()
        (folder / "master.pid").write_text(str(server.process.pid))
    elif command == "stop":
        pid = int((folder / "master.pid").read_text())
        try:
            os.killpg(pid, signal.SIGQUIT)
        except ProcessLookupError:
            pass
        for _ in range(100):
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
    else:
        print(_command_line.__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_command_line(sys.argv[1:]))
