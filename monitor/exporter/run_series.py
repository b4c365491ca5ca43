"""The per-subject series: what /metrics shows for each run (and each rule on each subject).

These families are nearly all of a scrape at scale (10,000 runs: about 20 lines each), so they are
defined once here and rendered two ways from the same figures:
- `RunSeriesCollector.collect()`: prometheus_client metric families, rebuilt from the runtime as it is
  (what `generate_latest(registry)` renders; the reference the cache is tested against);
- `SubjectLines`: one subject's sample lines, formatted straight to text from templates, which
  monitor.exporter.scrape_cache keeps per subject and re-renders only when the subject changed.

A subject is a run id, or the subject of a rule evaluation (a run id, or a wallet id for wallet rules).
Families come out in `FAMILIES` order; within a family, by subject, then by rule. Only what the
dashboard, the Prometheus rules and the README use is exported per run (see the README's metrics table).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.openmetrics.exposition import escape_label_name, escape_metric_name
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from monitor.exporter.labels import MAX_NAME_LABEL_CHARS, label_value
from monitor.exporter.live import RuntimeState
from monitor.exporter.read_health import RunHealth
from monitor.records import Evaluation
from monitor.rules.catalog import CATALOG
from monitor.snapshots import RunSnapshot

USAGE_TYPES = ("training", "inference_input", "inference_output")


@dataclass(frozen=True, slots=True)
class Family:
    name: str
    kind: str  # "counter" or "gauge"
    documentation: str
    labels: tuple[str, ...]  # sorted, as the exposition writes them

    def empty(self) -> CounterMetricFamily | GaugeMetricFamily:
        if self.kind == "counter":
            return CounterMetricFamily(self.name, self.documentation, labels=list(self.labels))
        return GaugeMetricFamily(self.name, self.documentation, labels=list(self.labels))

    @property
    def sample_name(self) -> str:
        return self.name + "_total" if self.kind == "counter" else self.name


_RULE_LABELS = ("rule", "run_id", "scope", "subject")
FAMILIES: tuple[Family, ...] = (
    Family(
        "prime_run_cost_usd",
        "counter",
        "Cost of a run so far in USD, by usage type. training is the API's figure; the inference_input /"
        " inference_output split is an estimate (the API bills inference as one figure), derived per usage"
        " increment at the prices of the moment.",
        ("run_id", "usage_type"),
    ),
    Family("prime_run_tokens", "counter", "Tokens a run has used so far, by usage type.", ("run_id", "usage_type")),
    Family(
        "prime_run_info",
        "gauge",
        "A watched run: its name, base model and status. Always 1.",
        ("base_model", "run_id", "run_name", "status", "team_id"),
    ),
    Family("prime_run_total_cost_usd", "gauge", "The API's own total cost of a run in USD.", ("run_id",)),
    Family("prime_run_burn_rate_usd_per_hour", "gauge", "Recent spend rate of a run in USD per hour.", ("run_id",)),
    Family(
        "prime_run_read_state",
        "gauge",
        "How the latest read of a run ended (ok, or the failure kind: not_found, forbidden, ...). Always 1.",
        ("run_id", "state"),
    ),
    Family(
        "prime_run_budget_usd",
        "gauge",
        "The limit of each cost rule that applies to a run, in USD.",
        ("rule", "run_id"),
    ),
    Family(
        "prime_rule_utilisation_ratio",
        "gauge",
        "Fraction of a rule's limit used (value/limit; limit/value for floors such as a balance).",
        _RULE_LABELS,
    ),
    Family(
        "prime_rule_tier",
        "gauge",
        "Tier a rule is in: 0 within all tiers, 1..n warning tiers, n+1 breached.",
        _RULE_LABELS,
    ),
    Family("prime_rule_breached", "gauge", "1 while a rule is breached on its subject, else 0.", _RULE_LABELS),
    Family(
        "prime_run_time_to_budget_seconds",
        "gauge",
        "Projected seconds until a run reaches a rule's limit at its burn rate.",
        ("rule", "run_id"),
    ),
)
COST, TOKENS, INFO, TOTAL, BURN, READ_STATE, BUDGET, UTILISATION, TIER, BREACHED, TIME_TO_BUDGET = range(len(FAMILIES))


def _exported(value: float | None) -> bool:
    """NaN is never exported; +Inf is (Prometheus stores it and comparisons work)."""
    return value is not None and not math.isnan(value)


# -- the figures of one subject: all that its lines are rendered from -----------------------------

# (costs, tokens, (run_name, base_model, status, team_id) labels, total cost)
RunFigures = tuple[tuple[float, float, float], tuple[int, int, int], tuple[str, str, str, str], float]
# (rule label, scope, tier, breached, utilisation, budget, time to the limit)
RuleFigures = tuple[str, str, float, bool, float | None, float | None, float | None]
# (subject label, the run's figures, burn rate, read state label, rules in rule order)
SubjectFigures = tuple[str, RunFigures | None, float | None, str | None, tuple[RuleFigures, ...]]


def _run_figures(run: RunSnapshot) -> RunFigures:
    return (
        (run.training_cost_usd, run.inference_input_cost_usd, run.inference_output_cost_usd),
        (run.training_tokens, run.inference_input_tokens, run.inference_output_tokens),
        (
            label_value(run.run_name, max_chars=MAX_NAME_LABEL_CHARS),
            label_value(run.base_model, max_chars=MAX_NAME_LABEL_CHARS),
            label_value(run.status),
            label_value(run.team_id),
        ),
        run.total_cost_usd,
    )


def _is_budget(metric: str) -> bool:
    spec = CATALOG.get(metric)
    return spec is not None and spec.unit == "usd" and spec.kind == "total"


def _rule_figures(evaluation: Evaluation) -> RuleFigures:
    is_run = evaluation.scope == "run"
    utilisation = evaluation.utilisation
    time_to_limit = evaluation.time_to_limit_seconds if is_run else None
    return (
        label_value(evaluation.rule),
        evaluation.scope,
        float(evaluation.tier),
        evaluation.breached,
        utilisation if _exported(utilisation) else None,
        evaluation.limit if is_run and _is_budget(evaluation.metric) else None,
        time_to_limit if _exported(time_to_limit) else None,
    )


def subject_figures(
    *,
    subject: str,
    run: RunSnapshot | None,
    burn_rate: float | None,
    health: RunHealth | None,
    evaluations: Iterable[Evaluation],
) -> SubjectFigures:
    """Everything the subject's lines show, as plain values: equal figures render equal lines.
    `evaluations` in rule order."""
    state = None
    if health is not None:
        state = label_value(health.last_kind if health.last_poll_failed else "ok")
    return (
        label_value(subject),
        _run_figures(run) if run is not None else None,
        burn_rate if run is not None and _exported(burn_rate) else None,
        state,
        tuple(_rule_figures(evaluation) for evaluation in evaluations),
    )


def figures_of(runtime: RuntimeState, subject: str, rules: Iterable[str]) -> SubjectFigures:
    evaluations = runtime.evaluations
    return subject_figures(
        subject=subject,
        run=runtime.runs.get(subject),
        burn_rate=runtime.burn_rates.get(subject),
        health=runtime.health.get(subject),
        evaluations=[evaluations[(subject, rule)] for rule in sorted(rules) if (subject, rule) in evaluations],
    )


# -- rendering: prometheus_client families (the reference) ----------------------------------------


def _samples(figures: SubjectFigures) -> Iterator[tuple[int, list[str], float]]:
    """(family index, label values in the family's label order, value) for each of the subject's samples."""
    subject, run, burn, state, rules = figures
    if run is not None:
        costs, tokens, (name, model, status, team), total = run
        for usage_type, cost, used in zip(USAGE_TYPES, costs, tokens, strict=True):
            yield COST, [subject, usage_type], cost
            yield TOKENS, [subject, usage_type], float(used)
        yield INFO, [model, subject, name, status, team], 1.0
        yield TOTAL, [subject], total
        if burn is not None:
            yield BURN, [subject], burn
    if state is not None:
        yield READ_STATE, [subject, state], 1.0
    for rule, scope, tier, breached, utilisation, budget, time_to_limit in rules:
        # run_id as its own label (empty for wallet rules): joins prime_run_info without label_replace.
        run_id = subject if scope == "run" else ""
        labels = [rule, run_id, scope, subject]
        if budget is not None:
            yield BUDGET, [rule, run_id], budget
        if utilisation is not None:
            yield UTILISATION, labels, utilisation
        yield TIER, labels, tier
        yield BREACHED, labels, 1.0 if breached else 0.0
        if time_to_limit is not None:
            yield TIME_TO_BUDGET, [rule, run_id], time_to_limit


def subjects_of(runtime: RuntimeState) -> dict[str, list[str]]:
    """Every subject with series, and its evaluated rules, from a scan of the runtime (no index)."""
    subjects: dict[str, list[str]] = {subject: [] for subject in runtime.runs}
    subjects.update((subject, []) for subject in runtime.health if subject not in subjects)
    for subject, rule in runtime.evaluations:
        subjects.setdefault(subject, []).append(rule)
    return subjects


class RunSeriesCollector(Collector):
    """The per-subject families as prometheus_client metric families, built from the runtime as it is."""

    def __init__(self, runtime: RuntimeState) -> None:
        self.runtime = runtime

    def collect(self) -> Iterable[Metric]:
        families = [family.empty() for family in FAMILIES]
        subjects = subjects_of(self.runtime)
        for subject in sorted(subjects):
            for index, labels, value in _samples(figures_of(self.runtime, subject, subjects[subject])):
                families[index].add_metric(labels, value)
        return families


# -- rendering: sample lines straight to text (the cache) ------------------------------------------


def _escape(value: str) -> str:
    """A label value as the exposition writes it (prometheus_client's escaping)."""
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


def _go(value: float) -> str:
    """A value as prometheus_client writes it (floatToGoString), the common case without a call:
    below 1e6 Go and Python print a float alike; NaN fails the comparison."""
    if value.__class__ is float and -math.inf < value < 1e6:
        return repr(value)
    return str(floatToGoString(value))  # type: ignore[no-untyped-call]


class SubjectLines:
    """Formats one subject's sample lines per family, character for character as prometheus_client
    would, for one name escaping (the `escaping=` an Accept header may ask for; every escaping but
    `dots` leaves our names as they are). Each family's lines of a subject are one %-format."""

    def __init__(self, escaping: str) -> None:
        def line(index: int, *values: str) -> str:
            return _line(FAMILIES[index], escaping, values)

        # Cost and tokens: the three usage types' lines in one template.
        self.cost = "".join(line(COST, "%(id)s", usage, f"%({usage})s") for usage in USAGE_TYPES)
        self.tokens = "".join(line(TOKENS, "%(id)s", usage, f"%({usage})s") for usage in USAGE_TYPES)
        self.info = line(INFO, "%s", "%s", "%s", "%s", "%s", "1.0")
        self.total = line(TOTAL, "%s", "%s")
        self.burn = line(BURN, "%s", "%s")
        self.read_state = line(READ_STATE, "%s", "%s", "1.0")
        self.budget = line(BUDGET, "%s", "%s", "%s")
        self.utilisation = line(UTILISATION, "%s", "%s", "%s", "%s", "%s")
        self.tier = line(TIER, "%s", "%s", "%s", "%s", "%s")
        self.breached = line(BREACHED, "%s", "%s", "%s", "%s", "%s")
        self.time_to_budget = line(TIME_TO_BUDGET, "%s", "%s", "%s")

    def render(self, figures: SubjectFigures) -> tuple[str, ...]:
        """The subject's lines, one string per family in FAMILIES order ("" where it has none)."""
        go = _go
        subject, run, burn, state, rules = figures
        sid = _escape(subject)
        cost = tokens = info = total = burn_line = read_state = ""
        if run is not None:
            costs, used, (name, model, status, team), total_cost = run
            cost = self.cost % _usage(sid, costs)
            tokens = self.tokens % _usage(sid, used)
            info = self.info % (_escape(model), sid, _escape(name), _escape(status), _escape(team))
            total = self.total % (sid, go(total_cost))
            if burn is not None:
                burn_line = self.burn % (sid, go(burn))
        if state is not None:
            read_state = self.read_state % (sid, _escape(state))
        budget = utilisation = tier = breached = time_to_budget = ""
        for rule, scope, rule_tier, is_breached, used_ratio, limit, time_to_limit in rules:
            rule_label, run_id = _escape(rule), sid if scope == "run" else ""
            labels = (rule_label, run_id, _escape(scope), sid)
            if limit is not None:
                budget += self.budget % (rule_label, run_id, go(limit))
            if used_ratio is not None:
                utilisation += self.utilisation % (*labels, go(used_ratio))
            tier += self.tier % (*labels, go(rule_tier))
            breached += self.breached % (*labels, "1.0" if is_breached else "0.0")
            if time_to_limit is not None:
                time_to_budget += self.time_to_budget % (rule_label, run_id, go(time_to_limit))
        return (cost, tokens, info, total, burn_line, read_state, budget, utilisation, tier, breached, time_to_budget)


def _usage(subject: str, values: tuple[float, float, float] | tuple[int, int, int]) -> dict[str, str]:
    training, inference_input, inference_output = values
    return {
        "id": subject,
        "training": _go(training),
        "inference_input": _go(inference_input),
        "inference_output": _go(inference_output),
    }


def _line(family: Family, escaping: str, values: tuple[str, ...]) -> str:
    """A %-format template of one sample line: `values` are the label values in the family's label
    order, then the value; each either a `%s` field or a literal without `%`."""
    name = escape_metric_name(family.sample_name, escaping).replace("%", "%%")
    *label_values, value = values
    labels = ",".join(
        f'{escape_label_name(label, escaping).replace("%", "%%")}="{label_value}"'
        for label, label_value in zip(family.labels, label_values, strict=True)
    )
    return f"{name}{{{labels}}} {value}\n"


def names_under(escaping: str) -> tuple[str, ...]:
    """Our metric and label names as an escaping writes them: escapings that agree share a cache."""
    names = [escape_metric_name(family.sample_name, escaping) for family in FAMILIES]
    names += [escape_label_name(label, escaping) for family in FAMILIES for label in family.labels]
    return tuple(names)


def headers(encoder: Callable[[Collector], bytes]) -> tuple[str, ...]:
    """Each family's HELP and TYPE lines as `encoder` writes them (OpenMetrics' `# EOF` left off)."""
    return tuple(encoder(_OneFamily(family.empty())).decode().removesuffix("# EOF\n") for family in FAMILIES)


class _OneFamily(Collector):
    def __init__(self, family: Metric) -> None:
        self.family = family

    def collect(self) -> Iterable[Metric]:
        return [self.family]
