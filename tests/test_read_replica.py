"""A real streaming standby (PostgreSQL only): a primary cluster made with initdb in a temporary folder
on a free port (the machine's main cluster allows no replication), a standby made from it with
``pg_basebackup -R`` on another port, and the app with ``DATABASE_REPLICA_URL`` pointing at the standby.

With replay paused on the standby (so it is visibly behind):
1. the public board reads from the replica (a visitor sees the old village name);
2. a committee member who has just published a ranking reads it (from the primary) while a visitor
   gets 404 for it from the replica; once the standby has replayed the write, the publisher's pages
   read from the replica again;
3. with the standby stopped, the board answers from the primary (also when the standby goes away
   after the page checked it).
"""
from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from moralbank import create_app
from moralbank.extensions import db
from moralbank.testing.servers import free_port
from support import BACKEND, DEMO_PASSWORD, PHONES, SECRET, csrf_from

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(BACKEND != "postgresql", reason="streaming replication needs PostgreSQL "
                                                                 "(MORALBANK_TEST_DB=postgresql)")]


def _bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_basebackup"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


class Cluster:
    """A throw-away PostgreSQL cluster run as the ``postgres`` OS user (when the tests run as root)."""

    def __init__(self, bin_dir: Path, folder: Path, name: str):
        self.bin, self.data, self.port = bin_dir, folder / name, free_port()
        self.socket_dir, self.log = folder, folder / f"{name}.log"

    def _run(self, *command: str) -> subprocess.CompletedProcess:
        if os.geteuid() == 0:
            command = ("runuser", "-u", "postgres", "--", *command)
        return subprocess.run(command, check=True, capture_output=True, text=True, timeout=60)

    def initdb(self) -> None:
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "--encoding=UTF8", "--locale=C", "--no-sync")

    def basebackup_of(self, primary: "Cluster") -> None:
        self._run(str(self.bin / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
                  "-D", str(self.data), "-R", "-X", "stream", "--checkpoint=fast", "--no-sync")

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                   f"-c shared_buffers=16MB -c max_connections=30")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "30",
                  "-o", options, "start")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            try:
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
            except subprocess.CalledProcessError:
                pass

    def url(self, database: str = "moralbank") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def sql(self, statement: str, database: str = "moralbank"):
        import psycopg
        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname=database,
                             autocommit=True) as connection:
            return connection.execute(statement).fetchall() if "select" in statement.lower() else \
                connection.execute(statement)


def copy_demo(databases, bin_dir: Path, folder: Path, primary: "Cluster") -> None:
    """The suite's migrated demo database (a template on the main server) into the new primary."""
    from sqlalchemy.engine import make_url
    from support import PG_ADMIN_URL

    main = make_url(PG_ADMIN_URL)
    dump = folder / "demo.dump"
    subprocess.run([str(bin_dir / "pg_dump"), "-Fc", "-h", main.host or "127.0.0.1", "-p", str(main.port or 5432),
                    "-U", main.username or "postgres", "-f", str(dump), databases.template(seed=True)],
                   check=True, capture_output=True, timeout=120, env={**os.environ, "PGPASSWORD": main.password or ""})
    subprocess.run([str(bin_dir / "pg_restore"), "--no-owner", "-h", "127.0.0.1", "-p", str(primary.port),
                    "-U", "postgres", "-d", "moralbank", str(dump)], check=True, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def clusters(databases):
    bin_dir = _bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin")
    folder = Path(tempfile.mkdtemp(prefix="moralbank-replica-", dir="/tmp"))
    if os.geteuid() == 0:
        postgres = pwd.getpwnam("postgres")
        os.chown(folder, postgres.pw_uid, postgres.pw_gid)
    primary, standby = Cluster(bin_dir, folder, "primary"), Cluster(bin_dir, folder, "standby")
    try:
        primary.initdb()
        primary.start()
        primary.sql("CREATE DATABASE moralbank", database="postgres")
        copy_demo(databases, bin_dir, folder, primary)
        standby.basebackup_of(primary)
        standby.start()
        yield primary, standby
    finally:
        standby.stop()
        primary.stop()
        shutil.rmtree(folder, ignore_errors=True)


def wait_until(condition, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def replayed_up_to_primary(primary: Cluster, standby: Cluster) -> bool:
    target = primary.sql("SELECT pg_current_wal_lsn()::text")[0][0]
    return standby.sql(f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn")[0][0]


def reads(app, target: str) -> float:
    from moralbank.metrics import READS
    return READS.labels(target)._value.get()


def login(client, who: str) -> None:
    page = client.get("/login")
    answer = client.post("/login", data={"phone": PHONES[who], "password": DEMO_PASSWORD,
                                         "csrf_token": csrf_from(page.get_data(as_text=True))})
    assert answer.status_code == 302, answer.get_data(as_text=True)[:500]


def test_replica_reads_own_writes_and_fallback(clusters, monkeypatch):
    primary, standby = clusters
    wait_until(lambda: replayed_up_to_primary(primary, standby))
    app = create_app({"SQLALCHEMY_DATABASE_URI": primary.url(), "DATABASE_REPLICA_URL": standby.url(),
                      "SECRET_KEY": SECRET, "TESTING": True})
    visitor, committee = app.test_client(), app.test_client()
    login(committee, "committee")
    try:
        # 1. the public board reads from the replica: with replay paused, a change on the primary
        #    is not on the board yet
        standby.sql("SELECT pg_wal_replay_pause()")
        primary.sql("UPDATE areas SET name = '八里庙新村' WHERE code = 'BLM'")
        before = reads(app, "replica")
        board = visitor.get("/v/BLM")
        assert board.status_code == 200
        assert "八里庙新村" not in board.get_data(as_text=True)
        assert reads(app, "replica") == before + 1

        # 2. the committee publishes a ranking: its own pages read it from the primary until the
        #    replica has replayed that far; a visitor, on the replica, does not see it yet
        dashboard = committee.get("/dashboard")
        assert dashboard.status_code == 200
        month = re.search(r'<option value="(\d{4}-\d{2})"', dashboard.get_data(as_text=True)).group(1)
        published = committee.post("/committee/rankings", data={
            "csrf_token": csrf_from(dashboard.get_data(as_text=True)), "idempotency_key": uuid.uuid4().hex,
            "period": month, "title": "副本测试榜"})
        assert published.status_code == 302, published.get_data(as_text=True)[:300]
        snapshot_url = published.headers["Location"]
        assert "/rankings/" in snapshot_url
        mine = committee.get(snapshot_url)
        assert mine.status_code == 200 and "副本测试榜" in mine.get_data(as_text=True)
        assert visitor.get(snapshot_url).status_code == 404  # the replica has not replayed it
        assert committee.get("/v/BLM").status_code == 200
        assert "八里庙新村" in committee.get("/v/BLM").get_data(as_text=True)  # the primary, while behind

        standby.sql("SELECT pg_wal_replay_resume()")
        wait_until(lambda: replayed_up_to_primary(primary, standby))
        assert visitor.get(snapshot_url).status_code == 200
        before = reads(app, "replica")
        assert committee.get(snapshot_url).status_code == 200
        assert reads(app, "replica") == before + 1  # caught up: the publisher reads the replica again
        # an export reads the replica and writes its audit entry on the primary (a standby refuses writes)
        export = committee.get(f"/exports/rankings.csv?period={month}")
        assert export.status_code == 200 and export.mimetype == "text/csv"
        assert reads(app, "replica") == before + 2
        assert primary.sql("SELECT count(*) FROM audit_log WHERE action = 'export.rankings'")[0][0] == 1

        # 3. the replica down: the pages read from the primary
        standby.stop()
        before = reads(app, "primary")
        board = visitor.get("/v/BLM")
        assert board.status_code == 200 and "八里庙新村" in board.get_data(as_text=True)
        assert committee.get("/dashboard").status_code == 200
        assert reads(app, "primary") == before + 2  # the board and the dashboard
        # … and if it goes away between the check and the page's reads, the page is read again from the primary
        from moralbank import replica
        replica._down_until.clear()
        monkeypatch.setattr(replica, "_replica_ready", lambda engine: True)
        board = visitor.get("/v/BLM")
        assert board.status_code == 200 and "八里庙新村" in board.get_data(as_text=True)
        assert reads(app, "primary") == before + 3
    finally:
        with app.app_context():
            db.session.remove()
            for engine in db.engines.values():
                engine.dispose()
