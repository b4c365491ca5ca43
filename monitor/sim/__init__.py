"""A spec-faithful Prime Training API simulator on loopback, for tests, benchmarks and demos.

Runs burn tokens on three meters at their model's prices; usage lands as records every
`meter_interval` seconds; a wallet is debited as it lands; DELETE stops the burn. Faults can
be injected per endpoint, and an admin API under /_sim/ reads the true ledger.

Modules: pricing (price table), rates (token rates from a prime-rl config), usage (meter
figures and correction arithmetic), accounting (a run's meters as functions of time, with
price segments and corrections), billing (wallet rows and paging), engine (runs, wallets),
ledger (the admin API's truth), faults, scenario (the YAML file), api / admin (HTTP
handlers), server (the aiohttp app and the entry points).
"""

from monitor.sim.engine import Engine
from monitor.sim.faults import FaultSpec
from monitor.sim.scenario import Scenario, ScenarioError, load_scenario
from monitor.sim.server import SimulatorServer, enable_manual_clock, serve

__all__ = [
    "Engine",
    "FaultSpec",
    "Scenario",
    "ScenarioError",
    "SimulatorServer",
    "enable_manual_clock",
    "load_scenario",
    "serve",
]
