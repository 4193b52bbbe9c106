"""`flask backup PATH`: an online copy of the SQLite database that restores and verifies."""
from __future__ import annotations

import shutil

import pytest
from sqlalchemy import func, select

from support import BACKEND, SECRET, session_of
from moralbank import create_app
from moralbank.ledger.models import Transfer
from moralbank.ledger.verify import verify


@pytest.mark.skipif(BACKEND != "sqlite", reason="SQLite online backup; PostgreSQL uses pg_dump (see next test)")
def test_backup_and_restore_drill(app, runner, tmp_path):
    with session_of(app) as session:
        transfers = session.scalar(select(func.count()).select_from(Transfer))
    copy = tmp_path / "backup.db"
    result = runner.invoke(args=["backup", str(copy)])
    assert result.exit_code == 0, result.output
    assert f"{transfers} transfers, ledger consistent" in result.output

    # The drill: restore the copy as the live database of a fresh app and check it.
    restored = tmp_path / "restored.db"
    shutil.copyfile(copy, restored)
    other = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{restored}", "SECRET_KEY": SECRET, "TESTING": True})
    with session_of(other) as session:
        report = verify()
        assert report.ok and report.transfers == transfers
        session.get_bind().dispose()
    response = other.test_client().post("/api/v1/auth/tokens",
                                        json={"phone": "13800000003", "password": "demo-pass-2026"})
    assert response.status_code == 201

    again = runner.invoke(args=["backup", str(copy)])
    assert again.exit_code != 0 and "exists" in again.output


@pytest.mark.skipif(BACKEND == "sqlite", reason="pg_dump and pg_restore drill")
def test_pg_dump_backup_and_restore_drill(app, runner, tmp_path):
    import subprocess

    from sqlalchemy.engine import make_url

    from support import pg_admin, pg_url

    with session_of(app) as session:
        transfers = session.scalar(select(func.count()).select_from(Transfer))
    dump = tmp_path / "backup.dump"
    result = runner.invoke(args=["backup", str(dump)])
    assert result.exit_code == 0, result.output
    name = "mbt_restore_" + tmp_path.name[-20:].replace("-", "_").lower()
    with pg_admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = make_url(pg_url(name))
        restore = subprocess.run(["pg_restore", "--no-owner", "--host", url.host or "127.0.0.1", "--port",
                                  str(url.port or 5432), "--username", url.username or "postgres",
                                  "--dbname", name, str(dump)], capture_output=True, text=True)
        assert restore.returncode == 0, restore.stderr
        other = create_app({"SQLALCHEMY_DATABASE_URI": pg_url(name), "SECRET_KEY": SECRET, "TESTING": True})
        with session_of(other) as session:
            report = verify()
            assert report.ok and report.transfers == transfers
            session.get_bind().dispose()
    finally:
        with pg_admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
