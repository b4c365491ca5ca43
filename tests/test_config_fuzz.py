"""Generated and mutated configs: `validate` exits 0 or 2 with no traceback, and `load_settings` raises
ConfigError and nothing else, for every one of them.

10,000 configs in all: 6,000 files through `validate` in-process (main -> load_config, the very call
`run` makes), 4,000 files with a generated environment through `load_settings` (load_config's settings,
what a SIGHUP reload calls).

Configs are generated from the settings schema (every section and key, valid values and junk), dumped
as YAML and mutated as bytes and text: flips, truncation, duplicated sections, deep nesting, huge and
NaN numbers, wrong types, tags, aliases, non-UTF-8 bytes, other encodings and odd unicode. Derandomized:
the same 10,000 configs on every run, so CI is stable; each test counts the configs it really tried.
Shrinking is off: on a failure the failing config is printed as generated, at once, instead of after
minutes of shrinking (CI time is bounded either way).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import random
import tempfile
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

import monitor.logs
from monitor.cli.main import main
from monitor.config.env import env_names
from monitor.config.load import load_settings
from monitor.config.settings import ConfigError, Settings
from monitor.rules.config import RUN_METRICS_ABOVE, RUN_METRICS_BELOW, WALLET_METRICS_ABOVE, WALLET_METRICS_BELOW

# Configs tried: each generated config is mutated into VARIANTS configs (see `variants`).
FILE_EXAMPLES = 6000
ENV_EXAMPLES = 4000
VARIANTS = 20
FUZZ = settings(
    derandomize=True,
    phases=[Phase.generate],
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)

HUGE_NUMBERS = [10**400, -(10**400), 2**63, -1, 0, -0.0, 1e308, 1e-320, math.nan, math.inf, -math.inf]
ODD_TEXT = [
    "\u200b",
    "\u202e",
    "\ufeff",
    "\x00",
    "\x85",
    "\u2028",
    "é",
    "✨",
    "\U0001f4b8",
    "\\ud800",
    "\t",
    "%",
    "{run_id}",
]
junk_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from(HUGE_NUMBERS),
    st.integers(),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(["", "30s", "0", "-5m", "nan", "inf", "1e400", "1h30m", "soon", "*", "..", "/", "yes", "~"]),
)
junk = st.recursive(
    junk_scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.one_of(st.text(max_size=8), st.integers(), st.none()), inner, max_size=3)
    ),
    max_leaves=6,
)
durations = st.one_of(
    st.sampled_from(["30s", "2m", "1h", "500ms", "1d", "0", "0s", "1w", "1h30m", "400d", "nan"]),
    st.floats(min_value=-10, max_value=1e6),
    st.integers(min_value=-10, max_value=10**6),
)
run_ids = st.one_of(
    st.sampled_from(["run-a", "rft_abc123", "", ".", "..", "a/b", " x", "a\tb", "é"]), st.text(max_size=10)
)
globs = st.one_of(st.sampled_from(["exp-*", "prod-*", "*", "[", "?x"]), st.text(max_size=8))
urls = st.one_of(
    st.sampled_from(
        ["http://127.0.0.1:1", "https://hooks.slack.com/services/T0/B0/XXXX", "ftp://x", "http://", "https://[::1"]
    ),
    st.text(max_size=16),
)


def _value_strategy(name: str, annotation: Any, default: Any) -> st.SearchStrategy[Any]:
    """A valid-looking value for a settings key, read off its type and default; junk now and then."""
    origin = get_origin(annotation)
    members = get_args(annotation) if origin in (Union, types.UnionType) else (annotation,)
    literal = next((m for m in members if get_origin(m) is Literal), None)
    if literal is not None:
        return st.sampled_from(get_args(literal)) | junk_scalars
    if isinstance(default, bool):
        return st.booleans() | st.sampled_from(["true", "no", "perhaps"])
    if isinstance(default, int):
        return st.integers(min_value=-5, max_value=2 * max(default, 10)) | st.sampled_from(HUGE_NUMBERS)
    if isinstance(default, float):
        return durations | st.sampled_from(HUGE_NUMBERS)
    if name in ("runs",):
        return st.lists(run_ids, max_size=3) | run_ids
    if name in ("protect", "name", "base_model"):
        return st.lists(globs, max_size=3) | globs
    if "url" in name:
        return urls
    return st.text(max_size=16) | st.sampled_from(["0.0.0.0:9477", "127.0.0.1:0", ":99999", "./state.db", "#budgets"])


def section_strategy(model: type[BaseModel]) -> st.SearchStrategy[dict[str, Any]]:
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for name, info in model.model_fields.items():
        annotation = info.annotation
        members = get_args(annotation) if get_origin(annotation) in (Union, types.UnionType) else (annotation,)
        nested = next((m for m in members if isinstance(m, type) and issubclass(m, BaseModel)), None)
        if nested is not None:
            optional[name] = section_strategy(nested) | junk
        elif name == "rules":
            optional[name] = st.lists(rule_strategy, max_size=4) | junk
        else:
            default = info.get_default(call_default_factory=True)
            optional[name] = st.one_of(_value_strategy(name, annotation, default), junk)
    return st.fixed_dictionaries({}, optional=optional)


metrics = st.sampled_from([*RUN_METRICS_ABOVE, *RUN_METRICS_BELOW, *WALLET_METRICS_ABOVE, *WALLET_METRICS_BELOW])
numbers = st.one_of(st.floats(), st.integers(), st.sampled_from(HUGE_NUMBERS), st.sampled_from(["2h", "100", "x"]))
rule_strategy = st.fixed_dictionaries(
    {"name": st.one_of(st.sampled_from(["cap", "floor", "cap"]), st.text(max_size=6), junk_scalars)},
    optional={
        "scope": st.sampled_from(["run", "wallet"]) | junk_scalars,
        "metric": metrics | junk_scalars,
        "threshold": numbers,
        "below": numbers,
        "budget_usd": numbers,
        "warn_at": st.lists(st.floats() | st.sampled_from([0.5, 0.8]), max_size=3) | junk_scalars,
        "action": st.sampled_from(["alert", "delete", "kill"]),
        "severity": st.sampled_from(["info", "warning", "critical", "loud"]),
        "renotify": durations | st.none(),
        "hysteresis": numbers,
        "horizon": durations,
        "window": durations,
        "match": st.fixed_dictionaries({}, optional={"run_id": st.lists(run_ids, max_size=2), "name": globs}) | junk,
    },
)
config_strategy = section_strategy(Settings)


def dump(document: object) -> str:
    try:
        return yaml.safe_dump(document, allow_unicode=True, sort_keys=False)
    except (yaml.YAMLError, ValueError, TypeError, UnicodeError, RecursionError):
        return json.dumps(document, default=repr)


TEXT_MUTATIONS: list[tuple[str, Callable[[str, int], str]]] = [
    ("duplicate the first section", lambda text, n: text + text.split("\n", max(1, n % 6))[0] + "\n"),
    ("repeat everything", lambda text, n: text + "\n" + text),
    ("deep nesting", lambda text, n: text + f"\nwatch: {{runs: {'[' * (n % 200)}{']' * (n % 200)}}}\n"),
    ("deep mapping", lambda text, n: text + "deep:\n" + "".join("  " * i + "k:\n" for i in range(1, n % 80))),
    ("huge number", lambda text, n: text.replace(": 3", ": " + "9" * (n % 6000), 1) + f"\nx: {'9' * (n % 500)}\n"),
    ("nan and inf", lambda text, n: text.replace("s\n", "\n", 1).replace(": ", ": .nan #", 1) + "y: .inf\n"),
    ("python tag", lambda text, n: "evil: !!python/object/apply:os.system ['true']\n" + text),
    ("binary and set tags", lambda text, n: text + "api: {team_id: !!binary aGVsbG8=}\nz: !!set {a}\n"),
    (
        "alias bomb",
        lambda text, n: (
            "a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
            "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
            "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\n" + text
        ),
    ),
    ("alias cycle", lambda text, n: text + "poll: &p {x: *p}\n"),
    ("merge key", lambda text, n: text + "notify:\n  <<: {console: true}\n  <<: [1]\n"),
    ("non-string keys", lambda text, n: text + f"{n}: 1\n? [a]\n: 2\nnull: 3\non: 4\n"),
    (
        "odd unicode",
        lambda text, n: text[: n % (len(text) + 1)] + ODD_TEXT[n % len(ODD_TEXT)] + text[n % (len(text) + 1) :],
    ),
    ("surrogate escape", lambda text, n: text + 'api: {team_id: "\\ud800\\udfff"}\n'),
    ("escape beyond unicode", lambda text, n: text + f'x: "\\U{n:08X}\\x"\n'),
    ("tabs", lambda text, n: text.replace("  ", "\t", n % 3 + 1)),
    ("more documents", lambda text, n: text + "---\n" + text),
    ("wrong types", lambda text, n: text.replace(": ", ": [", 1)),
    ("complex key", lambda text, n: "? {a: 1}\n: b\n" + text),
    ("huge line", lambda text, n: text + "n: " + "x" * (n % 5_000) + "\n"),
]
BYTE_MUTATIONS: list[tuple[str, Callable[[bytes, int], bytes]]] = [
    ("flip a byte", lambda data, n: data[: n % (len(data) + 1)] + bytes([n % 256]) + data[n % (len(data) + 1) + 1 :]),
    ("truncate", lambda data, n: data[: n % (len(data) + 1)]),
    ("invalid utf-8", lambda data, n: data[: n % (len(data) + 1)] + b"\xff\xfe\xc3" + data[n % (len(data) + 1) :]),
    ("utf-8 bom", lambda data, n: b"\xef\xbb\xbf" + data),
    ("utf-16", lambda data, n: data.decode("utf-8", "replace").encode("utf-16")),
    ("nul byte", lambda data, n: data + b"\x00"),
]

MutationPlan = list[tuple[str, int, int]]
mutation = st.one_of(
    st.tuples(st.just("text"), st.integers(0, len(TEXT_MUTATIONS) - 1), st.integers(0, 10**6)),
    st.tuples(st.just("bytes"), st.integers(0, len(BYTE_MUTATIONS) - 1), st.integers(0, 10**6)),
)
# A generated config, the mutations drawn for it, and a seed for more variants of it.
Case = tuple[dict[str, Any], MutationPlan, int]
case_strategy = st.tuples(config_strategy, st.lists(mutation, max_size=3), st.integers(0, 2**32))


def variants(case: Case, count: int) -> list[bytes]:
    """The drawn config and `count - 1` more mutants of it: generating a config costs far more than
    mutating one, so each generated config is tried several ways."""
    document, plan, seed = case
    rng = random.Random(seed)
    plans = [plan]
    for _ in range(count - 1):
        plan_of_variant: MutationPlan = []
        for _ in range(rng.randrange(4)):
            kind = rng.choice(["text", "bytes"])
            table_size = len(TEXT_MUTATIONS) if kind == "text" else len(BYTE_MUTATIONS)
            plan_of_variant.append((kind, rng.randrange(table_size), rng.randrange(10**6)))
        plans.append(plan_of_variant)
    text = dump(document)
    return [render(text, each) for each in plans]


def render(text: str, mutations: MutationPlan) -> bytes:
    for kind, index, n in mutations:
        if kind == "text":
            text = TEXT_MUTATIONS[index][1](text, n)
    data = text.encode("utf-8", "surrogatepass")
    for kind, index, n in mutations:
        if kind == "bytes":
            data = BYTE_MUTATIONS[index][1](data, n)
    return data


def validate_in_process(path: Path) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["validate", str(path)])
    return code, err.getvalue()


@pytest.fixture(autouse=True)
def _own_secret_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """validate registers each config's secrets for log redaction: keep thousands of fuzzed ones to this test."""
    monkeypatch.setattr(monitor.logs, "_known_secrets", set())


def test_generated_and_mutated_files_through_validate() -> None:
    tried = 0
    with tempfile.TemporaryDirectory() as workdir:
        path = Path(workdir) / "config.yml"

        @settings(FUZZ, max_examples=FILE_EXAMPLES // VARIANTS)
        @given(case_strategy)
        def check(case: Case) -> None:
            nonlocal tried
            for data in variants(case, VARIANTS):
                tried += 1
                path.write_bytes(data)
                assert_validate_exits_0_or_2(path)

        check()
    assert tried >= FILE_EXAMPLES


def assert_validate_exits_0_or_2(path: Path) -> None:
    code, err = validate_in_process(path)
    assert code in (0, 2), err
    assert "Traceback" not in err and "internal error" not in err and "please report" not in err, err


env_name_strategy = st.one_of(
    st.sampled_from(env_names(Settings)),
    st.sampled_from(env_names(Settings)).map(lambda name: name.replace("__", "_", 1)),
    st.sampled_from(env_names(Settings)).map(str.lower),
    st.sampled_from(["PRIME_API_KEY", "PRIME_API_BASE_URL", "PRIME_TEAM_ID", "SLACK_BOT_TOKEN", "PRIME_MONITOR_"]),
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ_", max_size=12).map(lambda tail: "PRIME_MONITOR_" + tail),
)
env_value_strategy = st.one_of(
    junk_scalars.map(lambda value: json.dumps(value) if not isinstance(value, str) else value),
    junk.map(lambda value: json.dumps(value, default=repr)),
    st.sampled_from(["[" * 3000 + "]" * 3000, "[" + "9" * 5000 + "]", '{"a": 1, "a": 2}', "team-\udcff", "x\x00y"]),
    st.text(max_size=20),
)


def test_generated_env_and_files_through_load_settings() -> None:
    tried = 0
    with tempfile.TemporaryDirectory() as workdir:
        path = Path(workdir) / "config.yml"

        @settings(FUZZ, max_examples=ENV_EXAMPLES // VARIANTS)
        @given(case_strategy, st.dictionaries(env_name_strategy, env_value_strategy, max_size=4))
        def check(case: Case, environ: dict[str, str]) -> None:
            nonlocal tried
            for data in variants(case, VARIANTS):
                tried += 1
                path.write_bytes(data)
                try:
                    loaded = load_settings(path, environ=environ)
                except ConfigError as exc:
                    assert "please report" not in str(exc), str(exc)  # the safety net caught something unforeseen
                else:
                    loaded.config_hash()  # what validate prints and every action records

        check()
    assert tried >= ENV_EXAMPLES
