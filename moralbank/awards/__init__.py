"""The rule catalogue (积分清单) and the award life cycle."""
