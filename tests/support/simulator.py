"""Fixtures: the simulator on a loopback socket (filled in by the simulator work)."""
