"""Deleting a run that overspends, safely: the one Enforcer (enforcer), its safety checks
(safety), what it keeps per run and rule (state), the evidence it records (evidence), and its
messages (messages)."""
