"""The PostgreSQL part of the HTTP figures: a throwaway database (made, migrated, loaded from the
SQLite data set with COPY, dropped), whether PostgreSQL and Redis answer, and the psycopg baseline
the redemption figure is compared with."""
from __future__ import annotations

import os
import sqlite3
import socket
import time
import uuid
from pathlib import Path

# Imports stay light here (the app's come inside the functions): the baseline's processes are
# spawned and import this module.
from bench.load import start_together

PG_ADMIN = os.environ.get("BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")


def pg_reachable() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN, connect_timeout=3):
            return True
    except Exception:
        return False


def pg_create(name: str) -> str:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        # Databases left by an earlier run that was killed (its process is gone) go first.
        for (stale,) in admin.execute("SELECT datname FROM pg_database WHERE datname LIKE 'moralbank\\_bench\\_%'"):
            pid = stale.rsplit("_", 1)[1]
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                admin.execute(f'DROP DATABASE IF EXISTS "{stale}" WITH (FORCE)')
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    return PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + "/" + name


def redis_reachable() -> bool:
    host, port = REDIS_URL.split("//", 1)[1].split("/", 1)[0].split(":")
    try:
        with socket.create_connection((host, int(port)), timeout=3) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def pg_drop(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_dsn(uri: str) -> str:
    return uri.replace("postgresql+psycopg://", "postgresql://")


def migrate(uri: str) -> None:
    from flask_migrate import upgrade

    from bench.fixtures import bench_app, close_app

    app = bench_app(uri)
    with app.app_context():
        upgrade()
    close_app(app)


def _copy_text_expression(column) -> str:
    """SQL (for SQLite) turning one column into PostgreSQL COPY text: \\N for NULL, escapes for
    backslash, tab, newline and carriage return. The formatting runs in SQLite's C code, so
    Python only moves blocks of lines."""
    value = f'CAST("{column}" AS TEXT)'
    for char, escaped in (("'\\'", "'\\\\'"), ("char(9)", "'\\t'"), ("char(10)", "'\\n'"),
                          ("char(13)", "'\\r'")):
        value = f"replace({value}, {char}, {escaped})"
    return f"coalesce({value}, '\\N')"


def copy_sqlite_to_postgres(source: Path, uri: str) -> dict:
    """Every row of the SQLite data set into the migrated PostgreSQL database (COPY, table by table
    in foreign-key order), then the id sequences moved past the copied ids, and ANALYZE."""
    import psycopg

    from moralbank import models  # noqa: F401  (every table on the metadata)
    from moralbank.extensions import db

    lite = sqlite3.connect(source)
    present = {name for (name,) in lite.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    counts = {}
    with psycopg.connect(pg_dsn(uri)) as pg:
        # A bulk load of rows already consistent: no per-row foreign-key triggers (superuser only).
        pg.execute("SET session_replication_role = replica")
        for table in db.metadata.sorted_tables:
            if table.name not in present:
                continue
            columns = [column.name for column in table.columns]
            line = " || char(9) || ".join(_copy_text_expression(name) for name in columns)
            rows = lite.execute(f'SELECT {line} FROM "{table.name}"')
            count = 0
            quoted = ", ".join(f'"{name}"' for name in columns)
            with pg.cursor().copy(f'COPY "{table.name}" ({quoted}) FROM STDIN') as copy:
                while block := rows.fetchmany(20_000):
                    copy.write("".join(text + "\n" for (text,) in block))
                    count += len(block)
            counts[table.name] = count
            if "id" in columns:
                pg.execute(f"SELECT setval(pg_get_serial_sequence('\"{table.name}\"', 'id'), "
                           f"(SELECT COALESCE(MAX(id), 0) + 1 FROM \"{table.name}\"), false)")
        pg.execute("SET session_replication_role = DEFAULT")
        pg.commit()
        pg.autocommit = True
        pg.execute("ANALYZE")
    lite.close()
    return counts


def _baseline_process(dsn: str, jobs: list, seconds: float, ready, go, results) -> None:
    """The PostgreSQL baseline: one connection, one transaction per redemption doing the writes the
    service does (and the one read they need, the code by its number), with the ids of accounts,
    item, store and clerk known up front:

      INSERT idempotency_records (clerk, key, hash) ON CONFLICT DO NOTHING RETURNING id
      SELECT id, household_id FROM redemption_codes WHERE village_id = … AND code = … FOR UPDATE
      UPDATE redemption_codes SET consumed_at = now WHERE id = … AND consumed_at IS NULL AND expires_at > now
      UPDATE items SET stock = stock - 1 WHERE id = … AND stock >= 1
      INSERT redemptions … RETURNING id;  INSERT redemption_lines …
      INSERT transfers (household → store, idempotency key redemption:<id>) ON CONFLICT DO NOTHING RETURNING id
      UPDATE accounts SET balance = balance ± 1 … RETURNING balance   (both, ascending id; the debit guarded ≥ 0)
      INSERT audit_log (store.redeem)
      UPDATE idempotency_records SET status_code = 201, response_body = … WHERE id = …
      COMMIT

    It skips what the service adds around them: token, user and grant lookups, the store, household
    and item reads, the ORM, and the balance-after query for the receipt."""
    from datetime import datetime, timezone

    import psycopg
    from psycopg.types.json import Json

    done = 0
    with psycopg.connect(dsn) as connection:
        ready.put(os.getpid())
        go.wait()
        start_at = time.time()
        deadline = start_at + seconds
        cpu = time.process_time()
        for job in jobs:
            if time.time() >= deadline:
                break
            now = datetime.now(timezone.utc).replace(tzinfo=None)
            with connection.transaction():
                cursor = connection.cursor()
                claimed = cursor.execute(
                    "INSERT INTO idempotency_records (user_id, key, request_hash, created_at) VALUES (%s, %s, %s, %s) "
                    "ON CONFLICT DO NOTHING RETURNING id",
                    (job["clerk_id"], f"baseline-{uuid.uuid4().hex}", "0" * 64, now)).fetchone()[0]
                code_id, household_id = cursor.execute(
                    "SELECT id, household_id FROM redemption_codes WHERE village_id = %s AND code = %s FOR UPDATE",
                    (job["village_id"], job["code"])).fetchone()
                consumed = cursor.execute(
                    "UPDATE redemption_codes SET consumed_at = %s WHERE id = %s AND consumed_at IS NULL "
                    "AND expires_at > %s", (now, code_id, now)).rowcount
                assert consumed == 1
                taken = cursor.execute("UPDATE items SET stock = stock - 1 WHERE id = %s AND stock >= 1",
                                       (job["item_id"],)).rowcount
                assert taken == 1
                redemption_id = cursor.execute(
                    "INSERT INTO redemptions (village_id, store_id, household_id, points, clerk_id, code_id, "
                    "created_at) VALUES (%s, %s, %s, 1, %s, %s, %s) RETURNING id",
                    (job["village_id"], job["store_id"], household_id, job["clerk_id"], code_id, now)).fetchone()[0]
                cursor.execute("INSERT INTO redemption_lines (redemption_id, item_id, name, unit_points, quantity) "
                               "VALUES (%s, %s, '基准商品', 1, 1)", (redemption_id, job["item_id"]))
                cursor.execute(
                    "INSERT INTO transfers (village_id, debit_account_id, credit_account_id, amount, code, "
                    "idempotency_key, redemption_id, actor_id, reason, created_at) VALUES (%s, %s, %s, 1, "
                    "'redemption', %s, %s, %s, '积分超市', %s) ON CONFLICT DO NOTHING RETURNING id",
                    (job["village_id"], job["household_account"], job["store_account"],
                     f"redemption:{redemption_id}", redemption_id, job["clerk_id"], now)).fetchone()
                for account, delta in sorted(((job["household_account"], -1), (job["store_account"], 1))):
                    guard = " AND balance + %s >= 0" if delta < 0 else ""
                    params = (delta, account, delta) if delta < 0 else (delta, account)
                    assert cursor.execute(f"UPDATE accounts SET balance = balance + %s WHERE id = %s{guard} "
                                          "RETURNING balance", params).fetchone() is not None
                cursor.execute(
                    "INSERT INTO audit_log (village_id, actor_id, action, target_type, target_id, detail, source, "
                    "created_at) VALUES (%s, %s, 'store.redeem', 'redemption', %s, %s, '127.0.0.1', %s)",
                    (job["village_id"], job["clerk_id"], redemption_id,
                     Json({"points": 1, "store_id": job["store_id"]}), now))
                cursor.execute("UPDATE idempotency_records SET status_code = 201, response_body = %s WHERE id = %s",
                               (Json({"id": redemption_id, "household_id": household_id, "points": 1}), claimed))
            done += 1
        cpu = time.process_time() - cpu
    results.put((done, start_at, time.time(), cpu))


def psycopg_baseline(uri: str, fixture: dict, codes: list[dict], *, connections: int, seconds: float) -> dict:
    import multiprocessing

    villages = fixture["villages"]
    jobs = [{"village_id": villages[c["village"]]["village_id"], "store_id": villages[c["village"]]["store_id"],
             "item_id": villages[c["village"]]["item_id"], "clerk_id": villages[c["village"]]["clerk_id"],
             "store_account": villages[c["village"]]["store_account_id"],
             "household_account": c["household_account"], "code": c["code"]} for c in codes]
    context = multiprocessing.get_context("spawn")
    ready, go, results = context.Queue(), context.Event(), context.Queue()
    children = [context.Process(target=_baseline_process,
                                args=(pg_dsn(uri), jobs[index::connections], seconds, ready, go, results))
                for index in range(connections)]
    for child in children:
        child.start()
    outcomes = start_together(children, ready, go, results, seconds)
    total = sum(count for count, _, _, _ in outcomes)
    start_at = min(started for _, started, _, _ in outcomes)
    elapsed = min(max(finished for _, _, finished, _ in outcomes), start_at + seconds) - start_at
    return {"requests": total, "seconds": round(elapsed, 2), "rps": total / elapsed,
            "cpu_ms_per_request": sum(cpu for _, _, _, cpu in outcomes) * 1000 / max(total, 1),
            "exhausted": elapsed < seconds - 0.5}
