"""The alert state machine: once and clearly, never spam. Driven with real evaluations of plain snapshots."""

from __future__ import annotations

import copy
import unicodedata
from dataclasses import dataclass, field
from typing import Any

import pytest

from monitor.alerts.machine import advance_alert
from monitor.alerts.words import AlertContext, format_money, format_tokens, safe_text
from monitor.records import AlertState, Evaluation, Notification
from monitor.rules.config import RunRule, WalletRule
from monitor.rules.evaluate import evaluate_run, evaluate_wallet
from monitor.snapshots import RunSnapshot, WalletSnapshot

T0 = 1_700_000_000.0
HOUR = 3600.0
POLL = 30.0
RULE = RunRule(name="run-cap", threshold=50, warn_at=[0.5, 0.8], renotify="1h", hysteresis=0.05, action="delete")
CONTEXT = AlertContext(
    subject_name="exp-7",
    run_id="run-1",
    base_model="Qwen/Qwen3.5-9B",
    status="RUNNING",
    link="https://app.example/r/run-1",
)


def evaluation(cost: float, *, t: float = T0, rule: RunRule = RULE, **fields: Any) -> Evaluation:
    snapshot = RunSnapshot(
        run_id="run-1", taken_at=t, run_name="exp-7", status="RUNNING", total_cost_usd=cost, **fields
    )
    result = evaluate_run(rule, snapshot, [], now=t, burn_window=HOUR)
    assert result is not None
    return result


@dataclass
class Subject:
    """One run under one rule, polled over time: the state persists between polls as the store would keep it."""

    rule: RunRule = field(default_factory=lambda: RULE)
    context: AlertContext = CONTEXT
    state: AlertState | None = None
    sent: list[Notification] = field(default_factory=list)

    def poll(self, cost: float | None, t: float) -> list[Notification]:
        ev = evaluation(cost if cost is not None else float("nan"), t=t, rule=self.rule)
        self.state, notes = advance_alert(self.state, ev, rule=self.rule, context=self.context, now=t)
        self.sent.extend(notes)
        return notes

    def poll_series(self, costs: list[float], *, start: float) -> float:
        t = start
        for cost in costs:
            self.poll(cost, t)
            t += POLL
        return t


def test_warning_warning_breach_is_exactly_three_alerts_in_one_thread() -> None:
    subject = Subject()
    subject.poll_series([10, 20, 25, 30, 39, 40.1, 45, 49.99, 51.2, 55, 60], start=T0)

    assert [n.kind for n in subject.sent] == ["alert", "alert", "alert"]
    assert [n.dedup_key for n in subject.sent] == [
        "alert:run-1:run-cap:e0:t1",
        "alert:run-1:run-cap:e0:t2",
        "alert:run-1:run-cap:e0:t3",
    ]
    assert {n.thread_key for n in subject.sent} == {"run-1:run-cap:e0"}
    assert [n.severity for n in subject.sent] == ["warning", "warning", "critical"]
    assert [n.title for n in subject.sent] == [
        "🟠 exp-7 at 50% of run-cap: $25.00 of $50.00",
        "🟠 exp-7 at 80% of run-cap: $40.10 of $50.00",
        "🔴 exp-7 breached run-cap: $51.20 of $50.00 (102%)",
    ]
    assert subject.state is not None and (subject.state.tier, subject.state.opened_at) == (3, T0 + 2 * POLL)


def test_a_jump_past_several_tiers_sends_one_alert_for_the_highest() -> None:
    subject = Subject()
    subject.poll_series([5, 60, 42, 30, 60, 70], start=T0)
    assert [n.dedup_key for n in subject.sent] == ["alert:run-1:run-cap:e0:t3"]
    assert subject.sent[0].title.startswith("🔴 exp-7 breached run-cap: $60.00 of $50.00 (120%)")


def test_staying_breached_sends_one_reminder_per_interval() -> None:
    subject = Subject()
    subject.poll(55, T0)
    reminders_at = []
    t = T0
    for _ in range(int(3.5 * HOUR / POLL)):
        t += POLL
        for note in subject.poll(55, t):
            reminders_at.append((note.kind, t - T0, note.dedup_key))
    assert reminders_at == [
        ("renotify", 1 * HOUR, "renotify:run-1:run-cap:e0:n1"),
        ("renotify", 2 * HOUR, "renotify:run-1:run-cap:e0:n2"),
        ("renotify", 3 * HOUR, "renotify:run-1:run-cap:e0:n3"),
    ]
    reminder = subject.sent[1]
    assert reminder.thread_key == "run-1:run-cap:e0"
    assert reminder.title == "🔴 exp-7 still over run-cap: $55.00 of $50.00 (110%)"
    assert "Open for 1h" in reminder.text


def test_a_finished_run_gets_no_reminders_and_says_so() -> None:
    subject = Subject(context=AlertContext(subject_name="exp-7", run_id="run-1", status="COMPLETED", terminal=True))
    subject.poll(55, T0)
    subject.poll_series([55] * 500, start=T0 + POLL)
    assert [n.kind for n in subject.sent] == ["alert"]
    assert "finished (COMPLETED): no reminders" in subject.sent[0].text


def test_renotify_null_never_reminds() -> None:
    subject = Subject(rule=RULE.model_copy(update={"renotify": None}))
    subject.poll(55, T0)
    subject.poll_series([55] * 500, start=T0 + POLL)
    assert len(subject.sent) == 1


def test_resolve_once_only_past_the_hysteresis() -> None:
    subject = Subject()
    subject.poll(55, T0)
    # 24.00 is under the first tier ($25) but not by the 5% hysteresis (< $23.75): still open.
    subject.poll_series([49, 30, 24, 24.5, 23.8], start=T0 + POLL)
    assert [n.kind for n in subject.sent] == ["alert"]
    subject.poll_series([23.0, 10.0, 5.0], start=T0 + 10 * POLL)
    assert [(n.kind, n.dedup_key) for n in subject.sent[1:]] == [("resolve", "resolve:run-1:run-cap:e0")]
    resolve = subject.sent[1]
    assert resolve.thread_key == "run-1:run-cap:e0"
    assert resolve.title == "✅ exp-7 back within run-cap: $23.00 of $50.00"
    assert resolve.severity == "info"
    assert subject.state is not None and subject.state.tier == 0


def test_a_flap_around_a_threshold_sends_nothing_more() -> None:
    subject = Subject()
    subject.poll_series([50.1, 49.9] * 10 + [50.1], start=T0)
    subject.poll_series([30, 25.1, 24.9, 25.1, 24.9], start=T0 + HOUR / 2)
    assert [n.dedup_key for n in subject.sent] == ["alert:run-1:run-cap:e0:t3"]


def test_reopening_after_a_resolve_starts_a_new_episode_with_new_keys() -> None:
    subject = Subject()
    t = subject.poll_series([30, 45, 55, 10], start=T0)
    subject.poll_series([30, 55, 10], start=t)
    assert [(n.kind, n.dedup_key, n.thread_key) for n in subject.sent] == [
        ("alert", "alert:run-1:run-cap:e0:t1", "run-1:run-cap:e0"),
        ("alert", "alert:run-1:run-cap:e0:t2", "run-1:run-cap:e0"),
        ("alert", "alert:run-1:run-cap:e0:t3", "run-1:run-cap:e0"),
        ("resolve", "resolve:run-1:run-cap:e0", "run-1:run-cap:e0"),
        ("alert", "alert:run-1:run-cap:e1:t1", "run-1:run-cap:e1"),
        ("alert", "alert:run-1:run-cap:e1:t3", "run-1:run-cap:e1"),
        ("resolve", "resolve:run-1:run-cap:e1", "run-1:run-cap:e1"),
    ]
    assert len({n.dedup_key for n in subject.sent}) == len(subject.sent)


def test_replaying_a_transition_after_a_crash_gives_the_same_notifications() -> None:
    """The store may crash after enqueueing and before saving the new state: the replay from the old state
    must produce the same keys (the outbox drops them) and never modify the state it was given."""
    subject = Subject()
    subject.poll_series([30, 45], start=T0)
    for cost, t in ((55.0, T0 + 300), (55.0, T0 + 300 + HOUR), (5.0, T0 + 300 + HOUR + 60)):
        before = copy.deepcopy(subject.state)
        ev = evaluation(cost, t=t)
        first_state, first = advance_alert(before, ev, rule=RULE, context=CONTEXT, now=t)
        replay_state, replay = advance_alert(copy.deepcopy(before), ev, rule=RULE, context=CONTEXT, now=t)
        assert before == subject.state  # the input state is left alone
        assert len(first) == 1 and first == replay and first_state == replay_state
        subject.state = first_state
    assert subject.state is not None and subject.state.tier == 0


def test_unknown_values_neither_open_nor_close_an_alert() -> None:
    subject = Subject()
    subject.poll(55, T0)
    for k in range(1, 20):
        subject.poll(None, T0 + k * POLL)
    assert [n.kind for n in subject.sent] == ["alert"]
    assert subject.state is not None and subject.state.tier == 3 and subject.state.last_value == 55
    fresh = Subject()
    fresh.poll(None, T0)
    assert fresh.sent == [] and fresh.state is not None and fresh.state.tier == 0


def test_a_rule_edited_to_fewer_tiers_keeps_a_breach_a_breach() -> None:
    subject = Subject()
    subject.poll(55, T0)
    subject.rule = RULE.model_copy(update={"warn_at": []})
    subject.poll(55, T0 + POLL)
    subject.poll(55, T0 + HOUR)
    assert [n.dedup_key for n in subject.sent] == ["alert:run-1:run-cap:e0:t3", "renotify:run-1:run-cap:e0:n1"]


def test_alert_message_explains_what_by_how_much_and_what_next() -> None:
    subject = Subject()
    snapshot_history = [RunSnapshot(run_id="run-1", taken_at=T0, run_name="exp-7", total_cost_usd=1000.0)]
    latest = RunSnapshot(run_id="run-1", taken_at=T0 + HOUR, run_name="exp-7", status="RUNNING", total_cost_usd=1234.56)
    rule = RULE.model_copy(update={"threshold": 1000.0})
    ev = evaluate_run(rule, latest, snapshot_history, now=T0 + HOUR, burn_window=2 * HOUR)
    assert ev is not None
    _, (note,) = advance_alert(subject.state, ev, rule=rule, context=CONTEXT, now=T0 + HOUR)
    assert note.title == "🔴 exp-7 breached run-cap: $1,234.56 of $1,000.00 (123%)"
    assert note.text.splitlines() == [
        "Run exp-7 breached rule run-cap: total cost is $1,234.56, $234.56 over the limit of $1,000.00, 123% used.",
        "Burn rate: $234.56/h. The limit is already reached.",
        "Action: delete (see enforcement).",
        "Reminder every 1h while this stays open.",
    ]
    assert dict(note.fields) == {
        "Run": "exp-7",
        "Run ID": "run-1",
        "Model": "Qwen/Qwen3.5-9B",
        "Status": "RUNNING",
        "Rule": "run-cap",
        "Metric": "total cost",
        "Value": "$1,234.56",
        "Threshold": "$1,000.00",
        "Used": "123%",
        "Burn rate": "$234.56/h",
        "Time to budget": "reached",
        "Action": "delete",
    }
    assert note.link == "https://app.example/r/run-1"
    assert (note.subject, note.rule, note.created_at) == ("run-1", "run-cap", T0 + HOUR)


def test_warning_message_gives_time_to_budget_and_tokens_read_as_tokens() -> None:
    rule = RunRule(name="token-cap", metric="training_tokens", threshold=20_000_000, warn_at=[0.5])
    history = [RunSnapshot(run_id="run-1", taken_at=T0, total_cost_usd=1.0, training_tokens=10_000_000)]
    latest = RunSnapshot(run_id="run-1", taken_at=T0 + HOUR, total_cost_usd=2.5, training_tokens=12_345_678)
    ev = evaluate_run(rule, latest, history, now=T0 + HOUR, burn_window=2 * HOUR)
    assert ev is not None
    _, (note,) = advance_alert(None, ev, rule=rule, context=CONTEXT, now=T0 + HOUR)
    assert note.title == "🟠 exp-7 at 50% of token-cap: training tokens 12.35M of 20M"
    assert "training tokens are 12.35M of 20M (7.65M left, 61% used)." in note.text
    assert "Time to budget at this rate: 3h15m." in note.text  # 7.65M tokens to go at 2.35M/h = 3.26 h
    assert "Next: the rule breaches at 20M tokens; action on breach: alert only." in note.text


def test_wallet_messages_say_wallet() -> None:
    rule = WalletRule(name="wallet-floor", scope="wallet", below=100, warn_at=[0.5])
    context = AlertContext(subject_name="w-1")
    state = None
    notes: list[Notification] = []
    for k, balance in enumerate((300.0, 150.0, 80.0, 400.0)):
        ev = evaluate_wallet(
            rule, WalletSnapshot(wallet_id="w-1", taken_at=T0 + k, balance_usd=balance), [],
            total_burn_rate_usd_per_hour=20.0, now=T0 + k,
        )  # fmt: skip
        state, new = advance_alert(state, ev, rule=rule, context=context, now=T0 + k)
        notes += new
    assert [n.title for n in notes] == [
        "🟠 wallet w-1 nearing wallet-floor: balance $150.00 (alert below $100.00)",
        "🔴 wallet w-1 breached wallet-floor: balance $80.00 (alert below $100.00)",
        "✅ wallet w-1 back above wallet-floor: balance $400.00 (alert below $100.00)",
    ]
    assert notes[1].text.startswith("Wallet w-1 breached rule wallet-floor: balance is $80.00, $20.00 under the floor")
    assert "Total burn rate of watched runs: $20.00/h" in notes[0].text
    assert dict(notes[0].fields)["Time to limit"] == "2h30m"
    assert [n.dedup_key for n in notes] == [
        "alert:w-1:wallet-floor:e0:t1",
        "alert:w-1:wallet-floor:e0:t2",
        "resolve:w-1:wallet-floor:e0",
    ]


HOSTILE_NAMES = [
    'exp "quoted" \\ back\\slash',
    "line one\nline two\r\nline three\x85end",
    "tab\there\x00nul\x1b[31mred\x7f",
    "🔥🚀 run 👨‍👩‍👧 ünïcødé",
    "evil\u202egnp.exe\u2028next\u200bzero",
    "lone \ud800 surrogate",
    "<script>&amp;</script>",
    "x" * 1024,
    "\n\t ",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_run_names_come_out_as_safe_single_lines(name: str) -> None:
    context = AlertContext(subject_name=name, run_id="run-1", base_model=name, status=name)
    _, (note,) = advance_alert(None, evaluation(60), rule=RULE, context=context, now=T0)
    for text in [note.title, *(value for _, value in note.fields)]:
        assert "\n" not in text and "\r" not in text
        assert not any(unicodedata.category(c) in ("Cc", "Cs") for c in text)
        assert not any(c in text for c in "\u202e\u2028\u200b")
        text.encode("utf-8")  # a lone surrogate would raise here and again in the Slack client
    shown = note.title.removeprefix("🔴 ").split(" breached run-cap:")[0]
    assert 0 < len(shown) <= 80
    assert dict(note.fields)["Run"] == shown
    assert note.text.splitlines()[0].startswith(f"Run {shown} breached")


def test_safe_text_keeps_what_a_person_typed() -> None:
    assert safe_text('exp "7" \\ <b>&') == 'exp "7" \\ <b>&'  # escaping is the formatter's job
    assert safe_text("a\n\n  b\tc") == "a b c"
    assert safe_text("🔥 run 👨‍👩‍👧") == "🔥 run 👨‍👩‍👧"
    long = safe_text("y" * 1024)
    assert len(long) == 80 and long.endswith("…")
    assert safe_text("\n\t ") == ""
    subject = Subject(context=AlertContext(subject_name="\n\t ", run_id="run-1"))
    (note,) = subject.poll(60, T0)
    assert note.title.startswith("🔴 run-1 breached")  # an empty name falls back to the run id


def test_unsafe_links_are_dropped() -> None:
    for link in ("javascript:alert(1)", "https://ok.example/a\nb", ""):
        context = AlertContext(subject_name="exp-7", link=link)
        _, (note,) = advance_alert(None, evaluation(60), rule=RULE, context=context, now=T0)
        assert note.link is None


def test_money_and_token_formats() -> None:
    assert format_money(1234.5) == "$1,234.50"
    assert format_money(0.0012) == "$0.0012"
    assert format_money(-5) == "-$5.00"
    assert format_money(None) == "unknown"
    assert format_tokens(999_999) == "999,999 tokens"
    assert format_tokens(1_000_000) == "1M tokens"
    assert format_tokens(2_500_000_000) == "2.5B tokens"
