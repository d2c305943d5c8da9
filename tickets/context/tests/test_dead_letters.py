"""Customer-context work that gives up is a dead letter a supervisor sees and re-drives.

The tasks that record a message, a reopening, a CSAT answer or an analysed call in a
customer's history retry transient errors 5 times; before 2026-12-07, when those ran out
(or on an error they do not retry) the worker logged a line and the entry was missing for
good, with nothing counting it or asking again. Now the give-up is a
``ContextDeadLetter`` (the task and its arguments, whose, why), counted by
``support_context_dead_letters{kind}``, re-driven or discarded from the admin (audited).
"""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from django.test import Client
from kombu.exceptions import OperationalError as KombuOperationalError

from calls.models import Call
from calls.tasks import call_interaction_record_task
from support.errors import PermanentError, RetryableError
from support.metrics import metrics_collect
from support.models import AuditLog
from tickets import services as core
from tickets.context import services
from tickets.context.models import ContextDeadLetter, Interaction
from tickets.context.tasks import (
    interaction_record_for_csat_task,
    interaction_record_for_message_task,
    interaction_record_for_messages_task,
    interaction_record_reopen_task,
)
from tickets.models import Customer, Message, Ticket

pytestmark = pytest.mark.django_db

URL = "/admin/tickets/contextdeadletter/"
MESSAGE_TASK = "tickets.context.tasks.interaction_record_for_message_task"


@pytest.fixture(autouse=True)
def _retries_run_eagerly() -> Any:
    """Eager tasks run their retries at once, in turn, as a worker would after each wait
    (an eager task that propagates its errors raises ``Retry`` at the first instead); a
    task's result then holds its final error, which ``get()`` raises."""
    from support.celery import app

    app.conf.task_eager_propagates = False
    yield
    app.conf.task_eager_propagates = True


@pytest.fixture
def ticket(customer: Customer) -> Ticket:
    return core.ticket_create(customer=customer, subject="Late parcel", body="Where is it?")


@pytest.fixture
def message(ticket: Ticket) -> Message:
    return ticket.messages.get()


def _letters() -> list[tuple[Any, ...]]:
    return list(
        ContextDeadLetter.objects.order_by("id").values_list(
            "kind", "task", "args", "customer_id", "ticket_id", "failures", "error"
        )
    )


def test_a_message_whose_retries_run_out_is_a_dead_letter(
    message: Message, ticket: Ticket, customer: Customer
) -> None:
    throttled = RetryableError("Comprehend throttled")
    with (
        mock.patch.object(
            services, "interaction_record_for_message", side_effect=throttled
        ) as record,
        pytest.raises(RetryableError),
    ):
        interaction_record_for_message_task.delay(message.pk).get()
    assert record.call_count == 9  # the first try and 8 retries
    assert _letters() == [
        (
            "interaction",
            MESSAGE_TASK,
            [message.pk],
            customer.pk,
            ticket.pk,
            1,
            "RetryableError: Comprehend throttled",
        )
    ]
    # the same work giving up again: one row, one more failure, the last error
    with (
        mock.patch.object(
            services, "interaction_record_for_message", side_effect=PermanentError("no")
        ),
        pytest.raises(PermanentError),
    ):
        interaction_record_for_message_task.delay(message.pk).get()
    ((*_, failures, error),) = _letters()
    assert (failures, error) == (2, "PermanentError: no")


def test_a_retry_that_succeeds_leaves_no_dead_letter(message: Message) -> None:
    real = services.interaction_record_for_message
    with mock.patch.object(
        services,
        "interaction_record_for_message",
        side_effect=[RetryableError("once"), real(message_id=message.pk)],
    ):
        assert interaction_record_for_message_task.delay(message.pk).get() is True
    assert _letters() == []


def test_a_batch_records_the_others_and_dead_letters_the_one_that_gave_up(
    customer: Customer,
) -> None:
    tickets = [core.ticket_create(customer=customer, subject=f"T{i}", body="Hi") for i in (1, 2)]
    first, second = (t.messages.get() for t in tickets)
    Interaction.objects.all().delete()
    real = services.interaction_record_for_message

    def record(*, message_id: int) -> bool:
        if message_id == first.pk:
            raise PermanentError("the analyser refused the text")
        return real(message_id=message_id)

    with (
        mock.patch.object(services, "interaction_record_for_message", side_effect=record),
        pytest.raises(PermanentError),
    ):
        interaction_record_for_messages_task.delay([first.pk, second.pk]).get()
    assert list(Interaction.objects.values_list("source_key", flat=True)) == [
        f"message:{second.pk}"
    ]
    # named by the one-message task, which a re-drive queues
    assert _letters() == [
        (
            "interaction",
            MESSAGE_TASK,
            [first.pk],
            customer.pk,
            tickets[0].pk,
            1,
            "PermanentError: the analyser refused the text",
        )
    ]


def test_reopen_csat_and_call_tasks_record_their_give_ups(
    ticket: Ticket, customer: Customer
) -> None:
    call = Call.objects.create(contact_id="c-dl-1", customer=customer)
    boom = PermanentError("store refused")
    with (
        mock.patch.object(services, "interaction_record_reopen", side_effect=boom),
        mock.patch.object(services, "interaction_record_for_csat", side_effect=boom),
        mock.patch("calls.tasks.services.call_interaction_record", side_effect=boom),
    ):
        for task, args in (
            (interaction_record_reopen_task, (7, ticket.pk, "2026-12-07T10:00:00+00:00")),
            (interaction_record_for_csat_task, (ticket.pk, "2026-12-07T11:00:00+00:00")),
            (call_interaction_record_task, (call.pk,)),
        ):
            with pytest.raises(PermanentError):
                task.delay(*args).get()
    error = "PermanentError: store refused"
    assert _letters() == [
        (
            "interaction",
            "tickets.context.tasks.interaction_record_reopen_task",
            [7, ticket.pk, "2026-12-07T10:00:00+00:00"],
            customer.pk,
            ticket.pk,
            1,
            error,
        ),
        (
            "interaction",
            "tickets.context.tasks.interaction_record_for_csat_task",
            [ticket.pk, "2026-12-07T11:00:00+00:00"],
            customer.pk,
            ticket.pk,
            1,
            error,
        ),
        (
            "interaction",
            "calls.tasks.call_interaction_record_task",
            [call.pk],
            customer.pk,
            None,
            1,
            error,
        ),
    ]


def _gave_up(message: Message) -> ContextDeadLetter:
    with (
        mock.patch.object(
            services, "interaction_record_for_message", side_effect=PermanentError("down")
        ),
        pytest.raises(PermanentError),
    ):
        interaction_record_for_message_task.delay(message.pk).get()
    return ContextDeadLetter.objects.get()


def _action(user: Any, action: str, letter: ContextDeadLetter) -> str:
    client = Client()
    client.force_login(user)
    response = client.post(URL, {"action": action, "_selected_action": [letter.pk]}, follow=True)
    assert response.status_code == 200
    return response.content.decode()


def test_a_supervisor_sees_and_re_drives_a_dead_letter(
    message: Message, supervisor: Any, django_capture_on_commit_callbacks: Any
) -> None:
    Interaction.objects.all().delete()
    letter = _gave_up(message)
    client = Client()
    client.force_login(supervisor)
    page = client.get(URL).content.decode()
    assert "History entry not recorded" in page
    assert "PermanentError: down" in page
    with django_capture_on_commit_callbacks(execute=True):
        page = _action(supervisor, "redrive", letter)
    assert "Queued 1 dead letter(s) again." in page
    assert _letters() == []
    assert list(Interaction.objects.values_list("source_key", flat=True)) == [
        f"message:{message.pk}"
    ]
    audit = AuditLog.objects.get(action="context_dead_letter.redrive")
    assert (audit.actor, audit.object_id) == (supervisor, str(letter.pk))
    assert audit.details["task"] == MESSAGE_TASK
    assert audit.details["args"] == [message.pk]
    assert audit.details["error"] == "PermanentError: down"


def test_a_re_drive_that_fails_again_is_recorded_again(
    message: Message, supervisor: Any, django_capture_on_commit_callbacks: Any
) -> None:
    letter = _gave_up(message)
    with (
        mock.patch.object(
            services, "interaction_record_for_message", side_effect=PermanentError("still")
        ),
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert services.context_dead_letters_redrive(ids=[letter.pk], actor=supervisor) == 1
    ((*_, failures, error),) = _letters()
    assert (failures, error) == (1, "PermanentError: still")


def test_a_re_drive_the_broker_refuses_is_kept(
    message: Message, supervisor: Any, django_capture_on_commit_callbacks: Any
) -> None:
    letter = _gave_up(message)
    with (
        mock.patch.object(
            interaction_record_for_message_task,
            "apply_async",
            side_effect=KombuOperationalError("broker down"),
        ),
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert services.context_dead_letters_redrive(ids=[letter.pk], actor=supervisor) == 1
    ((*_, error),) = _letters()
    assert error == "re-drive not queued: OperationalError: broker down"


def test_an_agent_re_drives_and_discards_nothing(message: Message, agent: Any) -> None:
    letter = _gave_up(message)
    agent.is_staff = True
    agent.save()
    client = Client()
    client.force_login(agent)
    assert client.get(URL).status_code == 403
    assert ContextDeadLetter.objects.filter(pk=letter.pk).exists()


def test_a_supervisor_discards_a_dead_letter_audited(message: Message, supervisor: Any) -> None:
    letter = _gave_up(message)
    page = _action(supervisor, "discard", letter)
    assert "Discarded 1 dead letter(s)." in page
    assert _letters() == []
    audit = AuditLog.objects.get(action="context_dead_letter.discard")
    assert (audit.actor, audit.details["kind"]) == (supervisor, "interaction")


def test_the_gauge_counts_the_dead_letters_by_kind(message: Message) -> None:
    def gauge() -> dict[str, float]:
        (family,) = [f for f in metrics_collect() if f.name == "support_context_dead_letters"]
        return {s.labels["kind"]: s.value for s in family.samples}

    assert gauge() == {"interaction": 0, "csat_survey": 0}
    _gave_up(message)
    assert gauge() == {"interaction": 1, "csat_survey": 0}


def test_an_erasure_deletes_the_customer_s_dead_letters(
    message: Message, ticket: Ticket, customer: Customer, supervisor: Any
) -> None:
    """Re-driven after an erasure, such work would record a history entry of erased words
    or survey an erased person: it goes with the erasure; other customers' stays."""
    from tickets.context import privacy

    other = Customer.objects.create(name="Other Person", email="other@example.com")
    kept = services.context_dead_letter_record(
        kind="interaction", task=MESSAGE_TASK, args=[10**9], error="x", customer_id=other.pk
    )
    services.context_dead_letter_record(
        kind="interaction", task=MESSAGE_TASK, args=[message.pk], error="x", ticket_id=ticket.pk
    )
    services.context_dead_letter_record(
        kind="csat_survey",
        task="channels_app.tasks.csat_survey_send_task",
        args=[ticket.pk, "2026-12-07T10:00:00+00:00"],
        error="x",
        ticket_id=ticket.pk,
    )
    counts = privacy.customer_erase(customer=customer, actor=supervisor, via="test")
    assert counts["dead_letters_deleted"] == 2
    assert list(ContextDeadLetter.objects.values_list("pk", flat=True)) == [kept.pk]


def test_a_database_that_goes_away_is_waited_for_not_given_up(message: Message) -> None:
    """A failover is retried like a throttled provider: before, the first
    ``OperationalError`` gave the work up, and the dead letter could not be written with
    the database away, so the history entry was lost with a log line."""
    from django.db import OperationalError

    real = services.interaction_record_for_message
    calls: list[int] = []

    def flaky(*, message_id: int) -> bool:
        calls.append(message_id)
        if len(calls) <= 3:
            raise OperationalError("server closed the connection unexpectedly")
        return real(message_id=message_id)

    with mock.patch.object(services, "interaction_record_for_message", side_effect=flaky):
        assert interaction_record_for_message_task.delay(message.pk).get() is True
    assert len(calls) == 4
    assert _letters() == []
    assert Interaction.objects.filter(source_key=f"message:{message.pk}").exists()
