"""Hostile config input: every malformed file or env value is one ConfigError naming the file and the
line or the field (or the env variable), never a traceback and never another exception type."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.cli.main import main
from monitor.config.load import load_config, load_settings
from monitor.config.settings import ConfigError

ALIAS_BOMB = "\n".join(
    ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
)
ALIAS_CHAIN = "\n".join(
    ["c0: &c0 " + "[" * 20 + "1" + "]" * 20]
    + [f"c{i}: &c{i} " + "[" * 20 + f"*c{i - 1}" + "]" * 20 for i in range(1, 40)]
)

# (file bytes, what the message must say). Every message must also name the file.
FILE_CASES: dict[str, tuple[bytes, list[str]]] = {
    "utf-16": ("poll: {interval: 5}\n".encode("utf-16"), ["UTF-16", "save it as UTF-8"]),
    "utf-32": ("poll: {interval: 5}\n".encode("utf-32"), ["UTF-32"]),
    "latin-1": ("poll: {interval: 5}\n# café\n".encode("latin-1"), ["not UTF-8", "line 2"]),
    "invalid utf-8": (b"rules:\n  - name: \xff\xfe\n", ["not UTF-8", "line 2, column 11"]),
    "nul byte": (b"poll: {interval: 5}\x00\n", ["line 1", "U+0000"]),
    "deep flow nesting": (b"watch: {runs: " + b"[" * 5000 + b"]" * 5000 + b"}", ["nested deeper", "line 1"]),
    "deep block nesting": (b"a:\n" + b"".join(b"  " * i + b"k:\n" for i in range(1, 400)), ["nested deeper"]),
    "deep via alias chain": (ALIAS_CHAIN.encode(), ["nested deeper", "aliases"]),
    "int key": (b"poll:\n  30: interval\n", ["'30' is not a string", "line 2"]),
    "null key": (b"~: 1\n", ["is not a string", "quote it"]),
    "bool key": (b"enforce:\n  on: true\n", ["'on' is not a string", "line 2", "quote it"]),
    "list key": (b"? [a, b]\n: 1\n", ["not a string", "line 1"]),
    "duplicate section": (
        b"enforce:\n  dry_run: true\npoll: {interval: 30s}\nenforce:\n  dry_run: false\n",
        ["'enforce'", "lines 1 and 4"],
    ),
    "duplicate nested key": (b"enforce:\n  dry_run: true\n  dry_run: false\n", ["'dry_run'", "lines 2 and 3"]),
    "duplicate flow key": (b"poll: {interval: 5, interval: 6}\n", ["'interval'", "twice on line 1"]),
    "alias bomb": (ALIAS_BOMB.encode(), ["alias", "100,000"]),
    "alias cycle": (b"watch: &w {runs: [*w]}\n", ["cycle", "line 1"]),
    "python tag": (b"api: !!python/object/apply:os.system ['true']\n", ["!!python/object/apply", "line 1"]),
    "binary tag": (b"api: {team_id: !!binary aGVsbG8=}\n", ["!!binary", "line 1"]),
    "custom tag": (b"poll: {interval: !secret x}\n", ["!secret", "line 1"]),
    "escape beyond unicode": (b'api: {team_id: "\\UFFFFFFFF"}\n', ["line 1", "escape sequence"]),
    "lone surrogate": (b'api: {team_id: "\\ud800"}\n', ["surrogate", "line 1"]),
    "number too long": (b"poll: {interval: " + b"9" * 5000 + b"}\n", ["number too long", "line 1"]),
    "huge int duration": (b"poll: {interval: " + b"9" * 400 + b"}\n", ["poll.interval (line 1)", "at most"]),
    "huge int threshold": (b"rules: [{name: cap, threshold: " + b"9" * 400 + b"}]", ["rules[0] (cap).threshold"]),
    "absurd threshold": (b"rules: [{name: cap, threshold: 1.0e300}]", ["rules[0] (cap).threshold"]),
    "nan duration": (b"poll: {interval: .nan}\n", ["poll.interval", "finite"]),
    "inf duration": (b"notify: {retry_max: .inf}\n", ["notify.retry_max", "finite"]),
    "nan text": (b"poll:\n  wallet_interval: nan\n", ["poll.wallet_interval (line 2)", "finite"]),
    "1e30 seconds": (b"poll: {interval: 1e30}\n", ["poll.interval", "at most 365d"]),
    "nan threshold": (b"rules: [{name: cap, threshold: .nan}]", ["rules[0] (cap).threshold"]),
    "nan warn_at": (b"rules: [{name: cap, threshold: 5, warn_at: [.nan]}]", ["rules[0] (cap).warn_at"]),
    "inf below": (
        b"rules: [{name: floor, scope: wallet, metric: balance_usd, below: .inf}]",
        ["rules[0] (floor).below"],
    ),
    "zero api timeout": (b"api: {timeout: 0}\n", ["api.timeout", "at least"]),
    "zero webhook timeout": (b"notify: {webhook: {timeout: 0s}}\n", ["notify.webhook.timeout"]),
    "zero interval": (b"poll: {interval: 0}\n", ["poll.interval", "at least 1s"]),
    "zero min_interval": (b"poll: {min_interval: 0}\n", ["poll.min_interval"]),
    "zero wallet_interval": (b"poll: {wallet_interval: 0}\n", ["poll.wallet_interval"]),
    "zero burn_window": (b"poll: {burn_window: 0}\n", ["poll.burn_window"]),
    "zero retry_base": (b"notify: {retry_base: 0}\n", ["notify.retry_base"]),
    "zero horizon": (b"rules: [{name: p, metric: projected_cost_usd, threshold: 5, horizon: 0}]", ["(p).horizon"]),
    "zero window": (b"rules: [{name: s, scope: wallet, metric: spend_usd, threshold: 5, window: 0}]", ["window"]),
    "zero renotify": (b"rules: [{name: r, threshold: 5, renotify: 0}]", ["rules[0] (r).renotify"]),
    "zero unhealthy_after": (b"health: {unhealthy_after: 0}\n", ["health.unhealthy_after"]),
    "retry_base over retry_max": (b"notify: {retry_base: 10m, retry_max: 1m}\n", ["notify (line 1)", "retry_base"]),
    "min_interval over interval": (b"poll: {interval: 10s, min_interval: 20s}\n", ["poll", "min_interval"]),
    "backoff under interval": (b"poll: {interval: 60s, not_found_backoff_max: 30s}\n", ["not_found_backoff_max"]),
    "burn window too short": (b"poll: {interval: 60s, burn_window: 90s}\n", ["burn_window", "twice interval"]),
    "unhealthy before blind": (b"health: {blind_after: 10m, unhealthy_after: 5m}\n", ["unhealthy_after"]),
    "unhealthy within a poll": (b"health: {unhealthy_after: 30s, blind_after: 0}\n", ["health.unhealthy_after"]),
    "dot run id": (b"watch:\n  runs: [ok, '..']\n", ["watch.runs[1] (line 2)", "dot segment"]),
    "slash run id": (b"rules: [{name: c, threshold: 1, match: {run_id: [a, b/c]}}]", ["(c).match.run_id[1]", "'/'"]),
    "empty run id": (b"watch: {runs: ['']}\n", ["watch.runs[0]", "empty"]),
    "control char run id": (b'watch: {runs: ["a\\tb"]}\n', ["watch.runs[0]", "U+0009"]),
    "derived delete": (
        b"rules:\n  - {name: a, threshold: 1}\n  - {name: b, threshold: 2}\n"
        b"  - {name: input-cap, metric: inference_input_cost_usd, threshold: 5, action: delete}\n",
        [
            "rules[2] (input-cap) (line 4): action delete needs a figure the API reports directly; "
            "inference_input_cost_usd is derived from prices (an estimate): use action alert, or cap inference_cost_usd"
        ],
    ),
    "derived output delete": (
        b"rules: [{name: o, metric: inference_output_cost_usd, threshold: 5, action: delete}]",
        ["rules[0] (o)", "inference_output_cost_usd is derived from prices"],
    ),
    "projection delete": (
        b"rules: [{name: p, metric: projected_cost_usd, threshold: 5, action: delete}]",
        ["rules[0] (p)", "projection", "use action alert"],
    ),
    "rate delete": (b"rules: [{name: r, metric: burn_rate_usd_per_hour, threshold: 5, action: delete}]", ["a rate"]),
    "scope not a string": (b"rules: [{name: a, threshold: 5, scope: [run]}]", ["rules[0] (a)", "scope must be"]),
    "dashboard braces": (b"api: {dashboard_url: 'https://x/{id}'}\n", ["api.dashboard_url", "{run_id}"]),
    "dashboard format spec": (b"api: {dashboard_url: 'https://x/{run_id:>999999999}'}\n", ["api.dashboard_url"]),
    "webhook not a url": (b"notify: {webhook: {url: 'hooks slack com'}}\n", ["notify.webhook.url", "http"]),
    "unicode digit port": ("server: {listen: '0.0.0.0:٣٣'}\n".encode(), ["server.listen"]),
    "zero-width key": ("po\u200bll: {}\n".encode(), ["po\\u200bll (line 1)", "Extra inputs"]),
    "several documents": (b"poll: {}\n---\napi: {}\n", ["line 2", "document"]),
    "tab indent": (b"poll:\n\tinterval: 5\n", ["line 2"]),
    "a list": (b"- poll\n", ["top level must be a mapping"]),
    "a section that is a list": (b"poll: [1, 2]\n", ["poll (line 1)"]),
}


@pytest.mark.parametrize("case", FILE_CASES, ids=str)
def test_malformed_file_is_one_config_error_naming_file_and_place(tmp_path: Path, case: str) -> None:
    data, expected = FILE_CASES[case]
    path = tmp_path / "c.yml"
    path.write_bytes(data)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    message = str(caught.value)
    assert message.startswith(str(path)), message
    for part in expected:
        assert part in message, message
    assert "please report" not in message, message  # the safety net is for the unforeseen only


def test_accepted_quirks(tmp_path: Path) -> None:
    """What plain YAML allows and a person means: a UTF-8 BOM, merge keys, dates read as text."""
    path = tmp_path / "c.yml"
    path.write_bytes(
        b"\xef\xbb\xbfpoll:\n  <<: {interval: 10s, min_interval: 2s}\n  interval: 20s\nwatch: {runs: [2024-01-01]}\n"
    )
    settings = load_settings(path, environ={})
    assert (settings.poll.interval, settings.poll.min_interval) == (20.0, 2.0)
    assert settings.watch.runs == ["2024-01-01"]
    assert load_settings(None, overrides={"enforce": {"grace_period": 0}}, environ={}).enforce.grace_period == 0


def test_validate_exits_2_with_one_line_per_problem_and_no_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.yml"
    path.write_bytes(b"enforce:\n  dry_run: true\nenforce:\n  dry_run: false\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "'enforce'" in err and "lines 1 and 3" in err and "Traceback" not in err


# (env, what the message must say)
ENV_CASES: dict[str, tuple[dict[str, str], list[str]]] = {
    "bad duration": ({"PRIME_MONITOR_POLL__INTERVAL": "soon"}, ["poll.interval (from PRIME_MONITOR_POLL__INTERVAL)"]),
    "nan": ({"PRIME_MONITOR_NOTIFY__RETRY_BASE": "nan"}, ["PRIME_MONITOR_NOTIFY__RETRY_BASE", "finite"]),
    "bool": ({"PRIME_MONITOR_ENFORCE__DRY_RUN": "perhaps"}, ["enforce.dry_run (from PRIME_MONITOR_ENFORCE__DRY_RUN)"]),
    "list not json": ({"PRIME_MONITOR_WATCH__RUNS": "run-a"}, ["PRIME_MONITOR_WATCH__RUNS: not valid JSON"]),
    "deep json": ({"PRIME_MONITOR_WATCH__RUNS": "[" * 5000 + "]" * 5000}, ["PRIME_MONITOR_WATCH__RUNS", "deeper"]),
    "long int json": ({"PRIME_MONITOR_RULES": "[" + "9" * 5000 + "]"}, ["PRIME_MONITOR_RULES: not valid JSON"]),
    "duplicate json key": ({"PRIME_MONITOR_POLL": '{"interval": 5, "interval": 6}'}, ["PRIME_MONITOR_POLL", "twice"]),
    "section not an object": ({"PRIME_MONITOR_POLL": "5"}, ["poll (from PRIME_MONITOR_POLL)"]),
    "bad run id": ({"PRIME_MONITOR_WATCH__RUNS": '["ok", "."]'}, ["watch.runs[1] (from PRIME_MONITOR_WATCH__RUNS)"]),
    "rule from env": ({"PRIME_MONITOR_RULES": '[{"name": "a", "threshold": -1}]'}, ["rules[0] (a).threshold"]),
    "not utf-8": ({"PRIME_MONITOR_API__TEAM_ID": "team-\udcff"}, ["PRIME_MONITOR_API__TEAM_ID", "UTF-8"]),
    "cli name": ({"PRIME_API_BASE_URL": "ftp://x"}, ["api.base_url (from PRIME_API_BASE_URL)"]),
    "pair across sources": (
        {"PRIME_MONITOR_POLL__MIN_INTERVAL": "60"},
        ["PRIME_MONITOR_POLL__MIN_INTERVAL", "min_interval"],
    ),
    "same key twice": (
        {"PRIME_MONITOR_POLL__INTERVAL": "5s", "prime_monitor_poll__interval": "6s"},
        ["both set poll.interval"],
    ),
}


@pytest.mark.parametrize("case", ENV_CASES, ids=str)
def test_invalid_env_value_is_a_config_error_naming_the_variable(case: str) -> None:
    environ, expected = ENV_CASES[case]
    with pytest.raises(ConfigError) as caught:
        load_settings(None, environ=environ)
    for part in expected:
        assert part in str(caught.value), str(caught.value)


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("PRIME_MONITOR_ENFORCE_DRY_RUN", "PRIME_MONITOR_ENFORCE__DRY_RUN"),
        ("PRIME_MONITOR_ENFORCE__DRYRUN", "PRIME_MONITOR_ENFORCE__DRY_RUN"),
        ("PRIME_MONITOR_POLL__INTERVALL", "PRIME_MONITOR_POLL__INTERVAL"),
        ("PRIME_MONITOR_NOTIFY__SLACK_TOKEN", "PRIME_MONITOR_NOTIFY__SLACK__TOKEN"),
        ("PRIME_MONITOR_RULES__0__THRESHOLD", "PRIME_MONITOR_RULES"),
    ],
)
def test_env_name_that_matches_no_key_is_warned_with_the_closest(name: str, suggestion: str) -> None:
    loaded = load_config(None, environ={name: "false"})
    assert loaded.settings.enforce.dry_run is True  # ignored, not half-applied
    assert len(loaded.warnings) == 1
    assert name in loaded.warnings[0] and f"did you mean {suggestion}?" in loaded.warnings[0]


def test_env_sets_values_and_beats_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yml"
    path.write_text("poll: {interval: 30s}\nenforce: {dry_run: true}\n")
    loaded = load_config(
        path,
        environ={
            "PRIME_MONITOR_POLL": '{"interval": "20s", "min_interval": "2s"}',
            "PRIME_MONITOR_POLL__INTERVAL": "15s",  # a key beats its section's JSON
            "PRIME_MONITOR_ENFORCE__DRY_RUN": "false",
            "PRIME_MONITOR_WATCH__RUNS": '["run-a", "run-b"]',
            "UNRELATED": "x",
        },
    )
    settings = loaded.settings
    assert (settings.poll.interval, settings.poll.min_interval) == (15.0, 2.0)
    assert settings.enforce.dry_run is False and settings.watch.runs == ["run-a", "run-b"]
    assert loaded.warnings == []


def test_cli_prints_env_warnings_and_still_validates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.yml"
    path.write_text("poll: {interval: 30s}\n")
    monkeypatch.setenv("PRIME_MONITOR_ENFORCE_DRY_RUN", "false")
    assert main(["validate", str(path)]) == 0
    err = capsys.readouterr().err
    assert "warning: environment variable PRIME_MONITOR_ENFORCE_DRY_RUN" in err
    assert "PRIME_MONITOR_ENFORCE__DRY_RUN" in err


def test_a_config_file_holding_a_secret_readable_by_others_is_warned_about(tmp_path: Path) -> None:
    secret = "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX"
    path = tmp_path / "c.yml"
    path.write_text(f"notify:\n  slack: {{webhook_url: '{secret}'}}\n")
    path.chmod(0o644)
    warnings = load_config(path, environ={}).warnings
    assert len(warnings) == 1
    assert "notify.slack.webhook_url" in warnings[0] and "chmod 600" in warnings[0] and "644" in warnings[0]
    assert secret not in warnings[0]
    path.chmod(0o600)
    assert load_config(path, environ={}).warnings == []
    no_secret = tmp_path / "plain.yml"
    no_secret.write_text("poll: {interval: 30s}\n")
    no_secret.chmod(0o644)
    assert load_config(no_secret, environ={}).warnings == []


def test_secrets_come_from_files_as_docker_and_kubernetes_mount_them(tmp_path: Path) -> None:
    key_file = tmp_path / "prime_api_key"
    key_file.write_text("pit-key-from-a-file-0123456789\n")
    hook_file = tmp_path / "webhook_url"
    hook_file.write_text("https://hooks.example/services/T0/B0/SECRETPATH")
    environ = {"PRIME_API_KEY_FILE": str(key_file), "PRIME_MONITOR_NOTIFY__WEBHOOK__URL_FILE": str(hook_file)}
    settings = load_settings(None, environ=environ)
    assert settings.api.api_key is not None
    assert settings.api.api_key.get_secret_value() == "pit-key-from-a-file-0123456789"
    assert settings.notify.webhook.url is not None
    assert settings.notify.webhook.url.get_secret_value() == "https://hooks.example/services/T0/B0/SECRETPATH"
    # A rotated secret is read again on the next load (SIGHUP).
    key_file.write_text("pit-key-rotated-9876543210")
    assert load_settings(None, environ=environ).api.api_key.get_secret_value() == "pit-key-rotated-9876543210"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"PRIME_API_KEY_FILE": "/nonexistent/key"},
            "PRIME_API_KEY_FILE: cannot read the secret file /nonexistent/key",
        ),
        ({"PRIME_API_KEY_FILE": "EMPTY"}, "is empty"),
        ({"PRIME_API_KEY_FILE": "KEY", "PRIME_API_KEY": "pit-inline-0123456789"}, "both set"),
    ],
)
def test_a_secret_file_that_cannot_be_used_is_a_config_error_naming_the_variable(
    tmp_path: Path, environ: dict[str, str], message: str
) -> None:
    (tmp_path / "empty").write_text("\n")
    (tmp_path / "key").write_text("pit-key-from-a-file-0123456789")
    resolved = {
        k: v.replace("EMPTY", str(tmp_path / "empty")).replace("KEY", str(tmp_path / "key")) for k, v in environ.items()
    }
    with pytest.raises(ConfigError, match=message) as caught:
        load_settings(None, environ=resolved)
    assert "pit-key-from-a-file" not in str(caught.value) and "pit-inline" not in str(caught.value)
