"""The ledger: the only code that moves points. See ``service`` for the verbs."""
