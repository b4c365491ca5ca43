"""Budget rules: the metric catalog (catalog), rules as typed objects validated at load (config),
and the pure evaluation of readings against them (evaluate)."""
