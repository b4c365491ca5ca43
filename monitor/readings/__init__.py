"""From the API to a reading the rules may trust: one way to read a run (fetch), sanity checks on
one reading (checks), the reading model judging it against the last one (model), the wallet read
and run discovery (discovery), and which runs are watched and when each is due (watchlist)."""
