"""Flask commands: seed-demo, create-user, ledger verify, expire and expire-holds, awards post-due, import-households."""
from __future__ import annotations

import sys

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext
from flask_babel import gettext as _
from sqlalchemy import select

from .database import write_transaction
from .errors import DomainError
from .extensions import db

ledger_cli = AppGroup("ledger", help="Check the ledger.")
awards_cli = AppGroup("awards", help="Award housekeeping (for cron).")



@click.command("seed-demo")
@with_appcontext
@click.option("--if-empty", is_flag=True, help="only when the database holds no village at all (make run)")
def seed_demo_command(if_empty):
    """Load the demo village (does nothing if it exists; refused in production)."""
    if current_app.config["MORALBANK_ENV"] == "production":
        raise click.ClickException("seed-demo refuses to run in production (MORALBANK_ENV=production)")
    from .demo import seed_demo
    from .people.models import Area

    if if_empty and db.session.scalar(select(Area.id).where(Area.level == "village").limit(1)) is not None:
        click.echo("Database already holds villages; demo not loaded.")
        return

    if not seed_demo(echo=click.echo):
        click.echo("Demo village already present; nothing done.")


@click.command("create-user")
@with_appcontext
@click.option("--phone", required=True)
@click.option("--name", required=True)
@click.option("--role", required=True, type=click.Choice(["admin", "committee", "grid", "resident", "clerk",
                                                          "supervisor"]))
@click.option("--village", "village_code", help="village code (or a town/county code for supervisors, admins)")
@click.option("--hamlet", "hamlet_codes", multiple=True, help="hamlet code or name, for grid managers (repeatable)")
@click.option("--household", "household_id", help="household id or number, for residents")
@click.option("--store", "store_id", type=int, help="store id, for clerks")
@click.option("--password", help="the password (read from stdin when omitted)")
def create_user_command(phone, name, role, village_code, hamlet_codes, household_id, store_id, password):
    """Create a login. The password comes from --password or standard input."""
    from .people.models import Area, Household
    from .people.service import create_user
    from .stores.models import Store

    if password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=sys.stdin.isatty())
    area = None
    if village_code:
        area = db.session.scalar(select(Area).where(Area.code == village_code.strip().upper()))
        if area is None:
            raise click.ClickException(f"no area with code {village_code}")
    household = None
    if household_id:
        query = select(Household).where(Household.number == household_id)
        if area is not None:
            query = query.where(Household.village_id == area.id)
        household = db.session.scalar(query)
        if household is None and household_id.isdigit():
            household = db.session.get(Household, int(household_id))
        if household is None:
            raise click.ClickException(f"no household {household_id}")
    store = db.session.get(Store, store_id) if store_id else None
    if store_id and store is None:
        raise click.ClickException(f"no store {store_id}")
    hamlets = []
    for code in hamlet_codes:
        hamlet = db.session.scalar(select(Area).where(Area.level == "hamlet", Area.parent_id == (area.id if area else None),
                                                      (Area.code == code) | (Area.name == code)))
        if hamlet is None:
            raise click.ClickException(f"no hamlet {code} in {village_code}")
        hamlets.append(hamlet)
    try:
        with write_transaction():
            user = create_user(phone=phone, name=name, password=password, role=role, area=area,
                               household=household, store=store, hamlets=hamlets)
    except DomainError as error:
        raise click.ClickException(error.message + (f" {error.fields}" if error.fields else ""))
    click.echo(f"created user {user.id} {user.phone} ({role})")


@ledger_cli.command("verify")
def ledger_verify_command():
    """Recompute every balance and score from the transfers; exit 1 on any discrepancy."""
    from .ledger.verify import verify

    report = verify()
    from .audit.service import record
    db.session.rollback()  # end verify's read transaction: the record is a write of its own
    with write_transaction():  # the result and time, for /metrics (moralbank_ledger_verify_last_*)
        record("ledger.verify", detail={"ok": report.ok, "discrepancies": len(report.discrepancies),
                                        "transfers": report.transfers})
    for line in report.discrepancies:
        click.echo(f"DISCREPANCY {line}")
    click.echo(f"{report.transfers} transfers, {report.accounts} accounts, {report.villages} villages, "
               f"{report.score_rows} score rows: " + ("consistent" if report.ok else
                                                      f"{len(report.discrepancies)} discrepancies"))
    sys.exit(0 if report.ok else 1)


@ledger_cli.command("expire")
@click.option("--village", "village_code", help="only this village (code)")
def ledger_expire_command(village_code):
    """Lapse the points due under each village's expiry setting (for cron, nightly); prints each lapse."""
    from .awards.expiry import expire_due

    done = expire_due(village_code=village_code)
    for lapse in done:
        click.echo(f"{lapse.village} {lapse.household}: {lapse.points} points earned {lapse.earned_on} "
                   f"lapsed (last day {lapse.on})" + (" [already done]" if lapse.replayed else ""))
    fresh = [lapse for lapse in done if not lapse.replayed]
    click.echo(f"lapsed {sum(lapse.points for lapse in fresh)} points in {len(fresh)} lots of "
               f"{len({(lapse.village, lapse.household) for lapse in fresh})} households")


@ledger_cli.command("expire-holds")
def ledger_expire_holds_command():
    """Void pending holds past their expiry (offline vouchers not used in time): their points return."""
    from .database import utcnow
    from .ledger import holds

    voided = points = 0
    seen: set[int] = set()
    while True:
        due = [hold.id for hold in holds.expired_pending(utcnow(), limit=200) if hold.id not in seen]
        db.session.rollback()  # end the read before each hold gets its own write transaction
        if not due:
            break
        for hold_id in due:
            seen.add(hold_id)
            try:
                with write_transaction():
                    hold = db.session.get(holds.Hold, hold_id)
                    if hold.status != "pending":
                        continue  # resolved meanwhile (a late sale synced): nothing to return
                    holds.void(hold, reason=_("离线券过期未用，积分退回"))
                    amount, household_id = hold.amount, hold.household_id
            except holds.HoldResolved:
                continue  # a sale's sync posted it between the read and the void
            click.echo(f"voided hold {hold_id}: {amount} points back to household {household_id}")
            voided += 1
            points += amount
    click.echo(f"{voided} holds voided, {points} points returned")


@awards_cli.command("post-due")
def awards_post_due_command():
    """Post approved awards whose public notice has ended."""
    from .awards.service import post_due

    click.echo(f"posted {post_due()} awards")


@click.command("import-households")
@with_appcontext
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--village", "village_code", required=True)
def import_households_command(file, village_code):
    """Import a CSV or XLSX roster into a village: every row, or none if any row is bad."""
    from .people.roster import import_roster
    from .people.service import village_by_code

    try:
        village = village_by_code(village_code)
        report = import_roster(file, village)
    except DomainError as error:
        raise click.ClickException(error.message)
    if not report.ok:
        for line_no, message in report.errors:
            click.echo(f"第 {line_no} 行 (row {line_no}): {message}", err=True)
        click.echo(f"nothing imported: {len(report.errors)} bad rows of {report.rows}", err=True)
        sys.exit(1)
    click.echo(f"imported {report.imported} households into {village.name} ({village.code})")


@click.command("backup")
@click.argument("path", type=click.Path(dir_okay=False, writable=True))
@with_appcontext
def backup_command(path):
    """Copy the database to PATH while the app runs (SQLite online backup), then verify the copy.

    On PostgreSQL use pg_dump (the command prints how); point-in-time recovery with WAL
    archiving is the county setup.
    """
    import sqlite3
    from pathlib import Path

    from sqlalchemy.engine import make_url

    url = make_url(current_app.config["SQLALCHEMY_DATABASE_URI"])
    if url.get_backend_name() != "sqlite":
        _backup_postgresql(url, path)
        return
    target = Path(path)
    if target.exists():
        raise click.ClickException(f"{path} exists; choose a new file")
    source = sqlite3.connect(url.database)
    copy = sqlite3.connect(target)
    try:
        source.backup(copy)  # consistent even while the app writes (SQLite's online backup API)
    finally:
        source.close()
    check = copy.execute("PRAGMA integrity_check").fetchone()[0]
    copy.close()
    if check != "ok":
        raise click.ClickException(f"the copy failed SQLite's integrity check: {check}")
    from . import create_app
    from .ledger.verify import verify

    with create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{target.resolve()}",
                     "SECRET_KEY": current_app.config["SECRET_KEY"],
                     "MORALBANK_ENV": current_app.config["MORALBANK_ENV"]}).app_context():
        report = verify()
        db.session.remove()
        db.engine.dispose()
    if not report.ok:
        raise click.ClickException("the copy's ledger does not verify: " + "; ".join(report.discrepancies[:5]))
    click.echo(f"backed up to {path}: {report.transfers} transfers, ledger consistent")


def _backup_postgresql(url, path) -> None:
    """pg_dump in custom format (restore with pg_restore); guidance when pg_dump is not installed."""
    import os
    import shutil
    import subprocess

    plain = url.set(drivername="postgresql")
    if shutil.which("pg_dump") is None:
        click.echo("PostgreSQL: install the PostgreSQL client, then\n"
                   f"  pg_dump --format=custom --file={path} '{plain.render_as_string(False)}'\n"
                   "restore with pg_restore --clean --dbname=…, and run `flask ledger verify` on the copy.")
        sys.exit(2)
    if os.path.exists(path):
        raise click.ClickException(f"{path} exists; choose a new file")
    env = dict(os.environ, PGPASSWORD=url.password or "")
    command = ["pg_dump", "--format=custom", f"--file={path}", "--host", url.host or "127.0.0.1",
               "--port", str(url.port or 5432), "--username", url.username or "postgres", url.database]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise click.ClickException(f"pg_dump failed: {result.stderr.strip()}")
    click.echo(f"backed up to {path} with pg_dump (custom format); restore it with pg_restore into an empty "
               "database and run `flask ledger verify` there")


def init_app(app) -> None:
    for command in (seed_demo_command, create_user_command, import_households_command, backup_command):
        app.cli.add_command(command)
    app.cli.add_command(ledger_cli)
    app.cli.add_command(awards_cli)
