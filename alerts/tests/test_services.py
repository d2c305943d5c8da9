"""Rule evaluation, alert states and history, selectors, the metric source."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from alerts.models import Alert, AlertRule, AlertState, RuleEvaluation
from alerts.selectors import SelectorError, alert_list_firing, selector_parse, selector_sum
from alerts.services import (
    LOCK_KEY,
    AlertStateError,
    alert_acknowledge,
    alert_raise,
    alert_resolve,
    alert_rules_evaluate,
)
from alerts.tasks import alert_rules_evaluate_task
from support.metrics import metrics_render
from support.redis_client import get_redis


def _rule(**extra: object) -> AlertRule:
    AlertRule.objects.update(enabled=False)  # the seeds' rules stay out of the way
    fields: dict[str, object] = {
        "name": "Queue",
        "metric": "test_depth",
        "threshold": 10.0,
        "severity": "warning",
        "window_seconds": 300,
        **extra,
    }
    return AlertRule.objects.create(**fields)


def test_selector_parse_and_sum():
    selector = selector_parse('x_total{status=~"5..", route!="health",method="GET"}')
    assert [(m.label, m.op, m.value) for m in selector.matchers] == [
        ("status", "=~", "5.."),
        ("route", "!=", "health"),
        ("method", "=", "GET"),
    ]
    assert selector.matches("x_total", {"status": "503", "route": "inbox", "method": "GET"})
    assert not selector.matches("x_total", {"status": "5031", "route": "inbox", "method": "GET"})
    assert not selector.matches("x_total", {"status": "500", "route": "health", "method": "GET"})
    assert not selector.matches("y_total", {"status": "500", "route": "a", "method": "GET"})
    assert selector_parse("plain").matchers == ()
    with pytest.raises(SelectorError):
        selector_parse("x{status=5}")
    with pytest.raises(SelectorError):
        selector_parse('x{status=~"("}')
    with pytest.raises(SelectorError):
        selector_parse("no spaces allowed")
    assert selector_sum(selector_parse("nothing"), []) == 0.0


@pytest.mark.django_db
def test_datapoints_to_alarm_needs_consecutive_breaches(feed):
    rule = _rule(datapoints_to_alarm=3)
    now = timezone.now()
    for minute, value in enumerate([11, 12, 5, 11, 11]):
        feed.set(test_depth=value)
        assert alert_rules_evaluate(now=now + timedelta(minutes=minute)).fired == []
    feed.set(test_depth=13)
    assert alert_rules_evaluate(now=now + timedelta(minutes=5)).fired == [rule.pk]
    assert list(RuleEvaluation.objects.filter(rule=rule).values_list("value", "breaching")[:2]) == [
        (13.0, True),
        (11.0, True),
    ]


@pytest.mark.django_db
def test_an_open_alert_is_not_raised_twice_and_keeps_the_latest_value(feed):
    rule = _rule()
    now = timezone.now()
    for minute, value in enumerate([11, 20]):
        feed.set(test_depth=value)
        alert_rules_evaluate(now=now + timedelta(minutes=minute))
    alert = Alert.objects.get()
    assert (alert.value, alert.fingerprint) == (20.0, f"rule:{rule.pk}")
    assert alert.history.count() == 1


@pytest.mark.django_db
def test_without_auto_resolve_the_alert_stays_open(feed):
    _rule(auto_resolve=False)
    now = timezone.now()
    feed.set(test_depth=11)
    alert_rules_evaluate(now=now)
    feed.set(test_depth=1)
    assert alert_rules_evaluate(now=now + timedelta(minutes=1)).resolved == []
    assert Alert.objects.get().state == AlertState.FIRING


@pytest.mark.django_db
def test_one_evaluation_at_a_time_and_a_repeated_beat_adds_no_datapoint(feed):
    rule = _rule()
    feed.set(test_depth=1)
    get_redis().set(LOCK_KEY, "someone-else", ex=30)
    assert alert_rules_evaluate().skipped is True
    get_redis().delete(LOCK_KEY)

    now = timezone.now()
    assert alert_rules_evaluate(now=now).evaluated == 1
    assert alert_rules_evaluate(now=now + timedelta(seconds=10)).evaluated == 0
    assert RuleEvaluation.objects.filter(rule=rule).count() == 1
    assert get_redis().get(LOCK_KEY) is None


@pytest.mark.django_db
def test_a_counter_reset_counts_from_zero(feed):
    _rule(aggregation="increase", metric="test_requests_total", threshold=50)
    now = timezone.now()
    feed.set(test_requests_total=1000)
    alert_rules_evaluate(now=now)
    feed.set(test_requests_total=60)  # the process restarted: 60 since
    assert len(alert_rules_evaluate(now=now + timedelta(minutes=5)).fired) == 1


@pytest.mark.django_db
def test_old_evaluations_are_purged(feed, settings):
    rule = _rule()
    feed.set(test_depth=1)
    now = timezone.now()
    alert_rules_evaluate(now=now - timedelta(days=settings.ALERTS_EVALUATIONS_RETENTION_DAYS + 1))
    alert_rules_evaluate(now=now)
    assert RuleEvaluation.objects.filter(rule=rule).count() == 1


@pytest.mark.django_db
def test_the_beat_task_evaluates(feed):
    rule = _rule()
    feed.set(test_depth=11)
    alert_rules_evaluate_task.delay()
    assert Alert.objects.get().rule == rule


@pytest.mark.django_db
def test_states_and_history(supervisor):
    alert = alert_raise(fingerprint="x", title="X", summary="", severity="critical").alert
    assert alert_raise(fingerprint="x", title="X", summary="", severity="critical").created is False

    alert_acknowledge(alert_id=alert.pk, actor=supervisor, note="looking")
    with pytest.raises(AlertStateError):
        alert_acknowledge(alert_id=alert.pk, actor=supervisor)
    alert_resolve(alert_id=alert.pk, actor=supervisor)
    with pytest.raises(AlertStateError):
        alert_resolve(alert_id=alert.pk, actor=supervisor)

    again = alert_raise(fingerprint="x", title="X", summary="", severity="critical")
    assert again.created is True
    assert again.alert.pk != alert.pk
    assert [(e.action, e.actor, e.note) for e in alert.history.all()] == [
        ("fired", None, ""),
        ("acknowledged", supervisor, "looking"),
        ("resolved", supervisor, ""),
    ]
    from support.models import AuditLog

    assert list(AuditLog.objects.order_by("pk").values_list("action", "object_id")) == [
        ("alerts.acknowledged", str(alert.pk)),
        ("alerts.resolved", str(alert.pk)),
    ]


@pytest.mark.django_db
def test_alert_list_firing_for_the_dashboard(supervisor):
    first = alert_raise(fingerprint="a", title="A", summary="", severity="warning").alert
    second = alert_raise(fingerprint="b", title="B", summary="", severity="critical").alert
    third = alert_raise(fingerprint="c", title="C", summary="", severity="info").alert
    alert_acknowledge(alert_id=first.pk, actor=supervisor)
    alert_resolve(alert_id=third.pk, actor=supervisor)
    assert [a.pk for a in alert_list_firing()] == [second.pk, first.pk]
    assert [a.pk for a in alert_list_firing(limit=1)] == [second.pk]


@pytest.mark.django_db
def test_metric_source_counts_alerts_by_state_and_severity(supervisor):
    alert = alert_raise(fingerprint="a", title="A", summary="", severity="critical").alert
    alert_raise(fingerprint="b", title="B", summary="", severity="warning")
    alert_acknowledge(alert_id=alert.pk, actor=supervisor)
    text = metrics_render().decode()
    assert 'support_alerts{severity="critical",state="acknowledged"} 1.0' in text
    assert 'support_alerts{severity="warning",state="firing"} 1.0' in text
    assert 'support_alerts{severity="critical",state="firing"} 0.0' in text
    assert 'support_metrics_source_up{source="alerts"} 1.0' in text


@pytest.mark.django_db
def test_the_alert_page_shows_the_rules_recent_values(feed, supervisor, client):
    _rule()
    now = timezone.now()
    for minute, value in enumerate([3, 11]):
        feed.set(test_depth=value)
        alert_rules_evaluate(now=now + timedelta(minutes=minute))
    client.force_login(supervisor)
    body = client.get(f"/alerts/{Alert.objects.get().pk}/").content.decode()
    assert "Recent evaluations" in body
    # a count reads as one ("11"; it read "11.0000"), a rate keeps its decimals
    assert "<dd>11</dd>" in body
    assert "<td>3</td>" in body
    assert "11.0000" not in body


@pytest.mark.django_db
def test_every_step_of_an_alert_tells_the_open_dashboards(supervisor):
    """Rule alerts as well as SLA ones refresh a supervisor's dashboard live: each step is
    an ``alert.changed`` event with no ticket (so only supervisors' sockets get it)."""
    import alerts.dashboard_widgets  # noqa: F401 - registers the widget
    from dashboard.widgets import widget_get
    from support.models import OutboxEvent

    alert = alert_raise(fingerprint="x", title="X", summary="", severity="warning").alert
    alert_raise(fingerprint="x", title="X", summary="", severity="critical")  # escalated
    alert_acknowledge(alert_id=alert.pk, actor=supervisor)
    alert_resolve(alert_id=alert.pk, actor=supervisor)
    events = OutboxEvent.objects.filter(event_type="alert.changed").order_by("pk")
    assert [(e.payload["action"], e.payload["state"], e.payload["severity"]) for e in events] == [
        ("fired", "firing", "warning"),
        ("escalated", "firing", "critical"),
        ("acknowledged", "acknowledged", "critical"),
        ("resolved", "resolved", "critical"),
    ]
    assert all("ticket_id" not in e.payload for e in events)
    widget = widget_get("alerts")
    assert widget is not None
    assert "alert." in widget.live_events


@pytest.mark.django_db(transaction=True)
def test_alert_events_reach_supervisors_sockets_and_no_agents(supervisor, agent):
    from asgiref.sync import async_to_sync

    from tickets.consumers import WorkbenchConsumer
    from tickets.tests.ws import WebsocketCommunicator

    async def listen(user) -> WebsocketCommunicator:
        communicator = WebsocketCommunicator(WorkbenchConsumer.as_asgi(), "/ws/workbench/")
        communicator.scope["user"] = user
        connected, _ = await communicator.connect()
        assert connected
        assert await communicator.receive_json_from() == {"type": "ready"}
        return communicator

    async def scenario() -> tuple[list[str], list[str]]:
        from channels.db import database_sync_to_async

        boss, worker = await listen(supervisor), await listen(agent)
        await database_sync_to_async(alert_raise)(
            fingerprint="y", title="Y", summary="", severity="critical"
        )
        seen = []
        for communicator in (boss, worker):
            got = []
            while not await communicator.receive_nothing(timeout=0.3, interval=0.02):
                got.append((await communicator.receive_json_from())["event"]["event_type"])
            await communicator.disconnect()
            seen.append(got)
        return seen[0], seen[1]

    boss_saw, agent_saw = async_to_sync(scenario)()
    assert "alert.changed" in boss_saw
    assert "alert.changed" not in agent_saw


@pytest.mark.django_db
@pytest.mark.parametrize("change", ["disabled", "deleted"])
def test_the_alert_of_a_rule_disabled_or_deleted_while_firing_resolves(feed, change):
    """Disabled rules are not evaluated and a deleted one leaves ``rule=None``: the open
    alert must not stay firing for ever (nor its PagerDuty incident open)."""
    from alerts.models import AlertTarget, TargetKind
    from support.delivery.models import Delivery

    AlertTarget.objects.create(name="mail", kind=TargetKind.EMAIL, severities=["warning"])
    rule = _rule()
    now = timezone.now()
    feed.set(test_depth=11)
    assert alert_rules_evaluate(now=now).fired == [rule.pk]
    if change == "disabled":
        AlertRule.objects.filter(pk=rule.pk).update(enabled=False)
    else:
        rule.delete()

    report = alert_rules_evaluate(now=now + timedelta(minutes=1))

    alert = Alert.objects.get()
    assert alert.state == AlertState.RESOLVED
    assert (report.retired, report.resolved) == ([alert.pk], [])
    assert alert.resolved_by is None
    assert [e.note for e in alert.history.all()][-1] == f"The rule was {change}."
    messages = Delivery.objects.order_by("pk").values_list("payload__message__action", flat=True)
    assert list(messages) == ["trigger", "resolve"]
    # Evaluating again changes nothing.
    assert alert_rules_evaluate(now=now + timedelta(minutes=2)).retired == []
    assert Delivery.objects.count() == 2


@pytest.mark.django_db
def test_a_disabled_rule_without_auto_resolve_leaves_its_alert_to_a_person(feed):
    rule = _rule(auto_resolve=False)
    now = timezone.now()
    feed.set(test_depth=11)
    alert_rules_evaluate(now=now)
    AlertRule.objects.filter(pk=rule.pk).update(enabled=False)
    assert alert_rules_evaluate(now=now + timedelta(minutes=1)).retired == []
    assert Alert.objects.get().state == AlertState.FIRING


# --- one rule's failure does not stop the evaluation pass (review: "alert resolve race") -


@pytest.mark.django_db(transaction=True)
def test_an_alert_a_supervisor_resolves_while_it_is_evaluated_stops_nothing(
    feed, supervisor, monkeypatch
):
    """The evaluation reads the open alert unlocked; a supervisor's resolve, on its own
    connection, commits before the evaluation locks it. Before, AlertStateError escaped
    the pass: the rule's datapoint rolled back, and the rules after it, the retirement,
    the SLA resolution and the catch-up did not run. Now the rule's evaluation is stored,
    the alert is the supervisor's resolve (once), and the pass goes on."""
    import threading

    from django.db import connections

    from alerts import services as alert_services
    from alerts.models import AlertAction

    # evaluated in name order: the raced rule, then another; a disabled rule's open
    # alert is for the retirement step after them
    raced = _rule(name="a raced", auto_resolve=True)
    after = _rule(name="b after", metric="test_other", auto_resolve=True)
    disabled = _rule(name="c disabled", metric="test_third", auto_resolve=True)
    AlertRule.objects.filter(pk__in=[raced.pk, after.pk]).update(enabled=True)
    AlertRule.objects.filter(pk=disabled.pk).update(enabled=False)
    alert, retired = (
        alert_raise(
            fingerprint=rule.fingerprint, title="t", summary="s", severity="warning", rule=rule
        ).alert
        for rule in (raced, disabled)
    )
    feed.set(test_depth=1, test_other=1)  # neither breaches: the raced alert would resolve
    real_get = alert_services.selectors.alert_open_get
    pressed: list[object] = []

    def read_then_supervisor_resolves(*, fingerprint: str) -> Alert | None:
        found = real_get(fingerprint=fingerprint)
        if found is not None and found.pk == alert.pk:

            def press() -> None:
                try:
                    alert_resolve(alert_id=alert.pk, actor=supervisor, note="done by hand")
                    pressed.append("resolved")
                except Exception as exc:
                    pressed.append(exc)
                finally:
                    connections.close_all()

            thread = threading.Thread(target=press)
            thread.start()
            thread.join(10)  # committed before the evaluation locks the alert
        return found

    monkeypatch.setattr(alert_services.selectors, "alert_open_get", read_then_supervisor_resolves)
    report = alert_rules_evaluate()

    assert pressed == ["resolved"]
    assert (report.evaluated, report.resolved, report.failed) == (2, [], [])
    assert report.retired == [retired.pk]  # the step after the rules ran
    assert RuleEvaluation.objects.filter(rule=raced).count() == 1
    assert RuleEvaluation.objects.filter(rule=after).count() == 1
    alert.refresh_from_db()
    assert (alert.state, alert.resolved_by) == (AlertState.RESOLVED, supervisor)
    resolves = alert.history.filter(action=AlertAction.RESOLVED)
    assert list(resolves.values_list("note", flat=True)) == ["done by hand"]


@pytest.mark.django_db
def test_a_rule_whose_evaluation_raises_is_logged_and_the_pass_goes_on(feed, monkeypatch, caplog):
    """A bug in one rule's evaluation (here: its value cannot be computed) is logged with
    the rule's id and traceback and listed in ``report.failed``; the other rules and the
    steps after them run. Before, the exception ended the pass."""
    import logging

    from alerts import services as alert_services

    broken = _rule(name="a broken")
    fine = _rule(name="b fine", metric="test_other")
    AlertRule.objects.filter(pk=broken.pk).update(enabled=True)
    feed.set(test_depth=11, test_other=11)
    real_value = alert_services.rule_value

    def value(rule: AlertRule, families: Any, *, now: Any) -> Any:
        if rule.pk == broken.pk:
            raise ZeroDivisionError("a bug")
        return real_value(rule, families, now=now)

    monkeypatch.setattr(alert_services, "rule_value", value)
    with caplog.at_level(logging.ERROR, logger="alerts.services"):
        report = alert_rules_evaluate()

    assert (report.failed, report.fired, report.evaluated) == ([broken.pk], [fine.pk], 1)
    assert not RuleEvaluation.objects.filter(rule=broken).exists()
    [record] = [r for r in caplog.records if r.name == "alerts.services"]
    assert record.getMessage() == f"Alarm rule {broken.pk} (a broken) evaluation failed"
    assert record.exc_info is not None
    assert record.exc_info[0] is ZeroDivisionError


@pytest.mark.django_db
def test_the_database_gone_still_ends_the_pass(feed, monkeypatch):
    """Not every failure is one rule's: with the database away every rule would fail, so
    the pass stops (the next beat runs again), as it did."""
    from django.db import OperationalError

    from alerts import services as alert_services

    _rule()
    feed.set(test_depth=11)

    def gone(*args: object, **kwargs: object) -> object:
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(alert_services, "rule_value", gone)
    with pytest.raises(OperationalError):
        alert_rules_evaluate()
