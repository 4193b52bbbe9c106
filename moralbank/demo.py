"""The demo village: 梨树县 → 康平街道 → 八里庙村 (BLM) and 新立村 (XLC).

Deterministic (a fixed random seed), so screenshots and tests see the same
village every time they seed it at the same moment. Half a year of history, up
to the moment it runs, is posted through the ledger with past timestamps, in
time order, exactly as it would have happened, within the catalogue's caps.
"""
from __future__ import annotations

import random
from datetime import datetime

from sqlalchemy import select

from . import periods
from .awards.service import create_rule, record_award
from .database import local_zone, utcnow, write_transaction
from .extensions import db
from .people.models import Area
from .people.service import create_area, create_household, create_user
from .stores.service import add_item, create_store, redeem

DEMO_PASSWORD = "demo-pass-2026"

SURNAMES = ("王李张刘陈杨赵黄周吴孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭肖田董袁潘于蒋蔡杜程苏魏吕丁任沈姚卢姜崔"
            "钟陆汪范金石贾付方白邹孟秦邱尹薛闫段雷侯史陶贺顾毛郝邵万钱严武孔")
GIVEN_M = ("国庆 建国 建华 志强 永福 德胜 玉山 长青 春生 宝山 金海 振江 庆祥 立军 海涛 文斌 树林 凤岐 连生 占武 "
           "景春 明辉 俊峰 广才 殿臣 福来 宏伟 铁军 双喜 井田").split()
GIVEN_F = ("秀兰 桂芝 淑珍 玉梅 凤英 丽华 春燕 秀云 桂荣 晓红 海燕 美玲 淑华 玉兰 红霞 翠花 金凤 素芬 彩霞 雪梅").split()
CHILDREN = ("子轩 浩然 欣怡 梓涵 宇航 思雨 佳琪 一诺 雨桐 博文").split()

#: (category, title, points, cap per period, photo required)
CATALOGUE = [
    ("hygiene", "庭院整洁、物品摆放有序", 5, (1, "month"), False),
    ("hygiene", "柴草堆放整齐", 3, (1, "month"), False),
    ("hygiene", "厕所干净无异味", 3, (1, "month"), False),
    ("hygiene", "房前屋后无垃圾", 3, (1, "month"), False),
    ("hygiene", "门前种花种菜美化环境", 5, (1, "quarter"), True),
    ("hygiene", "评为干净人家", 10, (1, "quarter"), True),
    ("custom", "红白喜事简办", 20, (2, "year"), False),
    ("custom", "不要高价彩礼", 30, (1, "year"), False),
    ("custom", "文明祭祀不烧纸", 5, (2, "year"), False),
    ("custom", "拒绝封建迷信活动", 5, (1, "year"), False),
    ("volunteer", "参加志愿服务（半天）", 5, (8, "month"), False),
    ("volunteer", "参加村屯环境整治", 5, (4, "month"), True),
    ("volunteer", "冬季清雪出工", 3, (8, "month"), False),
    ("volunteer", "参加防汛防火值守", 5, (4, "month"), False),
    ("volunteer", "义务献血", 20, (1, "year"), False),
    ("elders", "孝老爱亲", 10, (1, "quarter"), False),
    ("elders", "照顾孤寡老人", 5, (4, "month"), False),
    ("elders", "评为好媳妇、好婆婆", 20, (1, "year"), False),
    ("elders", "子女考上大学", 20, (1, "year"), False),
    ("law", "按时缴纳医保", 5, (1, "year"), False),
    ("law", "调解邻里纠纷", 5, (2, "month"), False),
    ("law", "参加法治讲座", 2, (2, "month"), False),
    ("enterprise", "发展庭院经济", 10, (1, "year"), True),
    ("enterprise", "带动邻里就业", 15, (1, "year"), False),
    ("enterprise", "参加技能培训", 3, (2, "month"), False),
    ("deduction", "乱堆乱放", -5, None, True),
    ("deduction", "秸秆焚烧", -20, None, True),
    ("deduction", "高价彩礼", -30, None, False),
    ("deduction", "违规燃放烟花爆竹", -10, None, False),
    ("deduction", "散养家禽影响环境", -3, None, False),
    ("deduction", "聚众赌博", -30, None, False),
]

ITEMS = [("洗衣粉", "袋", 10, 80), ("食用油 5L", "桶", 80, 30), ("大米 10斤", "袋", 60, 40), ("酱油", "瓶", 15, 60),
         ("香皂", "块", 5, 120), ("牙膏", "支", 8, 100), ("毛巾", "条", 10, 80), ("洗洁精", "瓶", 12, 70),
         ("挂面", "把", 8, 90), ("鸡蛋 2斤", "份", 12, 50), ("暖水瓶", "个", 40, 15), ("扫帚", "把", 15, 25)]


def _person(rng: random.Random, used: set[str], female: bool = False) -> str:
    while True:
        name = rng.choice(SURNAMES) + rng.choice(GIVEN_F if female else GIVEN_M)
        if name not in used:
            used.add(name)
            return name


def _make_households(rng, village: Area, hamlets: list[Area], count: int, used: set[str]) -> list:
    households = []
    for index in range(count):
        hamlet = hamlets[index * len(hamlets) // count]
        head = _person(rng, used)
        surname = head[0]
        members = [(_person(rng, used, female=True), "配偶")]
        for _ in range(rng.randint(0, 2)):
            members.append((surname + rng.choice(CHILDREN), rng.choice(("子", "女"))))
        if rng.random() < 0.3:
            members.append((surname + rng.choice(GIVEN_M), "父"))
        phone = f"139{rng.randint(10000000, 99999999)}"
        households.append(create_household(village=village, hamlet=hamlet, number=f"{village.code}-{index + 1:03d}",
                                           head_name=head, head_phone=phone, members=members))
    return households


def _history(rng, rules, households, stores, approver, grid, *, months: int = 6, resident=None):
    """Half a year of awards, deductions and shopping, in time order, up to this very moment.

    Calendar months in the local zone: the ``months`` before this one, then this one so far. This
    month gets a whole month's activity, squeezed into the part of it gone by, so the board is
    alive on any day (someone who starts the demo on the 1st at 00:05 sees a ranking, not an
    empty month). Every award keeps within its rule's cap, as a new award would have to.
    ``resident`` (the demo resident's household) has points to spend from the months before; this
    month it earns like an ordinary household and twice more at the very end: it has a score this
    month, and others ahead of it.
    """
    now = utcnow()
    windows = []
    for key in periods.run_up_to(periods.current_month(now), months + 1):
        start, end = periods.bounds(key)
        windows.append((start, min(end, now) - start))

    def moment_in(window, share=None):
        start, span = window
        return start + span * (rng.random() if share is None else share)

    positive = [rule for rule in rules if rule.points > 0]
    negative = [rule for rule in rules if rule.points < 0]
    used: dict[tuple, int] = {}
    events = []
    for household in households:
        diligence = rng.random()
        for window in windows:
            if household is resident and window is windows[-1]:
                diligence = 0.3  # this month an ordinary household, mid-table: its home shows a rank to climb
            for _ in range(int(diligence * 5)):
                events.append(_award_event(rng, moment_in(window), household, positive, used))
            if rng.random() < 0.12:
                events.append(_award_event(rng, moment_in(window), household, negative, used))
            if rng.random() < 0.35:
                events.append((moment_in(window), "shop", household, rng.choice(stores)))
    if resident is not None:
        by_title = {rule.title: rule for rule in positive}
        for share, title in ((0.98, "参加志愿服务（半天）"), (0.99, "孝老爱亲")):
            events.append(_award_event(rng, moment_in(windows[-1], share), resident,
                                       [by_title[title], *positive], used, shuffle=False))
    events.sort(key=lambda event: event[0])
    from .ledger.service import household_account
    for moment, kind, household, target in events:
        if kind == "shop":
            balance = household_account(household.id).balance
            affordable = [item for item in target.items if item.points <= balance and item.stock > 0]
            if not affordable:
                continue
            item = rng.choice(affordable)
            redeem(household, target, items=[(item, 1)], at=moment)
        elif target is not None:
            record_award(household, target, proposer=grid, approver=approver, at=moment)


def _award_event(rng, moment, household, rules, used, *, shuffle=True):
    """An award event with a rule the household may still earn on that local day (``None`` when
    every rule is at its cap); counts it in ``used`` (household, rule, cap period) → awards."""
    day = periods.today(moment)
    for rule in (rng.sample(rules, len(rules)) if shuffle else rules):
        if rule.cap_count is None:
            return moment, "award", household, rule
        key = (household.id, rule.family_id, periods.containing(rule.cap_period, day))
        if used.get(key, 0) < rule.cap_count:
            used[key] = used.get(key, 0) + 1
            return moment, "award", household, rule
    return moment, "award", household, None


def _governance_rules_and_veto(village: Area, committee, grid, households) -> None:
    """Issue 14, parts 1 and 2: the catalogue as a 2026 村民代表会议 adopted it (with three 一票否决
    items), the village's rule changes needing a meeting from then on, one draft waiting for the
    next meeting, and a household vetoed by a posted 聚众赌博 award (not the demo resident's)."""
    from datetime import date, timedelta

    from .audit.service import record as audit
    from .awards.models import Meeting, Rule
    from .awards.rules import active_rules, revise_rule

    gambling = next(rule for rule in active_rules(village) if rule.title == "聚众赌博")
    # A new version, so the deductions already posted under the old one veto nobody after the fact.
    gambling = revise_rule(gambling, actor=committee, veto=True)
    create_rule(village, category="deduction", title="违法犯罪被依法处理", points=-50, veto=True)
    create_rule(village, category="deduction", title="拒不履行赡养义务", points=-30, veto=True)
    today = periods.today()
    held_on = date(today.year, 3, 12) if today > date(today.year, 3, 12) else today - timedelta(days=1)
    meeting = Meeting(village_id=village.id, held_on=held_on, kind="representatives", entitled=45, present=43,
                      votes_for=41, votes_against=2, votes_abstain=0, recorded_by_id=committee.id)
    db.session.add(meeting)
    db.session.flush()
    for rule in active_rules(village):
        rule.adopted_by_id = meeting.id
    audit("meeting.record", actor=committee, village_id=village.id, target=meeting,
          detail={"held_on": held_on.isoformat(), "kind": meeting.kind, "adopted": "demo catalogue"})
    village.rule_changes_need_meeting = True
    create_rule(village, category="volunteer", title="参加垃圾分类督导", points=3, cap_count=4, cap_period="month",
                actor=committee)
    now = utcnow()
    year_start = periods.bounds(periods.containing("year", now))[0]
    at = now - min(timedelta(days=3), (now - year_start) / 2)
    record_award(households[7], db.session.get(Rule, gambling.id), proposer=grid, approver=committee, at=at)


def seed_demo(echo=print) -> bool:
    """Create the demo county, town, villages, people, catalogue, stores and history. False if present."""
    if db.session.scalar(select(Area.id).where(Area.code == "BLM")) is not None:
        return False
    rng = random.Random(2026)
    used: set[str] = set()
    with write_transaction():
        county = create_area(level="county", code="LSX", name="梨树县")
        town = create_area(level="town", code="KPJD", name="康平街道", parent=county)
        blm = create_area(level="village", code="BLM", name="八里庙村", parent=town, notice_days=3,
                          approval_threshold=20, star_thresholds=[20, 50, 100, 160, 240])
        blm_hamlets = [create_area(level="hamlet", code=f"BLM-{i + 1:02d}", name=name, parent=blm)
                       for i, name in enumerate(("八里庙屯", "前进屯", "东岗屯", "西沟屯"))]
        xlc = create_area(level="village", code="XLC", name="新立村", parent=town, notice_days=2,
                          approval_threshold=20, star_thresholds=[20, 50, 100, 160, 240])
        xlc_hamlets = [create_area(level="hamlet", code=f"XLC-{i + 1:02d}", name=name, parent=xlc)
                       for i, name in enumerate(("新立屯", "南洼屯"))]

        blm_households = _make_households(rng, blm, blm_hamlets, 60, used)
        xlc_households = _make_households(rng, xlc, xlc_hamlets, 20, used)
        db.session.flush()

        blm_rules = [create_rule(blm, category=c, title=t, points=p, cap_count=cap[0] if cap else None,
                                 cap_period=cap[1] if cap else None, photo_required=photo)
                     for c, t, p, cap, photo in CATALOGUE]
        xlc_rules = [create_rule(xlc, category=c, title=t, points=p, cap_count=cap[0] if cap else None,
                                 cap_period=cap[1] if cap else None, photo_required=photo)
                     for c, t, p, cap, photo in CATALOGUE[::2]]

        blm_stores = [create_store(blm, name="八里庙村积分超市", address="村委会一楼"),
                      create_store(blm, name="兴旺便民超市", address="八里庙屯十字路口")]
        xlc_stores = [create_store(xlc, name="新立村积分超市", address="村部东侧")]
        for store in blm_stores + xlc_stores:
            for name, unit, points, stock in rng.sample(ITEMS, 9):
                add_item(store, name=name, unit=unit, points=points, stock=stock)
        db.session.flush()

        resident_household = blm_households[0]
        committee = create_user(phone="13800000001", name="李红梅", password=DEMO_PASSWORD, role="committee",
                                area=blm)
        grid = create_user(phone="13800000002", name="赵志刚", password=DEMO_PASSWORD, role="grid",
                           hamlets=[blm_hamlets[0]])
        create_user(phone="13800000003", name=resident_household.head.name, password=DEMO_PASSWORD,
                    role="resident", household=resident_household)
        create_user(phone="13800000004", name="孙丽娟", password=DEMO_PASSWORD, role="clerk", store=blm_stores[0])
        create_user(phone="13800000005", name="周建民", password=DEMO_PASSWORD, role="supervisor", area=town)
        xlc_committee = create_user(phone="13800000006", name="高春生", password=DEMO_PASSWORD, role="committee",
                                    area=xlc)

        for store in blm_stores + xlc_stores:
            db.session.refresh(store)
        _history(rng, blm_rules, blm_households, blm_stores, committee, grid, resident=resident_household)
        _history(rng, xlc_rules, xlc_households, xlc_stores, xlc_committee, None)
        _governance_rules_and_veto(blm, committee, grid, blm_households)
        _integrity_and_expiry_cases(blm, blm_hamlets, blm_households, blm_rules, committee, grid,
                                    xlc, xlc_households, xlc_rules, xlc_committee, echo=echo)
    echo("Demo village loaded: 八里庙村 (BLM, 60 households) and 新立村 (XLC, 20 households).")
    echo(f"Logins (password {DEMO_PASSWORD}):")
    for phone, role in (("13800000001", "committee of BLM"), ("13800000002", "grid manager of 八里庙屯"),
                        ("13800000003", f"resident, head of household {resident_household.number}"),
                        ("13800000004", "clerk of 八里庙村积分超市"), ("13800000005", "supervisor of 康平街道"),
                        ("13800000006", "committee of XLC"), ("13800000141", "grid manager of 前进屯"),
                        ("13800000142", "grid manager of 东岗屯"), ("13800000143", "committee of BLM, lives in 西沟屯"),
                        ("13800000146", "resident of XLC-001 (points lapsing soon)")):
        echo(f"  {phone}  {role}")
    return True




# --- favouritism checks (人情分) and point expiry ------------------------------------------------

def _plant(household, rules, *, proposer, approver, at, titles=()):
    """Record (and post) an award for ``household`` at ``at`` under the first of ``titles`` (then any
    of ``rules``) whose cap still has room that day; None when every one is at its cap."""
    from .awards.service import check_cap
    from .errors import Invalid

    by_title = {rule.title: rule for rule in rules}
    for rule in [by_title[title] for title in titles] + [rule for rule in rules if rule.points > 0]:
        try:
            check_cap(household, rule, periods.today(at), 1)
        except Invalid:
            continue
        return record_award(household, rule, proposer=proposer, approver=approver, at=at)
    return None


def _integrity_and_expiry_cases(blm, blm_hamlets, blm_households, blm_rules, committee, grid,
                                xlc, xlc_households, xlc_rules, xlc_committee, echo=print):
    """One planted case of each integrity flag in BLM, and expiry by ``months`` in XLC with points
    lapsing within 30 days for the household of an XLC resident login (13800000146).

    BLM gets three more staff: 钱志远 (13800000141, grid manager of 前进屯) gives most of his points
    to two households (``concentrated``); 孙海波 (13800000142, grid manager of 东岗屯) proposes
    big-point items (``outlier_proposer``); a committee member of a 西沟屯 household (13800000143)
    favours her own hamlet (``self_hamlet``). 李红梅 approves the first two's awards seconds apart
    (``rubber_stamp``), and 赵志刚 declares today a relative's household he has been proposing for
    all along (``relative``: his earlier awards to it stand out; from now on he cannot propose for it).
    """
    from datetime import timedelta

    from .awards.expiry import expire_due, expiring
    from .people.kinships import declare
    from .people.models import Household
    from .awards.models import Award

    rng = random.Random(14)
    now = utcnow()
    burst_start = periods.bounds(periods.previous(periods.current_month(now)))[0] + timedelta(days=9, hours=9)
    g2 = create_user(phone="13800000141", name="钱志远", password=DEMO_PASSWORD, role="grid", hamlets=[blm_hamlets[1]])
    g3 = create_user(phone="13800000142", name="孙海波", password=DEMO_PASSWORD, role="grid", hamlets=[blm_hamlets[2]])
    own = blm_households[50]  # a household of 西沟屯
    c2 = create_user(phone="13800000143", name=own.members[1].name, password=DEMO_PASSWORD, role="committee",
                     area=blm)
    c2.resident_id = own.members[1].id
    in_hamlet = {hamlet.id: [h for h in blm_households if h.hamlet_id == hamlet.id] for hamlet in blm_hamlets}
    moment = iter(burst_start + timedelta(seconds=4 * step) for step in range(100))
    favoured = in_hamlet[blm_hamlets[1].id][3:5]
    for step in range(10):  # concentrated: ten awards to two households, approved seconds apart
        _plant(favoured[step % 2], blm_rules, proposer=g2, approver=committee, at=next(moment),
               titles=("参加志愿服务（半天）", "冬季清雪出工", "照顾孤寡老人"))
    for household in in_hamlet[blm_hamlets[2].id][2:10]:  # outlier_proposer: big items, one per household
        _plant(household, blm_rules, proposer=g3, approver=committee, at=next(moment),
               titles=("不要高价彩礼", "义务献血", "红白喜事简办", "评为好媳妇、好婆婆", "子女考上大学"))
    start = periods.bounds(periods.shift(periods.current_month(now), -2))[0]
    targets = in_hamlet[blm_hamlets[3].id][:8] * 2 + [in_hamlet[blm_hamlets[0].id][7], in_hamlet[blm_hamlets[2].id][12]]
    for household in targets:  # self_hamlet: her own hamlet far above its share of the village
        _plant(household, blm_rules, proposer=c2, approver=committee, at=start + timedelta(
            days=rng.randint(0, 50), hours=rng.randint(8, 18)), titles=("参加志愿服务（半天）", "冬季清雪出工"))
    db.session.flush()
    # relative: the household of 八里庙屯 (not the demo resident's) with the most of 赵志刚's awards
    counts = {}
    for household_id in db.session.scalars(select(Award.household_id).where(Award.proposed_by_id == grid.id)):
        counts[household_id] = counts.get(household_id, 0) + 1
    kin = max((h for h in in_hamlet[blm_hamlets[0].id][1:]), key=lambda h: (counts.get(h.id, 0), -h.id))
    declare(grid, blm, user_id=grid.id, household_id=kin.id, relation="兄弟姐妹")

    # expiry: each award's points lapse 6 months after posting in XLC; XLC-001 has points lapsing in 10 days
    xlc.expiry = {"mode": "months", "months": 6}
    first = xlc_households[0]
    earned = periods.add_months(periods.today(now), -6) + timedelta(days=10)
    _plant(first, xlc_rules, proposer=None, approver=xlc_committee, at=datetime.combine(
        earned, datetime.min.time().replace(hour=10), tzinfo=local_zone()), titles=("红白喜事简办",))
    db.session.flush()
    create_user(phone="13800000146", name=first.head.name, password=DEMO_PASSWORD, role="resident",
                household=first)
    lapsed = expire_due(now, village_code="XLC")
    soon = expiring(db.session.get(Household, first.id), within_days=30)
    echo(f"Integrity cases planted in BLM; XLC lets points lapse after 6 months ({len(lapsed)} lots lapsed now, "
         f"{sum(e['points'] for e in soon)} points of {first.number} lapse within 30 days).")
