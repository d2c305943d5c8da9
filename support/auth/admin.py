"""Base classes for admin pages that the supervisor role may use.

They live here (shared infrastructure) so that both the core's admin (``tickets.admin``,
which re-exports them) and shared apps such as ``support.delivery`` subclass one definition
without ``support`` importing the core."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import MAXYEAR, MINYEAR, datetime
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers, widgets
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.utils import NestedObjects, get_fields_from_path, quote
from django.core.exceptions import FieldDoesNotExist, ObjectDoesNotExist, ValidationError
from django.db import router
from django.db.models import (
    CharField,
    DateField,
    Field,
    IntegerField,
    ManyToManyField,
    Model,
    Q,
    QuerySet,
    TextField,
)
from django.db.models.constants import LOOKUP_SEP
from django.db.models.functions import Cast, Lower
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import Truncator, capfirst

from support.admin_site import admin_request
from support.auth.roles import is_agent, is_supervisor
from support.parsing import contains_nul, parse_id


def bounded_actions(actions: dict[str, Any]) -> dict[str, Any]:
    """An admin page's actions (``ModelAdmin.get_actions``' answer), each refusing a
    selection of more than ``ADMIN_ACTION_MAX_ROWS`` rows with a message and without
    touching a row. Actions run in the web request, a service call or more per row: "Select
    all 100,000" on a big table would run until the gateway's timeout cut it, leaving an
    unknown part of the selection changed. A page of rows (``list_per_page``) is always
    within the bound; a larger selection is narrowed with the list's filters."""
    return {
        name: (_bounded(func), action_name, description)
        for name, (func, action_name, description) in actions.items()
    }


def _bounded(func: Callable[..., Any]) -> Callable[..., Any]:
    def action(model_admin: Any, request: HttpRequest, queryset: QuerySet[Any]) -> Any:
        limit = settings.ADMIN_ACTION_MAX_ROWS
        count = queryset.count()
        if count > limit:
            model_admin.message_user(
                request,
                f"This action takes at most {limit:,} rows at a time and {count:,} are "
                "selected. Nothing was changed: narrow the list with its filters or "
                "search, then run it again.",
                messages.ERROR,
            )
            return None
        return func(model_admin, request, queryset)

    action.__name__ = getattr(func, "__name__", "action")
    action.__dict__.update(getattr(func, "__dict__", {}))  # permissions, description
    return action


class SupervisorAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Supervisors (the role, a group) may use these admin pages without per-model Django
    permissions; deleting stays with explicit permissions (superusers). Their actions take
    at most ``ADMIN_ACTION_MAX_ROWS`` rows at a time (:func:`bounded_actions`)."""

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        return bounded_actions(super().get_actions(request))

    def has_module_permission(self, request: HttpRequest) -> bool:
        return is_supervisor(request.user) or super().has_module_permission(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_supervisor(request.user) or super().has_view_permission(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_supervisor(request.user) or super().has_change_permission(request, obj)

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return is_supervisor(request.user) or super().has_add_permission(request, *args)


class ExactSearchMixin:
    """An admin page over a big table searched by exact values: ``exact_search_fields``
    (paths to columns, relations followed) each matched with ``=`` on the value typed, so
    an index answers, where Django's search (``icontains``, or ``iexact`` for a ``=``
    field: ``UPPER(column)``) reads every row of the table. A value a column cannot hold
    (letters for an id) is not looked for in it. Set ``search_fields`` too (Django shows
    the search box only with them); ``search_help_text`` says what may be typed."""

    exact_search_fields: tuple[str, ...] = ()

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        term = search_term.strip()
        if not term or not self.exact_search_fields:
            return super().get_search_results(request, queryset, search_term)  # type: ignore[misc,no-any-return]
        found = Q(pk__in=[])
        for path in self.exact_search_fields:
            value = _exact_value(get_fields_from_path(queryset.model, path)[-1], term)
            if value is not None:
                found |= Q(**{path: value})
        return queryset.filter(found), False


def _exact_value(field: Any, term: str) -> Any:
    """``term`` as a value of ``field``, or None when the field cannot hold it."""
    target = field.target_field if field.is_relation else field
    if isinstance(target, IntegerField):
        return parse_id(term)
    if isinstance(target, CharField | TextField):
        limit = getattr(target, "max_length", None)
        return term if limit is None or len(term) <= limit else None
    try:
        return target.to_python(term)
    except (ValidationError, ValueError, TypeError):
        return None


class AboutAdminMixin:
    """A line above the list and the form saying what these rows are (``about``) and the
    page of the project's documentation that explains them (``docs``, a path in the
    repository's ``docs/``: the application does not serve its documentation). Shown by
    ``templates/admin/base_site.html``."""

    about: str = ""
    docs: str = ""

    def _about_context(self, extra_context: dict[str, Any] | None) -> dict[str, Any]:
        return {**(extra_context or {}), "admin_about": self.about, "admin_docs": self.docs}

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        return super().changelist_view(request, self._about_context(extra_context))  # type: ignore[misc]

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: Any = None,
    ) -> Any:
        return super().changeform_view(  # type: ignore[misc]
            request, object_id, form_url, self._about_context(extra_context)
        )


class RecordAdminMixin:
    """Records the system writes (jobs, received events, feedback): shown, never added or
    edited by hand, whoever asks (a hand-made record would be taken for a real one: a
    forged received-event key, say, makes the real event look like a duplicate)."""

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class SupervisorInlineMixin:
    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_supervisor(request.user) or super().has_view_permission(request, obj)  # type: ignore[misc]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_supervisor(request.user) or super().has_change_permission(request, obj)  # type: ignore[misc]


# --- what the viewer may see: the project's visibility rule in the admin ---------------

#: ``rule(user, obj)``: may this person see ``obj`` outside the admin (the workbench, the
#: API)? Registered by the apps that own a visibility rule (``tickets.admin``: tickets,
#: customers, messages, attachments; ``calls.admin``: calls), since this module imports
#: no feature app.
VisibilityRule = Callable[[Any, Any], bool]
#: ``rows(user)``: the same rule as a filter on the model's rows (``ticket_visibility_q``,
#: ``customer_visibility_q``, ``call_visibility_q``), for the admin's lists and lookups.
VisibilityRows = Callable[[Any], Q]
_VISIBILITY: dict[type[Model], VisibilityRule] = {}
_VISIBLE_ROWS: dict[type[Model], VisibilityRows] = {}
#: The names other records use for these models in a "type + id" pair (a delivery's
#: ``subject_type``, an outbox event's ``aggregate_type``): "ticket", "call".
_SUBJECT_NAMES: dict[str, type[Model]] = {}


def admin_visibility_register(
    model: type[Model],
    rule: VisibilityRule,
    *,
    rows: VisibilityRows,
    subject_name: str = "",
) -> None:
    """Register the project's visibility rule for ``model``: per object (``rule``, for
    links and names) and as a filter (``rows``, for the admin pages that list or open
    such objects: :class:`VisibleRowsAdminMixin`). ``subject_name`` is what records
    that point at such an object by type and id call its type."""
    _VISIBILITY[model] = rule
    _VISIBLE_ROWS[model] = rows
    if subject_name:
        _SUBJECT_NAMES[subject_name] = model


#: Lower-cased names of the types of objects whose admin pages are superusers' only and
#: whose records by "type + id" must be too (people and credentials: users, API keys,
#: channel accounts), each under every name a writer may give it.
_SUPERUSER_SUBJECT_NAMES: set[str] = set()


def admin_superuser_subject_register(model: type[Model], *names: str) -> None:
    """``model``'s objects are superusers' only in the admin (people and credentials), and
    so are the records that name one by type and id (audit-log entries: who changed which
    user or API key). A record may name the type by the model's label
    (``"support.ApiKey"``), its name (``"apikey"``) or its words (``"api_key"``), in any
    case; ``names`` adds others. Registered where each such model's admin is."""
    opts = model._meta
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", model.__name__)
    words = str(opts.verbose_name).replace(" ", "_")
    for name in (opts.label, opts.model_name or "", snake, words, *names):
        if name:
            _SUPERUSER_SUBJECT_NAMES.add(name.lower())


def superuser_subjects_hidden(queryset: QuerySet[Any], user: Any, kind: str) -> QuerySet[Any]:
    """``queryset`` without the rows whose ``kind`` field names a type registered with
    :func:`admin_superuser_subject_register`, unless ``user`` is a superuser (supervisors
    included: the objects' own pages answer them 403)."""
    if user is not None and getattr(user, "is_superuser", False):
        return queryset
    return queryset.alias(_subject_kind=Lower(kind)).exclude(
        _subject_kind__in=sorted(_SUPERUSER_SUBJECT_NAMES)
    )


def admin_visible(user: Any, obj: Model) -> bool:
    """Whether ``user`` may see ``obj`` under the project's visibility rule for its model
    (True for models without one). A rule holds only for people in a role (agents and
    supervisors): someone in neither sees nothing outside the admin."""
    rule = _VISIBILITY.get(obj._meta.concrete_model or type(obj))
    if rule is None:
        return True
    return user is not None and is_agent(user) and rule(user, obj)


def _sees_everything(user: Any) -> bool:
    return user is not None and is_supervisor(user)


def visible_rows_of(model: type[Model], user: Any) -> QuerySet[Any]:
    """The rows of ``model`` (which has a registered rule) that ``user`` may see: all for
    supervisors and superusers, none for someone in no role, else the rule's filter."""
    queryset = model._default_manager.all()
    if _sees_everything(user):
        return queryset
    if user is None or not is_agent(user):
        return queryset.none()
    return queryset.filter(_VISIBLE_ROWS[model](user))


def _target_model(model: type[Model], path: str) -> tuple[type[Model], bool]:
    """The model at the end of ``path`` (``"ticket"``, ``"message__ticket"``; ``""`` for
    ``model`` itself) and whether some step of it may be empty."""
    nullable = False
    for name in [part for part in path.split("__") if part]:
        field = model._meta.get_field(name)
        nullable = nullable or bool(getattr(field, "null", False))
        model = field.related_model  # type: ignore[assignment]
    return model, nullable


def visible_rows(
    queryset: QuerySet[Any],
    user: Any,
    through: tuple[str, ...],
    subject: tuple[str, str] | None = None,
    match: tuple[str, type[Model], str] | None = None,
    *,
    supervisors_only: bool = False,
    unlinked_hidden: bool = False,
    other_subjects_hidden: bool = False,
    also: Callable[[Any], Q] | None = None,
) -> QuerySet[Any]:
    """``queryset`` narrowed to what ``user`` may see: each path in ``through`` leads to
    an object under a registered rule (``""``: the rows themselves are), which must be
    visible to them (an empty relation hides nothing); ``subject`` names the fields of
    a "type + id" pair (``("subject_type", "subject_id")``) whose registered types must
    be visible too; ``match`` (``(field, model, its field)``) keeps the rows whose
    ``field`` is that of a visible ``model`` row (a raw call record's contact id);
    ``supervisors_only``: rows that cannot be tied to such an object (raw inbound
    deliveries) are for supervisors; ``unlinked_hidden``: a row whose relation in
    ``through`` is empty is for supervisors too (else an empty relation hides nothing);
    ``other_subjects_hidden``: a row whose ``subject`` names a type no rule places (an
    alert, a web chat verification) is for supervisors too (else it is shown);
    ``also(user)``: a further rule of the rows' own, as a filter (an interaction's scope).
    Supervisors and superusers see all; someone in no role, none."""
    if _sees_everything(user):
        return queryset
    if user is None or not is_agent(user) or supervisors_only:
        return queryset.none()
    for path in through:
        target, nullable = _target_model(queryset.model, path)
        if not path:
            queryset = queryset.filter(_VISIBLE_ROWS[target](user))
            continue
        seen = Q(**{f"{path}__in": visible_rows_of(target, user).values("pk")})
        unlinked = nullable and not unlinked_hidden
        queryset = queryset.filter(seen | Q(**{f"{path}__isnull": True}) if unlinked else seen)
    if subject is not None:
        kind, ident = subject
        if other_subjects_hidden:
            queryset = queryset.filter(Q(**{kind: ""}) | Q(**{f"{kind}__in": list(_SUBJECT_NAMES)}))
        for name, target in _SUBJECT_NAMES.items():
            pks = visible_rows_of(target, user).annotate(_pk_text=Cast("pk", CharField()))
            queryset = queryset.exclude(
                Q(**{kind: name}) & ~Q(**{f"{ident}__in": pks.values("_pk_text")})
            )
    if match is not None:
        field, model, remote = match
        queryset = queryset.filter(**{f"{field}__in": visible_rows_of(model, user).values(remote)})
    if also is not None:
        queryset = queryset.filter(also(user))
    return queryset


class VisibleRowsAdminMixin:
    """For admin pages (and inlines) whose rows are, or hang off, tickets, customers,
    calls, messages or attachments: a person who is not a supervisor (nor a superuser)
    lists, searches, opens, changes and deletes only the rows whose objects they may see
    in the workbench, whatever Django permissions they were given. Another row answers
    as a missing one does (Django's "doesn't exist" redirect, or 404), and the autocomplete
    and raw-id lookups of other pages, which read this page's queryset, never offer it.

    ``visible_through``: paths from the row to the objects under a rule (``""`` when the
    rows are such objects, ``"ticket"``, ``"call"``, ``"customer"``); ``visible_subject``:
    a "type + id" pair of fields naming such an object (deliveries, outbox events, alerts);
    ``visible_match``: a field holding the key of such an object (a raw call record's
    contact id: ``("contact_id", Call, "contact_id")``); ``visible_to_supervisors_only``:
    rows that hold such objects' data but cannot be tied to one (a raw inbound delivery:
    a customer's message as received); ``visible_unlinked_to_supervisors_only``: a row
    whose relation is empty is for supervisors (a web chat visitor's verification before
    it names a customer: an address anyone typed); ``visible_other_subjects_to_supervisors_only``:
    a row whose "type + id" names a type no rule places is for supervisors (a delivery of
    an alert's notification or of a web chat visitor's code);
    ``visible_superuser_subjects_hidden``: a row whose "type + id" names people or
    credentials (a user, an API key, a channel account:
    :func:`admin_superuser_subject_register`) is for superusers only, supervisors included
    (the audit log); :meth:`visible_rows_also`: a further rule of the rows' own, as a
    filter (an interaction's scope: the call it is about). The choices of a form's
    relations to such objects are narrowed the same way (the value it holds stays valid:
    an agent may save a ticket merged into one it does not see, the target named as
    hidden)."""

    visible_through: tuple[str, ...] = ()
    visible_subject: tuple[str, str] | None = None
    visible_match: tuple[str, type[Model], str] | None = None
    visible_to_supervisors_only: bool = False
    visible_unlinked_to_supervisors_only: bool = False
    visible_other_subjects_to_supervisors_only: bool = False
    visible_superuser_subjects_hidden: bool = False

    def visible_rows_also(self, user: Any) -> Q:
        """A further rule for whoever is not a supervisor (nor a superuser): the rows they
        may see among the others, as a filter (applied in the same query); none here."""
        return Q()

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset = super().get_queryset(request)  # type: ignore[misc]
        user = getattr(request, "user", None)
        if self.visible_superuser_subjects_hidden and self.visible_subject is not None:
            queryset = superuser_subjects_hidden(queryset, user, self.visible_subject[0])
        return visible_rows(
            queryset,
            user,
            self.visible_through,
            self.visible_subject,
            self.visible_match,
            supervisors_only=self.visible_to_supervisors_only,
            unlinked_hidden=self.visible_unlinked_to_supervisors_only,
            other_subjects_hidden=self.visible_other_subjects_to_supervisors_only,
            also=self.visible_rows_also,
        )

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        form = super().get_form(request, obj, change, **kwargs)  # type: ignore[misc]
        if obj is None or obj.pk is None or _sees_everything(getattr(request, "user", None)):
            return form
        for name, field in form.base_fields.items():
            model = getattr(getattr(field, "queryset", None), "model", None)
            current = getattr(obj, f"{name}_id", None)
            if model in _VISIBLE_ROWS and current is not None:
                # The value the row holds is kept (it was not chosen by this person).
                field.queryset = field.queryset | model._default_manager.filter(pk=current)
        return form

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.related_model in _VISIBLE_ROWS and "queryset" not in kwargs:
            user = getattr(request, "user", None)
            if not _sees_everything(user):
                kwargs["queryset"] = visible_rows_of(db_field.related_model, user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)  # type: ignore[misc]

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.related_model in _VISIBLE_ROWS and "queryset" not in kwargs:
            user = getattr(request, "user", None)
            if not _sees_everything(user):
                kwargs["queryset"] = visible_rows_of(db_field.related_model, user)
        return super().formfield_for_manytomany(db_field, request, **kwargs)  # type: ignore[misc]


class VisibleRelatedListFilter(admin.RelatedFieldListFilter):
    """A list filter on a relation to objects under a visibility rule (a ticket's tags):
    it offers only those the viewer may see (``visible_rows_of``), where Django's own
    filter names every row of the related table. Supervisors: every row, one query on
    that table, as Django's."""

    def field_choices(self, field: Any, request: HttpRequest, model_admin: Any) -> Any:
        model = field.related_model
        user = getattr(request, "user", None)
        if model not in _VISIBLE_ROWS or _sees_everything(user):
            return super().field_choices(field, request, model_admin)
        ordering = self.field_admin_ordering(field, request, model_admin)
        visible = Q(pk__in=visible_rows_of(model, user).values("pk"))
        return field.get_choices(include_blank=False, limit_choices_to=visible, ordering=ordering)


def admin_rows_checked(model_admin: Any) -> bool:
    """Whether this admin page applies the visibility rule to its rows (for the test that
    every page listing such objects does)."""
    return isinstance(model_admin, VisibleRowsAdminMixin)


# --- links to related objects: only to what the viewer may open -------------------------


def hidden_text(obj: Model) -> str:
    """What stands for an object the viewer may not see: its kind, nothing of its data."""
    return f"(a {obj._meta.verbose_name} you cannot see)"


def admin_link(obj: Model | None, *, text: str | None = None, site: Any = None) -> str:
    """How an admin page shows a related object to the admin user being served
    (:func:`support.admin_site.admin_request`):

    - a link to its admin page when they may open that page (the page's own
      ``has_view_permission``: Django permissions, or the supervisor role on
      ``SupervisorAdmin`` pages) *and* may see the object under its visibility rule (the
      page lists only such objects: :class:`VisibleRowsAdminMixin`);
    - its name as plain text when they may see it but not open that page;
    - otherwise :func:`hidden_text`, which names no data of it.

    ``text`` replaces ``str(obj)``. Outside an admin request nothing is linked, and
    objects under a visibility rule are hidden."""
    if obj is None:
        return "-"
    request = admin_request()
    label = str(obj) if text is None else text
    may_open, visible = _viewer_sees(request, obj, site or admin.site)
    if may_open:
        url = _change_url(obj, site or admin.site)
        return format_html('<a href="{}">{}</a>', url, label) if url else label
    return label if visible else hidden_text(obj)


def _viewer_sees(request: HttpRequest | None, obj: Model, site: Any) -> tuple[bool, bool]:
    """``(may_open, visible)`` for the admin user of ``request`` and ``obj``: whether its
    admin page would open for them (the page's ``has_view_permission``, and the object
    among the page's rows), and whether they may see it at all (the visibility rule of its
    model, or of the objects it hangs off when its admin page applies one:
    :class:`VisibleRowsAdminMixin`). Opening implies seeing."""
    user = getattr(request, "user", None)
    opts = obj._meta
    model_admin = site._registry.get(opts.model) or site._registry.get(opts.concrete_model)
    visible = admin_visible(user, obj)
    if (
        visible
        and admin_rows_checked(model_admin)
        and opts.concrete_model not in _VISIBILITY
        and not _sees_everything(user)
    ):
        own = opts.concrete_model._default_manager.filter(pk=obj.pk)  # type: ignore[union-attr]
        visible = visible_rows(
            own,
            user,
            model_admin.visible_through,
            model_admin.visible_subject,
            model_admin.visible_match,
            supervisors_only=model_admin.visible_to_supervisors_only,
            unlinked_hidden=model_admin.visible_unlinked_to_supervisors_only,
            other_subjects_hidden=model_admin.visible_other_subjects_to_supervisors_only,
            also=model_admin.visible_rows_also,
        ).exists()
    may_open = bool(
        visible
        and request is not None
        and model_admin is not None
        and model_admin.has_view_permission(request, obj)
    )
    return may_open, visible


def _change_url(obj: Model, site: Any) -> str:
    opts = obj._meta
    try:
        return reverse(
            f"admin:{opts.app_label}_{opts.model_name}_change",
            args=[quote(obj.pk)],
            current_app=site.name,
        )
    except NoReverseMatch:
        return ""


def _readonly_relation(
    self: helpers.AdminReadonlyField, remote_field: Any, remote_obj: Model
) -> str:
    """``AdminReadonlyField.get_admin_url`` as the project has it: :func:`admin_link`.
    Django 5.2's links a read-only foreign key to the related object's change page
    whenever that page exists, naming the object, without asking whether the viewer may
    open it or see it."""
    return admin_link(remote_obj, site=getattr(self.model_admin, "admin_site", None))


def _raw_id_label(self: widgets.ForeignKeyRawIdWidget, value: Any) -> tuple[str, str]:
    """``ForeignKeyRawIdWidget.label_and_url_for_value`` as the project has it: the chosen
    object's name next to the id box of an editable form only for those who may see it,
    linked only for those who may open its page (Django 5.2 names and links it for
    everyone who reaches the form)."""
    key = self.rel.get_related_field().name
    try:
        obj = self.rel.model._default_manager.using(self.db).get(**{key: value})
    except (ValueError, ObjectDoesNotExist, ValidationError):
        return "", ""
    may_open, visible = _viewer_sees(admin_request(), obj, self.admin_site)
    if not visible:
        return hidden_text(obj), ""
    return str(Truncator(obj).words(14)), _change_url(obj, self.admin_site) if may_open else ""


def _deleted_objects(
    self: admin.ModelAdmin,  # type: ignore[type-arg]
    objs: Any,
    request: HttpRequest,
) -> tuple[list[Any], dict[str, int], set[str], list[Any]]:
    """``ModelAdmin.get_deleted_objects`` as the project has it: what a deletion would take
    with it (the confirmation page, the "delete selected" action) is named and linked as
    :func:`admin_link` does; an object the person deleting may not see is not named, and
    the deletion is refused as for an object they may not delete (Django 5.2 names and
    links every one, and deletes what it cannot see)."""
    try:
        first = objs[0]
    except IndexError:
        return [], {}, set(), []
    collector = NestedObjects(using=router.db_for_write(first._meta.model), origin=objs)
    collector.collect(objs)
    perms_needed: set[str] = set()
    site = self.admin_site

    def format_callback(obj: Model) -> str:
        opts = obj._meta
        model_admin = site._registry.get(type(obj))
        _, visible = _viewer_sees(request, obj, site)
        if not visible or (
            model_admin is not None and not model_admin.has_delete_permission(request, obj)
        ):
            perms_needed.add(str(opts.verbose_name))
        return format_html("{}: {}", capfirst(opts.verbose_name), admin_link(obj, site=site))

    to_delete = collector.nested(format_callback)
    protected = [format_callback(obj) for obj in collector.protected]
    found_by_model: dict[Any, Any] = collector.model_objs
    model_count = {
        str(model._meta.verbose_name_plural): len(found) for model, found in found_by_model.items()
    }
    return to_delete, model_count, perms_needed, protected


class RecentValuesListFilter(admin.AllValuesFieldListFilter):
    """Django's filter for a field without choices (an error code, a provider, a channel
    kept as text) offers every distinct value of the column: ``SELECT DISTINCT`` over the
    whole table on every load of the list, a full scan of a million deliveries or
    decisions. This one offers the values of the latest ``RECENT_ROWS`` rows (the primary
    key's index read backwards), which is what a supervisor filters by; an older value
    still filters when its link or address is used."""

    RECENT_ROWS = 5000

    def __init__(
        self,
        field: Any,
        request: HttpRequest,
        params: Any,
        model: Any,
        model_admin: Any,
        field_path: str,
    ) -> None:
        super().__init__(field, request, params, model, model_admin, field_path)
        if field.model is not model:  # a related model's field: Django's query
            return
        recent = (
            model_admin.get_queryset(request)
            .order_by("-pk")
            .values_list(field.name, flat=True)[: self.RECENT_ROWS]
        )
        self.lookup_choices = sorted(set(recent), key=lambda v: (v is None, v))  # type: ignore[assignment]


def _recent_values_applies(field: Any) -> bool:
    """The fields Django gives its all-values filter (a plain column: no relation, no
    choices, neither a flag nor a date)."""
    from django.db.models import BooleanField, DateField

    return not (field.is_relation or field.choices or isinstance(field, BooleanField | DateField))


def list_filters_bounded() -> None:
    """Installed once, by ``support.admin_site.SupportAdminConfig.ready()``: plain columns
    in ``list_filter`` get :class:`RecentValuesListFilter`, every admin page alike."""
    admin.FieldListFilter.register(
        _recent_values_applies, RecentValuesListFilter, take_priority=True
    )


def readonly_relations_checked() -> None:
    """Installed once, by ``support.admin_site.SupportAdminConfig.ready()``: read-only
    relations, the raw-id widget's label and the deletion summary name and link related
    objects as :func:`admin_link` does."""
    helpers.AdminReadonlyField.get_admin_url = _readonly_relation  # type: ignore[attr-defined]
    widgets.ForeignKeyRawIdWidget.label_and_url_for_value = _raw_id_label  # type: ignore[method-assign]
    admin.ModelAdmin.get_deleted_objects = _deleted_objects  # type: ignore[method-assign]


# --- what the admin reads from a request: refused or dropped when it cannot be used ------
# A list's query string, an action's selection and an add page's pre-filled values come
# from whoever types the address. Django passes each to the database or to a widget as
# it is, and some values failed there with a 500 (the 2026-12-07 admin probe): these
# hooks refuse or drop exactly those values, every admin page alike
# (:func:`admin_input_checked`), and leave any other error to surface.

#: Lookups the lists refuse in a query string (400, as Django refuses a lookup through a
#: relation it does not filter by): PostgreSQL runs the pattern, and one that does not
#: compile (``?id__regex=[``) was a ``DataError``; one that does may backtrack on every
#: row of a big table. No admin page links to one.
REFUSED_LOOKUPS = frozenset({"regex", "iregex"})
#: The parts of a date a list's query string may name (the date hierarchy's links, a typed
#: ``?created_at__year=2026``), each with the values it may take. A year keeps one year
#: clear of ``datetime``'s range at each end: the date hierarchy adds a year, a month or a
#: day to the date it reads, the ``year`` lookup takes the year's last microsecond, and the
#: time zone moves either across the range's end (``-1``, ``9999999999999999999999999``
#: and 9999-12-31 were ``ValueError`` / ``OverflowError``: 500).
DATE_PART_RANGES = {
    "year": (MINYEAR + 1, MAXYEAR - 1),
    "iso_year": (MINYEAR + 1, MAXYEAR - 1),
    "month": (1, 12),
    "day": (1, 31),
}
_DATE_PART_COMPARISONS = frozenset({"exact", "gt", "gte", "lt", "lte"})
SELECTION_REFUSED = (
    "The selection was not a list of this page's row ids: nothing was changed. Select "
    "the rows in the list and run the action again."
)

_django_lookup_allowed = admin.ModelAdmin.lookup_allowed
_django_response_action = admin.ModelAdmin.response_action
_django_changeform_initial_data = admin.ModelAdmin.get_changeform_initial_data


def _date_part(model: type[Model], parts: list[str]) -> str | None:
    """The part of a date (``year``, ``month``...) that the lookup path ``parts`` takes of
    a date or date-time column, relations followed, with at most one comparison after it
    (``created_at__year``, ``ticket__created_at__year__gte``); None for any other path."""
    opts = model._meta
    for i, part in enumerate(parts):
        try:
            field = opts.get_field(part)
        except FieldDoesNotExist:
            return None
        if field.is_relation:
            related = field.related_model
            if not (isinstance(related, type) and issubclass(related, Model)):
                return None  # a generic relation: not followed
            opts = related._meta
            continue
        rest = parts[i + 1 :]
        if (
            isinstance(field, DateField)
            and 1 <= len(rest) <= 2
            and rest[0] in DATE_PART_RANGES
            and _DATE_PART_COMPARISONS.issuperset(rest[1:])
        ):
            return rest[0]
        return None
    return None


def _lookup_allowed(
    self: admin.ModelAdmin,  # type: ignore[type-arg]
    lookup: str,
    value: Any,
    request: HttpRequest | None = None,
) -> bool:
    """``ModelAdmin.lookup_allowed`` as the project has it: a lookup in
    :data:`REFUSED_LOOKUPS` is not allowed (400), and a part of a date out of
    :data:`DATE_PART_RANGES` (or not ASCII digits) is an invalid filter, as ``?year=abc``
    already was (Django's redirect to the list with ``?e=1``); then Django's rule."""
    parts = lookup.split(LOOKUP_SEP)
    if REFUSED_LOOKUPS.intersection(parts):
        return False
    part = _date_part(self.model, parts)
    if part is not None:
        low, high = DATE_PART_RANGES[part]
        number = parse_id(value, max_digits=4)
        if number is None or not low <= number <= high:
            raise IncorrectLookupParameters(f"{lookup}: {low} to {high}")
    return _django_lookup_allowed(self, lookup, value, request)  # type: ignore[no-any-return]


def _key_valid(model: type[Model], value: str) -> bool:
    """Whether ``value`` may be a primary key of ``model`` (ASCII digits for an integer
    key: :func:`_exact_value`)."""
    return not contains_nul(value) and _exact_value(model._meta.pk, value) is not None


def _response_action(
    self: admin.ModelAdmin,  # type: ignore[type-arg]
    request: HttpRequest,
    queryset: QuerySet[Any],
) -> Any:
    """``ModelAdmin.response_action`` as the project has it: a selection
    (``_selected_action``) holding a value that is no key of the model (``abc``, ``1.5``,
    ``¹``: Django's ``pk__in`` raised ``ValueError``, a 500) runs no action, and the list
    says so (the redirect Django answers an empty selection with)."""
    selected = request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)
    if not all(_key_valid(self.model, value) for value in selected):
        self.message_user(request, SELECTION_REFUSED, messages.ERROR)
        return None
    return _django_response_action(self, request, queryset)


#: What :func:`_initial_value` answers for a value that cannot be shown.
_UNUSABLE = object()


def _initial_value(field: Field, value: Any) -> Any:  # type: ignore[type-arg]
    """``value`` read as ``field`` reads it (a date-time as a ``datetime``, a relation
    as its key), or :data:`_UNUSABLE`. A many-to-many value is the list of keys Django
    split it into."""
    if isinstance(field, ManyToManyField):
        values = value if isinstance(value, list) else [value]
        keys = [_initial_value(field.target_field, each) for each in values]
        return _UNUSABLE if any(key is _UNUSABLE for key in keys) else keys
    try:
        parsed = field.to_python(value)
        if isinstance(parsed, datetime) and timezone.is_aware(parsed):
            timezone.localtime(parsed)  # the form shows it in the current time zone
    except (ValidationError, ValueError, TypeError, OverflowError):
        return _UNUSABLE
    return parsed


def _changeform_initial_data(
    self: admin.ModelAdmin,  # type: ignore[type-arg]
    request: HttpRequest,
) -> dict[str, Any]:
    """``ModelAdmin.get_changeform_initial_data`` as the project has it: an add page
    pre-filled from its query string (``/admin/routing/outage/add/?service=...``) gets
    each model field's value as the field reads it, and none for a value the field cannot
    read. Django passed the text as it was: a date-time's widget failed on any text
    (``?started_at=abc``, even ``2026-01-01``: ``AttributeError``), and a relation's
    autocomplete on a key that is no number (``?user=abc``: ``ValueError``), each a 500.
    Other parameters (``_popup``, ``_changelist_filters``) are left as Django has them."""
    initial: dict[str, Any] = _django_changeform_initial_data(self, request)
    for name, value in list(initial.items()):
        try:
            field = self.opts.get_field(name)
        except FieldDoesNotExist:
            continue
        if not isinstance(field, Field):  # a reverse relation: no field of the form
            continue
        parsed = _initial_value(field, value)
        if parsed is _UNUSABLE:
            del initial[name]
        else:
            initial[name] = parsed
    return initial


def admin_input_checked() -> None:
    """Installed once, by ``support.admin_site.SupportAdminConfig.ready()``: every admin
    page's list lookups (:func:`_lookup_allowed`), action selections
    (:func:`_response_action`) and pre-filled add forms (:func:`_changeform_initial_data`)
    refuse or drop what they cannot use instead of failing with a 500."""
    admin.ModelAdmin.lookup_allowed = _lookup_allowed  # type: ignore[method-assign,assignment]
    admin.ModelAdmin.response_action = _response_action  # type: ignore[method-assign]
    admin.ModelAdmin.get_changeform_initial_data = _changeform_initial_data  # type: ignore[method-assign]
