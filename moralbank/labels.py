"""The words people read for the codes the program keeps: categories, award states, transfer
codes, account kinds, roles, audit actions and their details.

The one home of these label maps: pages, exports and the API's ``*_label`` fields read them here,
translated into the user's language when shown (``label``). The codes themselves (``hygiene``,
``award``, ``award.approve``) are never shown to a person.
"""
from __future__ import annotations

from .i18n import N_

#: rule categories (the keys are stored in ``rules.category``)
CATEGORIES = {
    "hygiene": N_("美丽庭院"),
    "custom": N_("移风易俗"),
    "volunteer": N_("志愿服务"),
    "elders": N_("敬老爱幼"),
    "law": N_("律己守法"),
    "enterprise": N_("创业致富"),
    "deduction": N_("扣分"),
}

#: where an award stands
AWARD_STATUSES = {
    "proposed": N_("待审核"),
    "approved": N_("公示中"),
    "disputed": N_("有异议"),
    "posted": N_("已入账"),
    "rejected": N_("未通过"),
}

#: why points moved (``transfers.code``)
TRANSFER_CODES = {
    "award": N_("记分"),
    "deduction": N_("扣分"),
    "redemption": N_("兑换"),
    "reversal": N_("冲正"),
    "expiry": N_("积分过期"),
    "settlement": N_("结算"),
    "adjustment": N_("调整"),
    "pending": N_("冻结（离线券）"),
    "post": N_("解冻（离线券已用）"),
    "void": N_("退回（离线券）"),
}

#: who holds points (``accounts.kind``), for the accounts that are not a household
ACCOUNT_KINDS = {
    "household": N_("农户"),
    "issuance": N_("村积分发放"),
    "sink": N_("扣分回收"),
    "store": N_("积分超市"),
    "hold": N_("离线券冻结"),
}

ROLES = {
    "admin": N_("管理员"),
    "committee": N_("村两委"),
    "grid": N_("网格员"),
    "resident": N_("村民"),
    "clerk": N_("店员"),
    "supervisor": N_("督导"),
}

#: audit actions (``audit_log.action``), in words
AUDIT_ACTIONS = {
    "auth.login": N_("登录"),
    "auth.login_failed": N_("登录失败"),
    "auth.logout": N_("退出登录"),
    "auth.password_changed": N_("修改密码"),
    "auth.denied": N_("越权访问被拒绝"),
    "award.propose": N_("提交积分"),
    "award.propose_sheet": N_("评分表提交积分"),
    "award.declare": N_("村民申报好事"),
    "award.approve": N_("审核通过"),
    "award.reject": N_("审核未通过"),
    "award.object": N_("提出异议"),
    "award.post": N_("积分入账"),
    "ledger.reverse": N_("冲正积分"),
    "rule.create": N_("新增积分项目"),
    "rule.revise": N_("修改积分项目"),
    "rule.retire": N_("停用积分项目"),
    "rule.adopt": N_("会议通过积分项目"),
    "meeting.record": N_("记录村民会议"),
    "village.settings": N_("修改本村设置"),
    "user.create": N_("新建账号"),
    "household.import": N_("导入农户"),
    "ranking.publish": N_("发布红榜"),
    "store.redeem": N_("兑换商品"),
    "store.settle": N_("商店结算"),
    "item.create": N_("新增商品"),
    "item.update": N_("修改商品"),
    "card.issue": N_("发放积分卡"),
    "card.revoke": N_("作废积分卡"),
    "card.unlock": N_("解锁积分卡"),
    "card.pin_failed": N_("积分卡密码输错"),
    "export.rankings": N_("导出排名"),
    "export.awards": N_("导出积分明细"),
    "export.transfers": N_("导出积分流水"),
}

#: the audit log's filter: a group of actions (a prefix) or one action
AUDIT_FILTERS = {
    "auth": N_("登录与权限"),
    "award": N_("积分审核（全部）"),
    "award.propose": AUDIT_ACTIONS["award.propose"],
    "award.approve": AUDIT_ACTIONS["award.approve"],
    "award.reject": AUDIT_ACTIONS["award.reject"],
    "award.object": AUDIT_ACTIONS["award.object"],
    "award.post": AUDIT_ACTIONS["award.post"],
    "ledger.reverse": AUDIT_ACTIONS["ledger.reverse"],
    "rule": N_("积分项目"),
    "meeting": N_("村民会议"),
    "village": N_("本村设置"),
    "user": N_("账号"),
    "household": N_("农户"),
    "store": N_("商店"),
    "card": N_("积分卡"),
    "ranking": N_("红榜"),
    "export": N_("导出"),
}

#: the details an audit entry keeps (``audit_log.detail`` keys)
AUDIT_DETAILS = {
    "before": N_("修改前"), "after": N_("修改后"), "changes": N_("改动"), "cards": N_("卡数"),
    "file": N_("文件"), "rows": N_("行数"), "household_id": N_("户"), "rule": N_("项目"),
    "points": N_("积分"), "left": N_("剩余次数"), "route": N_("页面"), "reason": N_("原因"),
    "name": N_("名称"), "stock": N_("库存"), "period": N_("时段"), "format": N_("格式"),
    "hamlet_id": N_("屯/组"), "lines": N_("条数"), "after_dispute": N_("异议后"),
    "store_id": N_("商店"), "previous_id": N_("上一版"), "amount": N_("积分"),
    "reversal_id": N_("冲正记录"), "role": N_("角色"), "phone": N_("手机号"), "title": N_("项目"),
    "fen": N_("金额（分）"), "via": N_("途径"), "tokens_revoked": N_("结束的登录"),
    "category": N_("类别"), "cap_count": N_("次数上限"), "cap_period": N_("上限周期"),
    "photo_required": N_("需要照片"), "active": N_("启用"), "notice_days": N_("公示天数"),
    "approval_threshold": N_("需两人审核的分值"), "code_ttl_seconds": N_("付款码有效秒数"),
    "star_thresholds": N_("星级分数线"),
}
#: details kept for investigators only, not shown on the page
AUDIT_HIDDEN_DETAILS = frozenset({"method", "args"})

#: a few detail values that are codes
DETAIL_VALUES = {"web": N_("网页"), "api": N_("接口"), "xlsx": "XLSX", "csv": "CSV",
                 "month": N_("月"), "quarter": N_("季度"), "year": N_("年")}


def label(mapping: dict[str, str], code) -> str:
    """The translated word for ``code`` in ``mapping``; an unknown code is shown as it is."""
    from flask_babel import gettext

    if code is None:
        return ""
    word = mapping.get(code)
    return gettext(word) if word else str(code)


def audit_action(code: str) -> str:
    """An audit action in words; an action not listed shows the words of its group."""
    if code in AUDIT_ACTIONS:
        return label(AUDIT_ACTIONS, code)
    return label(AUDIT_FILTERS, code.split(".", 1)[0])


def audit_detail(detail: dict | None) -> list[tuple[str, str]]:
    """An audit entry's details as (label, value) pairs people read."""
    from flask_babel import gettext

    def value(item) -> str:
        if isinstance(item, bool):
            return gettext("是") if item else gettext("否")
        if isinstance(item, dict):
            return "，".join(f"{label(AUDIT_DETAILS, k)} {value(v)}" for k, v in item.items()
                            if k not in AUDIT_HIDDEN_DETAILS)
        if isinstance(item, str) and item in ROLES:
            return label(ROLES, item)
        if isinstance(item, str) and item in CATEGORIES:
            return label(CATEGORIES, item)
        if isinstance(item, str) and item in DETAIL_VALUES:
            return label(DETAIL_VALUES, item)
        return "" if item is None else str(item)

    return [(label(AUDIT_DETAILS, key), value(item)) for key, item in (detail or {}).items()
            if key not in AUDIT_HIDDEN_DETAILS]
