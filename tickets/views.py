"""Workbench pages (server-rendered, htmx for partial updates). Thin: each view parses the
request, calls one selector or service and renders."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlencode, urlsplit

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseForbidden,
    HttpResponseNotFound,
    JsonResponse,
    QueryDict,
)
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from support.auth.roles import is_agent, is_supervisor
from support.errors import ApplicationError, Conflict, Forbidden, InvalidInput, NotFound
from support.idempotency import KeyReused, idempotent_once, request_fingerprint
from support.models import OutboxEvent
from support.parsing import content_length, parse_id
from tickets import selectors, services
from tickets.context import wiring as context_wiring
from tickets.models import (
    AGENT_OPENED_CHANNELS,
    MESSAGE_BODY_MAX_CHARS,
    CannedResponse,
    Channel,
    MessageKind,
    Priority,
    Team,
    Ticket,
    TicketStatus,
)
from tickets.panels import panels_for
from tickets.reply_rules import reply_box_for, size_words

View = Callable[..., HttpResponse]
#: htmx answers that are a reason, not HTML: workbench.js shows them by the form that sent
#: the request (and nothing is swapped in).
PLAIN_TEXT = "text/plain; charset=utf-8"
PANEL_SLOTS = (
    ("sidebar", "Customer context"),
    ("routing", "Routing"),
    ("knowledge", "Knowledge base"),
)


def _forbidden(request: HttpRequest, message: str) -> HttpResponse:
    """403: the message alone for htmx (the workbench shows it in place), the site's
    "Not allowed" page (templates/403.html) for a page."""
    if getattr(request, "htmx", False):
        return HttpResponseForbidden(message, content_type=PLAIN_TEXT)
    raise PermissionDenied(message)


def _back_or_inbox(request: HttpRequest) -> str:
    """Back where the form was (the Referer) when that is a page of this site; the inbox
    otherwise (a Referer naming another site would make this an open redirect)."""
    referer = request.META.get("HTTP_REFERER", "")
    if referer and url_has_allowed_host_and_scheme(
        referer, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return referer
    return reverse("inbox")


def agent_required(view: View) -> View:
    """Signed-in agents only; application errors become proper HTTP answers."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not is_agent(request.user):
            return _forbidden(request, "The workbench is for agents and supervisors.")
        try:
            return view(request, *args, **kwargs)
        except Forbidden as exc:
            return _forbidden(request, exc.message)
        except NotFound as exc:
            if getattr(request, "htmx", False):
                return HttpResponseNotFound(exc.message, content_type=PLAIN_TEXT)
            return render(request, "tickets/not_found.html", {"message": exc.message}, status=404)
        except ApplicationError as exc:
            if getattr(request, "htmx", False):
                # plain text: the message may quote what was sent
                return HttpResponseBadRequest(exc.message, content_type=PLAIN_TEXT)
            messages.error(request, exc.message)
            return redirect(_back_or_inbox(request))

    return wrapper


def _last_event_id() -> int:
    last = OutboxEvent.objects.order_by("-id").values_list("id", flat=True).first()
    return last or 0


def _choices() -> dict[str, Any]:
    return {
        "statuses": TicketStatus.choices,
        "priorities": Priority.choices,
        "channels": Channel.choices,
    }


def _page_number(raw: str | None) -> int:
    """The inbox page asked for (1 when absent); the selector checks its range."""
    if not raw:
        return 1
    page = parse_id(raw)
    if page is None:
        raise InvalidInput(selectors.INBOX_PAGE_ERROR, details={"page": ["Not a number."]})
    return page


class SignInView(auth_views.LoginView):
    """Django's sign-in page; "back to the start page" (``/`` or nothing) becomes the
    landing page, so people land where their role starts (see :func:`landing`)."""

    template_name = "registration/login.html"

    def get_success_url(self) -> str:
        url = super().get_success_url()
        return reverse("landing") if url in ("", "/", reverse("inbox")) else url


class SignOutView(auth_views.LogoutView):
    """Django's sign-out (a POST, as the navigation's button sends). A GET, from a typed or
    bookmarked /accounts/logout/, shows a page with that button (it was a blank 405).

    The user's live workbench sockets are told to re-check their sessions by every
    sign-out, this one or another (``support.auth.sessions.signed_out_announce``)."""

    http_method_names = ["get", "post", "options"]

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return render(request, "registration/logout_confirm.html")


@require_GET
@agent_required
def landing(request: HttpRequest) -> HttpResponse:
    """Where sign-in leads: supervisors to the dashboard; an agent to "Mine", or to
    "Unassigned" when nothing is assigned to them. ``/`` itself stays the inbox."""
    if is_supervisor(request.user):
        return redirect("dashboard")
    if selectors.ticket_assigned_open_exists(user=request.user):
        return redirect(f"{reverse('inbox')}?view=mine")
    return redirect(f"{reverse('inbox')}?view=unassigned")


@require_GET
@agent_required
def inbox(request: HttpRequest) -> HttpResponse:
    context = _inbox_context(request, request.GET)
    if getattr(request, "htmx", False) and request.headers.get("HX-Target") == "inbox-list":
        return render(request, "tickets/_inbox_list.html", context)
    return render(request, "tickets/inbox.html", {**context, **_inbox_page_extras(request)})


def _inbox_context(request: HttpRequest, params: QueryDict) -> dict[str, Any]:
    """The inbox list as ``params`` (the page's query) ask for it."""
    view = params.get("view") or "mine"
    sort = params.get("sort") or "newest"
    filters: dict[str, str] = {}
    for key in ("status", "priority", "channel", "team", "assignee", "tag"):
        values = [v for v in params.getlist(key) if v]
        if values:
            # a repeated status, priority or channel adds up like a comma list, as in the
            # API (the last one alone used to count)
            filters[key] = ",".join(values) if key in selectors.CHOICE_FILTERS else values[-1]
    result = selectors.inbox_page(
        user=request.user,
        view=view,
        filters=filters,
        search=params.get("q", ""),
        sort=sort,
        page=_page_number(params.get("page")),
    )
    base = {k: v for k, v in params.items() if k != "page" and v}
    return {
        "result": result,
        "filters": filters,
        "views": selectors.INBOX_VIEWS,
        "sorts": selectors.INBOX_SORTS,
        "query_base": urlencode(base),
        "is_supervisor": is_supervisor(request.user),
        **_choices(),
    }


def _inbox_page_extras(request: HttpRequest) -> dict[str, Any]:
    """What the whole inbox page adds to its list: the filters' and bulk form's choices."""
    return {
        "teams": list(Team.objects.order_by("name")),
        "agents": _agents(),
        "tags": selectors.tag_list(user=request.user),
        "last_event_id": _last_event_id(),
    }


def _agents() -> list[Any]:
    return list(
        get_user_model()
        .objects.filter(is_active=True, groups__name__in=["Agents", "Supervisors"])
        .distinct()
        .order_by("username")
    )


def _ticket_context(
    request: HttpRequest, ticket: Ticket, *, controls_sent: QueryDict | None = None
) -> dict[str, Any]:
    timeline = selectors.ticket_timeline(ticket=ticket, user=request.user)
    panels = []
    known = {slot for slot, _ in PANEL_SLOTS}
    extra_slots = sorted({p.slot for p in panels_for(None)} - known)
    for slot, title in [*PANEL_SLOTS, *((s, s.replace("_", " ").title()) for s in extra_slots)]:
        registered = []
        for panel in panels_for(slot):
            extra = panel.context(request, ticket)
            if extra is not None:
                # The panel's keys are top-level template variables (also under `panel`).
                html = render_to_string(
                    panel.template,
                    {"ticket": ticket, **extra, "panel": extra},
                    request=request,
                )
                registered.append({"panel": panel, "context": extra, "html": html})
        panels.append({"slot": slot, "title": title, "panels": registered})
    context: dict[str, Any] = {
        "ticket": ticket,
        "timeline": timeline,
        "tags": [t.name for t in ticket.tags.all()],
        "allowed_statuses": sorted(services.ticket_allowed_statuses(ticket)),
        "identities": selectors.customer_identities(customer_id=ticket.customer_id),
        "other_tickets": selectors.customer_other_tickets(ticket=ticket, user=request.user),
        "canned": selectors.canned_response_list(user=request.user),
        "teams": list(Team.objects.order_by("name")),
        "agents": _agents(),
        "panel_slots": panels,
        "is_supervisor": is_supervisor(request.user),
        # "No team" is a supervisor's choice (services.team_change_allowed); an agent's
        # select shows it only as the value of a ticket that has no team yet
        "no_team_offered": services.team_change_allowed(
            actor=request.user, current_team_id=ticket.team_id, team_id=None
        ),
        "last_event_id": _last_event_id(),
        # what a public reply may carry on its channel (tickets.reply_rules)
        "reply_box": reply_box_for(ticket),
        "reply_files_max": size_words(services.message_files_max_bytes()),
        "reply_files_max_bytes": services.message_files_max_bytes(),
        # the composer's key: a send whose answer was lost, sent again, is not a second
        # reply (ticket_message; workbench.js draws a new one after each send)
        "composer_key": secrets.token_hex(16),
        **_choices(),
    }
    context["controls"] = _controls_values(request, ticket, context, controls_sent)
    return context


CONTROL_FIELDS = ("status", "priority", "team", "assignee", "tags")


def _controls_values(
    request: HttpRequest, ticket: Ticket, context: dict[str, Any], sent: QueryDict | None = None
) -> dict[str, Any]:
    """The values the ticket controls show (each as its form sends it): the ticket's own;
    with ``sent`` (a change refused without htmx), those the agent sent instead, where the
    form offers them. A value it does not offer (a team deleted since, someone an agent may
    not choose) shows the ticket's own: a select drawn with none chosen would show, and
    send again, its first option ("Nobody", "No team")."""
    values = {
        "status": ticket.status,
        "priority": ticket.priority,
        "team": str(ticket.team_id or ""),
        "assignee": str(ticket.assignee_id or "none"),
        "tags": ", ".join(context["tags"]),
    }
    if sent is None:
        return values
    user = request.user
    offered = {
        "status": {ticket.status, *context["allowed_statuses"]},
        "priority": set(Priority.values),
        # "No team" for supervisors, or the ticket's own when it has none
        # (services.team_change_allowed)
        "team": {
            *([""] if context["no_team_offered"] else []),
            *(str(t.pk) for t in context["teams"]),
        },
        "assignee": {
            "none",
            *(
                str(a.pk)
                for a in context["agents"]
                if context["is_supervisor"] or a.pk in (user.pk, ticket.assignee_id)
            ),
        },
    }
    for key in CONTROL_FIELDS:
        value = sent.get(key)
        if value is None or (key == "status" and not value):  # not sent: no change
            continue
        if key == "assignee":
            value = {"me": str(user.pk), "": "none"}.get(value, value)
        elif key == "team" and value == "none":
            value = ""
        if key == "tags" or value in offered[key]:
            values[key] = value
    return values


@require_GET
@agent_required
def ticket_detail(request: HttpRequest, ref: str) -> HttpResponse:
    ticket = selectors.ticket_get_visible(ref, user=request.user)
    if ticket.merged_into_id is not None:
        if selectors.ticket_merge_target_visible(ticket, user=request.user):
            messages.info(request, f"{ticket.number} was merged into this ticket.")
            return redirect("ticket", ref=format_ref(ticket.merged_into_id))
        # a target this user may not see: the closed ticket itself, not a 404 page, and
        # nowhere its target's number (the timeline and the API say the same)
        messages.info(request, f"{ticket.number} was merged into a ticket you cannot see.")
    services.ticket_mark_read(ticket=ticket, user=request.user)
    return render(request, "tickets/ticket.html", _ticket_context(request, ticket))


#: Form field → the API's field it is checked as (``TicketCreateInputSerializer``).
_NEW_TICKET_FIELDS = {
    "customer_email": "customer.email",
    "customer_name": "customer.name",
    "customer_phone": "customer.phone",
    "subject": "subject",
    "description": "description",
    "channel": "channel",
    "priority": "priority",
    "team": "team_id",
    "tags": "tags",
}


def _new_ticket_data(post: QueryDict) -> dict[str, Any]:
    """The form as the API's create takes it (one set of checks for both)."""
    data: dict[str, Any] = {
        "subject": post.get("subject", ""),
        "description": post.get("description", ""),
        "channel": post.get("channel", ""),
        "priority": post.get("priority", ""),
        "customer": {
            "email": post.get("customer_email", "").strip(),
            "name": post.get("customer_name", "").strip(),
            "phone": post.get("customer_phone", "").strip(),
        },
        "tags": [t.strip() for t in post.get("tags", "").split(",") if t.strip()],
    }
    if post.get("team", ""):
        data["team_id"] = post["team"]
    return data


def _field_errors(errors: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """The serializer's errors by dotted field name, one line each."""
    flat: dict[str, str] = {}
    for name, value in errors.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict):
            flat.update(_field_errors(value, f"{key}."))
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            flat[key] = " ".join(str(v) for item in value for v in item.values())
        else:
            items = value if isinstance(value, list) else [value]
            flat[key] = " ".join(str(v) for v in items)
    return flat


@agent_required
def ticket_new(request: HttpRequest) -> HttpResponse:
    """An agent opens a ticket (a phone call, a visit): the customer by e-mail address,
    found or created as the API's create does, with the same checks and the same audit
    of a customer the agent could not see (``services.ticket_open``); the ticket page
    next. ``?customer=<id>`` fills in a customer the agent may see."""
    if request.method not in ("GET", "POST"):
        return HttpResponse(status=405, headers={"Allow": "GET, POST"})
    values: dict[str, str] = {"channel": Channel.PHONE.value, "priority": Priority.NORMAL.value}
    errors: dict[str, str] = {}
    status = 200
    if request.method == "GET" and request.GET.get("customer"):
        customer = selectors.customer_get_visible(request.GET["customer"], user=request.user)
        values.update(
            customer_email=customer.email,
            customer_name=customer.name,
            customer_phone=customer.phone,
        )
    if request.method == "POST":
        from tickets.api.serializers import TicketCreateInputSerializer

        values = {name: request.POST.get(name, "") for name in (*_NEW_TICKET_FIELDS, "take")}
        serializer = TicketCreateInputSerializer(data=_new_ticket_data(request.POST))
        own = _new_ticket_problems(values)  # what this page takes beyond the API's checks
        if own:
            errors = own
        elif serializer.is_valid():
            try:
                with transaction.atomic():
                    ticket = services.ticket_open(
                        actor=request.user, data=serializer.validated_data
                    )
                    if request.POST.get("take"):
                        services.ticket_assign(
                            ticket=ticket, assignee=request.user, actor=request.user
                        )
            except ApplicationError as exc:  # an unknown team, a tag too long…: said by field
                errors = {_form_field(name): exc.message for name in exc.details} or {
                    "": exc.message
                }
            else:
                messages.success(request, f"{ticket.number} opened.")
                return redirect("ticket", ref=ticket.number)
        else:
            errors = {_form_field(k): v for k, v in _field_errors(serializer.errors).items()}
            if isinstance(serializer.errors.get("customer"), list):  # no address at all:
                errors["customer_email"] = (
                    "Give the customer's e-mail address."  # not the API's words
                )
        status = 400
    return render(
        request,
        "tickets/new.html",
        {
            "values": values,
            "errors": errors,
            "channels": AGENT_OPENED_CHANNELS,
            "priorities": Priority.choices,
            "teams": Team.objects.order_by("name"),
        },
        status=status,
    )


def _new_ticket_problems(values: dict[str, str]) -> dict[str, str]:
    """The page's own limits: a channel it offers (no channel thread is opened by hand:
    a reply would go to whatever identity the customer has there), and what an agent may
    write in one message (as in the composer)."""
    problems = {}
    if values["channel"] not in dict(AGENT_OPENED_CHANNELS):
        problems["channel"] = "Choose one of the channels offered."
    if len(values["description"]) > MESSAGE_BODY_MAX_CHARS:
        problems["description"] = (
            f"At most {MESSAGE_BODY_MAX_CHARS} characters (this has {len(values['description'])})."
        )
    return problems


def _form_field(api_name: str) -> str:
    """The form's field for an error the API's checks named (the page's own message for
    one no field holds: ``""``)."""
    by_api = {api: form for form, api in _NEW_TICKET_FIELDS.items()}
    if api_name == "customer":
        return "customer_email"
    return by_api.get(api_name, by_api.get(api_name.split(".")[0], ""))


@require_POST
@agent_required
def customer_contact(request: HttpRequest, customer_id: str) -> HttpResponse:
    """The customer page's "Contact details" form: name, phone, e-mail address
    (``services.customer_contact_update``: who may, and what an agent may not). Back to
    the page the form was on, saying what changed or why not."""
    customer = selectors.customer_get_visible(customer_id, user=request.user)
    post = request.POST
    # The fields the person changed: one left as the form drew it (``was_<field>``) is
    # not sent, so it neither overwrites a change made since nor is checked again.
    sent = {
        f: post[f]
        for f in ("name", "phone", "email")
        if f in post and post[f] != post.get(f"was_{f}")
    }
    updated = services.customer_contact_update(
        customer=customer,
        actor=request.user,
        **sent,
        # what the form was drawn with: a field someone changed since is not overwritten
        expected={f: post[f"was_{f}"] for f in sent if f"was_{f}" in post},
    )
    if updated.updated_at != customer.updated_at:
        messages.success(request, f"{updated}'s details saved.")
    else:
        messages.info(request, "Nothing to change.")
    return redirect(_back_or_inbox(request))


@require_GET
@agent_required
def customer_list(request: HttpRequest) -> HttpResponse:
    """The customers the viewer may see, newest first, searched by name, address, phone
    number or the caller's own id (``q``), page by page
    (``tickets.selectors.customer_directory_page``). A bad search or page is the page
    again with the reason (400)."""
    search = request.GET.get("q", "")
    try:
        result = selectors.customer_directory_page(
            user=request.user, search=search, page=_page_number(request.GET.get("page"))
        )
    except InvalidInput as exc:
        context = {"result": None, "search": search[:200], "error": exc.message}
        return render(request, "tickets/customers.html", context, status=400)
    return render(request, "tickets/customers.html", {"result": result, "search": result.search})


@require_GET
@agent_required
def customer_detail(request: HttpRequest, customer_id: str) -> HttpResponse:
    """A customer's page: the profile (the ticket page's Customer card), the customer's
    tickets the viewer may see, page by page, and the customer-context panel. A customer
    the viewer may not see is "Not found", as an unknown id is
    (``tickets.selectors.customer_get_visible``)."""
    customer = selectors.customer_get_visible(customer_id, user=request.user)
    result = selectors.customer_ticket_page(
        customer_id=customer.pk, user=request.user, page=_page_number(request.GET.get("page"))
    )
    # the ticket page's customer-context panel, drawn by the same code (the ticket page's
    # panel is this, for the ticket's customer)
    context_panel = render_to_string(
        context_wiring.PANEL_TEMPLATE,
        context_wiring.customer_panel_context(request, customer),
        request=request,
    )
    return render(
        request,
        "tickets/customer.html",
        {
            "customer": customer,
            "identities": selectors.customer_identities(customer_id=customer.pk),
            "result": result,
            "context_panel": context_panel,
            # the details follow the customer into every ticket of theirs
            "contact_editable": selectors.customers_fully_visible_to(
                request.user, customer_ids=[customer.pk]
            ),
            "contact_routing_editable": is_supervisor(request.user),
            "erased": selectors.customer_is_erased(customer_id=customer.pk),
        },
    )


def _refused_on_page(request: HttpRequest, exc: ApplicationError) -> bool:
    """Does a refused form post get its page again (the values sent and the reason by the
    form), rather than the reason alone? Not for htmx, which gets the reason as plain text
    (:func:`agent_required`; workbench.js shows it by the form and leaves what was typed),
    and not for a ticket gone, which has no page."""
    return not getattr(request, "htmx", False) and not isinstance(exc, NotFound)


def _ticket_refused(
    request: HttpRequest,
    ticket: Ticket,
    exc: ApplicationError,
    form: str,
    sent: dict[str, Any] | None = None,
    *,
    controls_sent: QueryDict | None = None,
) -> HttpResponse:
    """A form of the ticket page refused without htmx (no JavaScript, or the merge form,
    which is a plain form post): the ticket page again, with the reason by that form
    (``form``: ``composer``, ``controls`` or ``merge``, as the template names them) and
    what was sent still in it; a redirect back, as these forms answered before, lost it.
    The ticket is read again (a refused change wrote nothing; one moved out of this user's
    view since is not shown: 404)."""
    ticket = selectors.ticket_get_visible(ticket.pk, user=request.user)
    context = _ticket_context(request, ticket, controls_sent=controls_sent)
    context[form] = {
        **context.get(form, {}),
        **(sent or {}),
        "error": exc.message,
        "invalid": sorted(exc.details),  # the fields the refusal names (aria-invalid)
    }
    return render(request, "tickets/ticket.html", context, status=exc.http_status)


def format_ref(pk: int) -> str:
    return Ticket(pk=pk).number


@require_GET
@agent_required
def ticket_timeline(request: HttpRequest, ref: str) -> HttpResponse:
    """The timeline and header of a ticket, refreshed live by the page."""
    ticket = selectors.ticket_get_visible(ref, user=request.user)
    if ticket.merged_into_id is not None and selectors.ticket_merge_target_visible(
        ticket, user=request.user
    ):
        response = HttpResponse(status=204)
        target = format_ref(ticket.merged_into_id)
        response["HX-Redirect"] = reverse("ticket", kwargs={"ref": target})
        return response
    services.ticket_mark_read(ticket=ticket, user=request.user)
    return render(
        request, "tickets/_ticket_live.html", {**_ticket_context(request, ticket), "oob": True}
    )


def _back_to_ticket(request: HttpRequest, ticket: Ticket) -> HttpResponse:
    """After a change on the ticket page: the page's live part again (htmx) or the page.
    A ticket the change moved out of this user's view (another team) is not shown again:
    the inbox, saying so (its page would answer 404 now)."""
    ticket = selectors.ticket_get(ticket.pk)
    if not selectors.ticket_visible_to(
        request.user, team_id=ticket.team_id, assignee_id=ticket.assignee_id
    ):
        messages.info(request, f"{ticket.number} is no longer in your view.")
        if getattr(request, "htmx", False):
            response = HttpResponse(status=204)
            response["HX-Redirect"] = reverse("inbox")
            return response
        return redirect("inbox")
    if getattr(request, "htmx", False):
        return render(
            request, "tickets/_ticket_live.html", {**_ticket_context(request, ticket), "oob": True}
        )
    return redirect("ticket", ref=ticket.number)


COMPOSER_OPERATION = "workbench.ticket_message"
COMPOSER_SENT_ALREADY = (
    "This form was sent already with another text: its first reply is on the ticket. "
    "Reload the page to write another."
)


def _once(
    request: HttpRequest, operation: str, create: Callable[[], tuple[int, None]], reused: str
) -> bool:
    """A workbench form's write, once per the form's ``submit_key`` (drawn with the page):
    the same form sent again (a double click, a send whose answer was lost) is not a
    second write (``support.idempotency``, the API's ``Idempotency-Key`` rules; kept as
    ``form:<key>``, the user's own like the API's). A form sent again with other values:
    ``Conflict`` saying ``reused``. Without a key (an old page), ``create`` alone. True
    when it was a repeat."""
    key = request.POST.get("submit_key", "")
    if not key:
        create()
        return False
    if not FORM_KEY.fullmatch(key):
        raise InvalidInput("submit_key: malformed.", details={"submit_key": ["Malformed."]})
    try:
        return idempotent_once(
            user=request.user,
            key=f"form:{key}",
            operation=operation,
            fingerprint=request_fingerprint(request, operation),
            create=create,
            replay=lambda _object_id: None,
        )[1]
    except KeyReused:
        raise Conflict(reused, details={"body": [reused]}) from None


#: a form's key as ticket pages draw it (``secrets.token_hex(16)``)
FORM_KEY = re.compile(r"[0-9a-f]{32}")


@require_POST
@agent_required
def ticket_message(request: HttpRequest, ref: str) -> HttpResponse:
    ticket = selectors.ticket_get_visible(ref, user=request.user)
    kind = request.POST.get("kind", MessageKind.PUBLIC)
    # A browser sends each line break of a form's text as CR LF (HTML's form encoding):
    # stored as "\n", as the API's and the channels' texts are, and counted once.
    body = request.POST.get("body", "").replace("\r\n", "\n")
    try:
        # the files' cap, on the declared length first (REQUEST_MAX_BYTES bounds what the
        # CSRF check has parsed already); refused files come back by the form, the text kept
        services.message_upload_length_check(content_length(request.META.get("CONTENT_LENGTH")))
        if kind not in (MessageKind.PUBLIC, MessageKind.INTERNAL_NOTE):
            raise InvalidInput(
                "kind must be public or internal_note.", details={"kind": ["Invalid."]}
            )
        if len(body) > MESSAGE_BODY_MAX_CHARS:  # the API's limit
            raise InvalidInput(
                f"body: at most {MESSAGE_BODY_MAX_CHARS} characters (this one has {len(body)}).",
                details={"body": ["Too long."]},
            )
        attachments = services.message_files_read(request.FILES.getlist("files"))

        def add() -> tuple[int, None]:
            message = services.message_add(
                ticket=ticket,
                body=body,
                kind=kind,
                author_user=request.user,
                attachments=attachments,
            )
            return message.pk, None

        if _once(request, COMPOSER_OPERATION, add, COMPOSER_SENT_ALREADY):
            messages.info(request, "This reply was sent already: it is on the ticket once.")
    except ApplicationError as exc:
        if not _refused_on_page(request, exc):
            raise
        # a page sent again has an empty file input (a browser never fills one in): say so
        # whenever files came with the refused reply, whatever the refusal was about
        files_sent = bool(request.FILES.getlist("files"))
        return _ticket_refused(
            request,
            ticket,
            exc,
            "composer",
            {"body": body, "kind": kind, "files_sent": files_sent},
        )
    return _back_to_ticket(request, ticket)


def _assignee_from(raw: str, request: HttpRequest, current_id: int | None) -> Any:
    """Parse an assignee field; agents may only take or release their own tickets.

    Who may assign is checked on the id before the user is looked up (as the API does): an
    agent naming anyone else gets the same 403 whether the id is a user or not."""
    if raw in ("", "none"):
        assignee_id = None
    elif raw == "me":
        assignee_id = request.user.pk
    else:
        # a form field's value, not a page: 400 saying so (was the "Not found" page)
        assignee_id = parse_id(raw)
        if assignee_id is None:
            raise InvalidInput(f"assignee: no user {raw!r}.", details={"assignee": ["Unknown."]})
    if not services.assignment_allowed(
        actor=request.user, current_assignee_id=current_id, assignee_id=assignee_id
    ):
        raise Forbidden("Only supervisors assign tickets to other people.")
    if assignee_id is None:
        return None
    if raw == "me":
        return request.user
    assignee = get_user_model().objects.filter(pk=assignee_id).first()
    if assignee is None:
        raise InvalidInput(f"assignee: no user {raw!r}.", details={"assignee": ["Unknown."]})
    return assignee


def _team_from(raw: str) -> Team | None:
    """Parse a team field: empty (or ``none``) is "No team"; anything else must be a team's
    id (a value that was neither used to take the ticket out of its team). Who may choose
    "No team" (supervisors, for a ticket in a team) is ``services.ticket_update``'s rule,
    applied to the locked row."""
    if raw in ("", "none"):
        return None
    team_id = parse_id(raw)
    if team_id is None:
        raise InvalidInput(
            "team must be a team id, or empty for no team.", details={"team": ["Not an id."]}
        )
    team = Team.objects.filter(pk=team_id).first()
    if team is None:  # deleted since the page was drawn (was the "Not found" page)
        raise InvalidInput(f"team: no team {team_id}.", details={"team": ["Unknown."]})
    return team


@require_POST
@agent_required
def ticket_update(request: HttpRequest, ref: str) -> HttpResponse:
    ticket = selectors.ticket_get_visible(ref, user=request.user)
    try:
        ticket = _ticket_update_apply(request, ticket)
    except ApplicationError as exc:
        if not _refused_on_page(request, exc):
            raise
        # the values sent in the controls (_controls_values), the reason at their top
        return _ticket_refused(request, ticket, exc, "controls", controls_sent=request.POST)
    return _back_to_ticket(request, ticket)


def _ticket_update_apply(request: HttpRequest, ticket: Ticket) -> Ticket:
    post = request.POST
    fields: dict[str, Any] = {}
    for key in ("status", "priority"):
        if post.get(key):
            fields[key] = post[key]
    if "team" in post:
        fields["team"] = _team_from(post["team"])
    if "tags" in post:
        fields["tags"] = [t for t in post["tags"].replace(";", ",").split(",") if t.strip()]
    # All or nothing: a refused status must not leave the assignment behind.
    with transaction.atomic():
        # the rules on the row as it is written (locked), not as first read: its
        # visibility (moved out of the agent's view meanwhile: not found) and its assignee
        ticket = selectors.ticket_get_visible(ticket.pk, user=request.user, for_update=True)
        if "assignee" in post:
            assignee = _assignee_from(post["assignee"], request, ticket.assignee_id)
            services.ticket_assign(ticket=ticket, assignee=assignee, actor=request.user)
        if fields:
            services.ticket_update(ticket=ticket, actor=request.user, **fields)
    return ticket


@require_POST
@agent_required
def ticket_merge(request: HttpRequest, ref: str) -> HttpResponse:
    source = selectors.ticket_get_visible(ref, user=request.user)
    into = request.POST.get("into", "").strip()
    confirm = request.POST.get("confirm_customer_merge") in ("1", "true", "on")
    try:
        target = _ticket_merge_apply(request, source, into, confirm=confirm)
    except ApplicationError as exc:
        if not _refused_on_page(request, exc):
            raise
        sent = {"into": request.POST.get("into", ""), "confirm": confirm}
        return _ticket_refused(request, source, exc, "merge", sent)
    messages.success(request, f"{source.number} merged into {target.number}.")
    url = reverse("ticket", kwargs={"ref": target.number})
    if getattr(request, "htmx", False):
        response = HttpResponse(status=204)
        response["HX-Redirect"] = url
        return response
    return redirect(url)


def _ticket_merge_apply(
    request: HttpRequest, source: Ticket, into: str, *, confirm: bool
) -> Ticket:
    if not into:
        raise InvalidInput(
            "Give the number of the ticket to merge into (e.g. T-000123).",
            details={"into": ["Empty."]},
        )
    try:
        target = selectors.ticket_get_visible(into, user=request.user)
    except NotFound:
        # a mistyped number in the form: said by the form, not the "Not found" page (the
        # same answer for a ticket this agent may not see: numbers do not leak)
        raise InvalidInput(
            f"No ticket {into!r} to merge into: check the number.",
            details={"into": ["Unknown."]},
        ) from None
    return services.ticket_merge(
        source=source, target=target, actor=request.user, confirm_customer_merge=confirm
    )


@require_GET
@agent_required
def canned_render(request: HttpRequest, ref: str, canned_id: int) -> HttpResponse:
    ticket = selectors.ticket_get_visible(ref, user=request.user)
    allowed = {c.pk for c in selectors.canned_response_list(user=request.user)}
    if canned_id not in allowed:
        raise NotFound(f"No canned response {canned_id}.")
    canned = CannedResponse.objects.get(pk=canned_id)
    text = services.canned_response_render(canned=canned, ticket=ticket, agent=request.user)
    return JsonResponse({"body": text})


BULK_ACTIONS = ("assign", "status", "tag", "team")


@require_POST
@agent_required
def inbox_bulk(request: HttpRequest) -> HttpResponse:
    """Apply one change to the selected tickets; each goes through the services."""
    try:
        note = _inbox_bulk_apply(request)
    except ApplicationError as exc:
        if not _refused_on_page(request, exc):
            raise
        return _bulk_refused(request, exc)
    messages.success(request, note)
    return redirect(_back_or_inbox(request))


def _inbox_bulk_apply(request: HttpRequest) -> str:
    action = request.POST.get("action", "")
    if action not in BULK_ACTIONS:
        raise InvalidInput(
            "action must be assign, status, tag or team.", details={"action": ["Invalid."]}
        )
    ids = {pk for pk in map(parse_id, request.POST.getlist("ids")) if pk is not None}
    if not ids:  # was "0 ticket(s) updated." as a success
        raise InvalidInput(
            "Select at least one ticket (the boxes on the left), then apply.",
            details={"ids": ["None selected."]},
        )
    value = _bulk_value(request.POST, action)
    team: Team | None = None
    # an unknown status was reported as "skipped (not allowed)", an empty tag as "updated"
    if action == "status":
        selectors.choices_check("status", [value])
    elif action == "tag":
        # the services' one check of a tag's name (too long is refused, naming it)
        names = services.tag_names_normalise([value])
        if not names:
            raise InvalidInput("tag: give a tag name.", details={"value": ["Empty."]})
        value = names[0]
    elif action == "team":
        team = _bulk_team_from(value, request)  # before any row is locked
    # All or nothing: a refused change (e.g. an agent assigning others) undoes the batch.
    with transaction.atomic():
        # The rows locked first (in id order) and every rule applied to them as they are
        # now: read unlocked, a ticket taken by someone else, closed or merged between the
        # read and the write was overwritten with what the stale read allowed.
        tickets = selectors.ticket_list_locked(ids, user=request.user)
        done, skipped = _bulk_apply(request, tickets, action, value, team)
    skipped += len(ids) - len(tickets)  # merged, out of view (or unknown) by now
    return f"{done} ticket(s) updated" + (
        f", {skipped} skipped (not allowed, merged or not in your view)." if skipped else "."
    )


def _bulk_team_from(raw: str, request: HttpRequest) -> Team | None:
    """The team a bulk move sends the tickets to: a team's id, or ``none`` (no team) for
    supervisors only. A ticket with no team is visible to every agent, so a batch of them
    taken out of their teams widens who sees them (and their customers) at one click;
    refused here before any row is locked (403), as ``ticket_update`` refuses it for one
    ticket (``services.team_change_allowed``). An empty value is refused, not read as "no
    team" (as the ticket's controls read it)."""
    if raw == "none":
        team = None
    elif (team_id := parse_id(raw)) is None:
        said = f"{raw!r} is not a team id" if raw else "choose the team to move the tickets to"
        raise InvalidInput(f"team: {said}.", details={"value": ["Not a team."]})
    elif (team := Team.objects.filter(pk=team_id).first()) is None:
        # deleted since the page was drawn, or a script's guess
        raise InvalidInput(f"team: no team {team_id}.", details={"value": ["Unknown."]})
    if team is None and not is_supervisor(request.user):
        raise Forbidden(
            "Only supervisors move tickets to no team in bulk (every agent would see them)."
        )
    return team


def _bulk_value(post: QueryDict, action: str) -> str:
    """The value for ``action``: its own field (``value_status``: the form has one per
    action, all sent without JavaScript), else ``value`` (one field, as workbench.js and
    scripts send it)."""
    own = f"value_{action}"
    return post.get(own, "") if own in post else post.get("value", "")


def _bulk_refused(request: HttpRequest, exc: ApplicationError) -> HttpResponse:
    """A bulk action refused without htmx (the bulk form is a plain form post): the inbox
    again, as the page that sent it showed it (the view, filters and page of its Referer,
    when that is this site's inbox), with the tickets still ticked, the action and value
    chosen and the reason in the form. A redirect back, as it answered before, lost them."""
    try:
        context = _inbox_context(request, _inbox_query_of_referer(request))
    except ApplicationError:  # a query the inbox refuses now (a page no longer there)
        context = _inbox_context(request, QueryDict())
    post = request.POST
    context["bulk"] = {
        "ids": set(post.getlist("ids")),
        "action": action if (action := post.get("action", "")) in BULK_ACTIONS else "assign",
        "value": _bulk_value(post, post.get("action", "")),
        "error": exc.message,
    }
    context.update(_inbox_page_extras(request))
    return render(request, "tickets/inbox.html", context, status=exc.http_status)


def _inbox_query_of_referer(request: HttpRequest) -> QueryDict:
    """The query of the inbox page a form was sent from (its Referer) when that is this
    site's inbox (:func:`_back_or_inbox`); an empty query (the inbox as first drawn)
    otherwise."""
    referer = urlsplit(_back_or_inbox(request))
    return QueryDict(referer.query if referer.path == reverse("inbox") else "")


def _bulk_apply(
    request: HttpRequest, tickets: list[Ticket], action: str, value: str, team: Team | None
) -> tuple[int, int]:
    done, skipped = 0, 0
    for ticket in tickets:
        if action == "assign":
            try:
                assignee = _assignee_from(value, request, ticket.assignee_id)
            except Forbidden as exc:  # which ticket of the batch, as it is now
                raise Forbidden(f"{ticket.number}: {exc.message}") from exc
            services.ticket_assign(ticket=ticket, assignee=assignee, actor=request.user)
        elif action == "status":
            if not ticket.can_transition_to(value):
                skipped += 1
                continue
            services.ticket_update(ticket=ticket, actor=request.user, status=value)
        elif action == "team":  # the single-ticket controls' change, events and SLA alike
            services.ticket_update(ticket=ticket, actor=request.user, team=team)
        else:
            names = sorted({*ticket.tags.values_list("name", flat=True), value})
            services.ticket_update(ticket=ticket, actor=request.user, tags=names)
        done += 1
    return done, skipped
