"""Build a county-sized data set, streaming: 200 villages × 4 hamlets, households, accounts and
transfers written in bulk with their cached balances and period scores kept consistent, so that
`flask ledger verify` holds on the result. Memory stays flat: transfers are generated one
household at a time and written in batches. Every award, deduction and redemption transfer has
its real award or redemption row and carries its id (and the key the app would give it), so the
planner's statistics on those columns are those of a real ledger.

Used by bench/run.py; the schema comes from the real migrations.
"""
from __future__ import annotations

import random
import sqlite3
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from moralbank.periods import periods_of

ZONE = ZoneInfo("Asia/Shanghai")
BATCH = 20_000
#: bumped when what ``build`` writes changes: ``bench/run.py --reuse`` rebuilds older data sets
FORMAT = 2


def naive(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).replace(tzinfo=None).isoformat(sep=" ")


def build(path: str, *, villages: int = 200, households: int = 100_000, transfers: int = 2_000_000,
          months: int = 12, seed: int = 7, echo=print) -> dict:
    """Fill an empty, migrated SQLite database at ``path``. Returns counts."""
    rng = random.Random(seed)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")  # a throwaway data set: speed over durability
    conn.execute("PRAGMA foreign_keys=OFF")
    now = datetime.now(timezone.utc)
    start = now - timedelta(days=30 * months)
    ts = naive(now)
    conn.execute("BEGIN")
    area_sql = ("INSERT INTO areas (id, parent_id, level, code, name, notice_days, code_ttl_seconds, "
                "approval_threshold, star_thresholds, fen_per_point, created_at) "
                "VALUES (?, ?, ?, ?, ?, 3, 300, 10, ?, 100, ?)")
    conn.execute(area_sql, (1, None, "county", "BENCH", "基准县", "[]", ts))
    area_id = 2
    towns = max(1, villages // 20)
    village_ids, hamlets_of = [], {}
    for t in range(towns):
        town_id = area_id
        area_id += 1
        conn.execute(area_sql, (town_id, 1, "town", f"T{t:03d}", f"镇{t}", "[]", ts))
    for v in range(villages):
        village_id = area_id
        area_id += 1
        town_id = 2 + v % towns
        conn.execute(area_sql, (village_id, town_id, "village", f"V{v:04d}", f"村{v}", "[20, 50, 100, 160, 240]", ts))
        village_ids.append(village_id)
        hamlets_of[village_id] = []
        for h in range(4):
            conn.execute(area_sql, (area_id, village_id, "hamlet", f"V{v:04d}-{h}", f"屯{h}", "[]", ts))
            hamlets_of[village_id].append(area_id)
            area_id += 1
    account_id = 1
    village_accounts, store_accounts = {}, {}
    for village_id in village_ids:
        conn.execute("INSERT INTO accounts (id, village_id, kind, household_id, store_id, balance) "
                     "VALUES (?, ?, 'issuance', NULL, NULL, 0)", (account_id, village_id))
        conn.execute("INSERT INTO accounts (id, village_id, kind, household_id, store_id, balance) "
                     "VALUES (?, ?, 'sink', NULL, NULL, 0)", (account_id + 1, village_id))
        village_accounts[village_id] = [account_id, account_id + 1, 0, 0]
        account_id += 2
        conn.execute("INSERT INTO stores (id, village_id, name, address, active) VALUES (?, ?, '积分超市', NULL, 1)",
                     (village_id, village_id))
        conn.execute("INSERT INTO accounts (id, village_id, kind, household_id, store_id, balance) "
                     "VALUES (?, ?, 'store', NULL, ?, 0)", (account_id, village_id, village_id))
        store_accounts[village_id] = [account_id, 0]
        account_id += 1
        for rule_id, category, title, points in ((2 * village_id, "volunteer", "志愿服务", 5),
                                                 (2 * village_id + 1, "deduction", "乱扔垃圾", -5)):
            conn.execute("INSERT INTO rules (id, village_id, family_id, version, active, category, title, points, "
                         "cap_count, cap_period, photo_required, created_at) "
                         "VALUES (?, ?, ?, 1, 1, ?, ?, ?, NULL, NULL, 0, ?)",
                         (rule_id, village_id, rule_id, category, title, points, ts))
    conn.execute("COMMIT")

    per_household = transfers / households
    transfer_rows, score_rows, account_rows, household_rows, resident_rows = [], [], [], [], []
    award_rows, redemption_rows = [], []
    transfer_id = award_id = redemption_id = 1
    written = 0

    def flush(final=False):
        nonlocal transfer_rows, score_rows, account_rows, household_rows, resident_rows, award_rows, redemption_rows
        if not final and len(transfer_rows) < BATCH:
            return
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO awards (id, village_id, household_id, rule_id, quantity, points, status, note, "
                         "occurred_on, proposed_by_id, proposed_at, decided_by_id, decided_at, notice_ends_at, "
                         "posted_at, decision_reason, photo_path) "
                         "VALUES (?, ?, ?, ?, 1, ?, 'posted', NULL, ?, NULL, ?, NULL, ?, ?, ?, NULL, NULL)", award_rows)
        conn.executemany("INSERT INTO redemptions (id, village_id, store_id, household_id, points, clerk_id, code_id, "
                         "created_at, balance_after) VALUES (?, ?, ?, ?, ?, NULL, NULL, ?, ?)", redemption_rows)
        conn.executemany("INSERT INTO households (id, village_id, hamlet_id, number, address, created_at) "
                         "VALUES (?, ?, ?, ?, NULL, ?)", household_rows)
        conn.executemany("INSERT INTO residents (id, village_id, household_id, name, phone, id_number_masked, "
                         "relation, is_head) VALUES (?, ?, ?, ?, NULL, NULL, '户主', 1)", resident_rows)
        conn.executemany("INSERT INTO accounts (id, village_id, kind, household_id, store_id, balance) "
                         "VALUES (?, ?, 'household', ?, NULL, ?)", account_rows)
        conn.executemany("INSERT INTO transfers (id, village_id, debit_account_id, credit_account_id, amount, code, "
                         "idempotency_key, award_id, redemption_id, settlement_id, reverses_id, actor_id, reason, "
                         "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, ?, ?)",
                         transfer_rows)
        conn.executemany("INSERT INTO household_scores (household_id, period, village_id, hamlet_id, score, "
                         "reached_at) VALUES (?, ?, ?, ?, ?, ?)", score_rows)
        conn.execute("COMMIT")
        transfer_rows, score_rows, account_rows, household_rows, resident_rows = [], [], [], [], []
        award_rows, redemption_rows = [], []

    span = (now - start).total_seconds()
    for household_id in range(1, households + 1):
        village_id = village_ids[(household_id - 1) * len(village_ids) // households]
        hamlet_id = hamlets_of[village_id][household_id % 4]
        issuance, sink = village_accounts[village_id][0], village_accounts[village_id][1]
        store = store_accounts[village_id][0]
        own = account_id
        account_id += 1
        household_rows.append((household_id, village_id, hamlet_id, f"H{household_id:06d}", ts))
        resident_rows.append((household_id, village_id, household_id, "王" + "建国秀兰志强玉梅"[household_id % 8]
                              + "华明军英"[household_id % 4]))
        count = int(per_household) + (1 if rng.random() < per_household % 1 else 0)
        moments = sorted(start + timedelta(seconds=rng.random() * span) for _ in range(count))
        balance = 0
        scores: dict[str, list] = {}
        for moment in moments:
            roll = rng.random()
            if roll < 0.15 and balance >= 10:
                amount = rng.choice((5, 8, 10, 12, 15, 40, 60))
                amount = min(amount, balance)
                debit, credit, code = own, store, "redemption"
                balance -= amount
                store_accounts[village_id][1] += amount
                delta = 0
            elif roll < 0.20:
                amount = rng.choice((3, 5, 10, 20))
                debit, credit, code = own, sink, "deduction"
                balance -= amount
                village_accounts[village_id][3] += amount
                delta = -amount
            else:
                amount = rng.choice((2, 3, 5, 5, 10, 20))
                debit, credit, code = issuance, own, "award"
                balance += amount
                village_accounts[village_id][2] -= amount
                delta = amount
            stamp = naive(moment)
            award, redemption = None, None
            if code == "redemption":
                redemption = redemption_id
                redemption_id += 1
                redemption_rows.append((redemption, village_id, village_id, household_id, amount, stamp, balance))
                key = f"redemption:{redemption}"
            else:
                award = award_id
                award_id += 1
                rule = 2 * village_id + (1 if code == "deduction" else 0)
                award_rows.append((award, village_id, household_id, rule, delta, moment.astimezone(ZONE).date().isoformat(),
                                   stamp, stamp, stamp, stamp))
                key = f"award:{award}"
            transfer_rows.append((transfer_id, village_id, debit, credit, amount, code, key, award, redemption,
                                  code, stamp))
            transfer_id += 1
            if delta:
                for period in periods_of(moment, ZONE):
                    entry = scores.setdefault(period, [0, stamp])
                    entry[0] += delta
                    entry[1] = stamp
        account_rows.append((own, village_id, household_id, balance))
        score_rows.extend((household_id, period, village_id, hamlet_id, value, reached)
                          for period, (value, reached) in scores.items())
        written += count
        flush()
    flush(final=True)
    conn.execute("BEGIN")
    for village_id, (issuance, sink, issued, sunk) in village_accounts.items():
        conn.execute("UPDATE accounts SET balance = ? WHERE id = ?", (issued, issuance))
        conn.execute("UPDATE accounts SET balance = ? WHERE id = ?", (sunk, sink))
    for village_id, (store, taken) in store_accounts.items():
        conn.execute("UPDATE accounts SET balance = ? WHERE id = ?", (taken, store))
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("ANALYZE")
    conn.close()
    echo(f"  built {villages} villages, {households} households, {written} transfers in {path}")
    return {"villages": villages, "households": households, "transfers": written}
