"""A satisfaction survey that could not be sent is a customer-context dead letter.

Before 2026-12-07 the survey sweep tried a failing resolution again every run and, once
the resolution was older than its 24-hour window, left it with only the last run's log
line: nobody learnt that the survey was never sent, and nothing asked again. Now each
failed try (the task's, then each sweep run's) is recorded (``ContextDeadLetter``, kind
``csat_survey``), the run that sends it (or finds it skipped by the rules) removes it, and
what the sweep leaves behind waits for a supervisor's re-drive or discard."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
import responses
from django.utils import timezone

from channels_app.services.csat_survey import SURVEY_TASK, csat_surveys_sweep
from channels_app.tasks import csat_survey_send_task
from channels_app.tests.conftest import make_account
from channels_app.tests.test_csat_survey import WA_URL, resolve_task_lost, surveys
from support.events import event_time
from tickets.context.models import ContextDeadLetter
from tickets.context.services import context_dead_letters_redrive
from tickets.models import Ticket

pytestmark = pytest.mark.django_db


@pytest.fixture
def wa_ticket(post_fixture: Any) -> Ticket:
    post_fixture(make_account("whatsapp"), "text_message")
    return Ticket.objects.get()


def _letters() -> list[tuple[Any, ...]]:
    return list(
        ContextDeadLetter.objects.order_by("id").values_list(
            "kind", "task", "args", "customer_id", "ticket_id", "failures", "error"
        )
    )


def test_the_survey_task_name_is_the_one_dead_letters_name() -> None:
    assert csat_survey_send_task.name == SURVEY_TASK


@responses.activate
def test_a_survey_the_sweep_cannot_send_is_kept_past_its_window_and_re_driven(
    wa_ticket: Ticket,
    agent: Any,
    supervisor: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    ticket = wa_ticket
    resolve_task_lost(ticket, agent, django_capture_on_commit_callbacks, minutes_ago=15)
    assert ticket.resolved_at is not None
    key = [ticket.pk, event_time(ticket.resolved_at)]
    broken = ValueError("a bug")
    with mock.patch("channels_app.services.csat_survey.csat_survey_send", side_effect=broken):
        assert csat_surveys_sweep() == 1
        assert csat_surveys_sweep() == 1  # tried again at the next run
    expected = ("csat_survey", SURVEY_TASK, key, ticket.customer_id, ticket.pk)
    assert _letters() == [(*expected, 2, "ValueError: a bug")]
    # a day later the sweep leaves it (too late to ask by itself): the dead letter stays
    with mock.patch(
        "channels_app.services.csat_survey.timezone.now",
        return_value=timezone.now() + timedelta(days=2),
    ):
        assert csat_surveys_sweep() == 0
    assert _letters() == [(*expected, 2, "ValueError: a bug")]
    assert surveys(ticket) == []
    # a supervisor re-drives it: the survey is written and sent; the dead letter goes
    responses.post(WA_URL, json={"messages": [{"id": "wamid.REDRIVEN-1"}]})
    (letter,) = ContextDeadLetter.objects.all()
    with django_capture_on_commit_callbacks(execute=True):
        assert context_dead_letters_redrive(ids=[letter.pk], actor=supervisor) == 1
    (survey,) = surveys(ticket)
    assert survey.channel_message_id == "wamid.REDRIVEN-1"
    assert _letters() == []


def test_the_sweep_removes_the_dead_letter_of_the_survey_it_sends(
    wa_ticket: Ticket, agent: Any, django_capture_on_commit_callbacks: Any
) -> None:
    ticket = wa_ticket
    resolve_task_lost(ticket, agent, django_capture_on_commit_callbacks, minutes_ago=15)
    assert ticket.resolved_at is not None
    resolved_at = event_time(ticket.resolved_at)
    # the task gave up (an error it does not retry): recorded, and raised for the worker
    with (
        mock.patch("channels_app.tasks.csat_survey_send", side_effect=ValueError("a bug")),
        pytest.raises(ValueError, match="a bug"),
    ):
        csat_survey_send_task.delay(ticket.pk, resolved_at)
    assert _letters() == [
        (
            "csat_survey",
            SURVEY_TASK,
            [ticket.pk, resolved_at],
            ticket.customer_id,
            ticket.pk,
            1,
            "ValueError: a bug",
        )
    ]
    # ten minutes later the sweep tries it again and it goes through: nothing is left
    with (
        responses.RequestsMock() as http,
        django_capture_on_commit_callbacks(execute=True),
    ):
        http.post(WA_URL, json={"messages": [{"id": "wamid.SWEPT-DL"}]})
        assert csat_surveys_sweep() == 1
    assert len(surveys(ticket)) == 1
    assert _letters() == []
