"""Whether a Django session signs its user in, checked without writing to it: the staff
websockets' handshake (:class:`SessionAuthMiddleware`) and their re-checks while open
(``tickets.consumers``) decide it here, one way.

The check is ``django.contrib.auth.get_user``'s for a request: the session names a user
and a backend still in ``AUTHENTICATION_BACKENDS``, and its auth hash matches the user's
current one or, after a ``SECRET_KEY`` rotation, one made with a ``SECRET_KEY_FALLBACKS``
key (compared in constant time). Unlike ``get_user`` (and ``channels.auth.get_user``,
which also ignores the fallback keys) nothing is written: a request's ``get_user`` flushes
a failing session and moves a fallback-signed one to a new key, and answers with the
cookie that goes with it; a websocket handshake (or a check on an open socket) has no
answer that sets a cookie, so a write there deleted the browser's session (signed out
over HTTP too) or left the browser with a key that no longer exists. The next HTTP request
does what ``get_user`` does.

Signing out (``user_logged_out``: the workbench's sign-out, the admin's, the single sign-on
provider's) records an ``agent.access_changed`` for the user (:func:`signed_out_announce`,
connected in ``SupportConfig.ready``), so the user's live sockets re-check at once.
"""

from __future__ import annotations

from typing import Any

from channels.auth import AuthMiddleware
from channels.db import database_sync_to_async
from channels.sessions import CookieMiddleware, SessionMiddleware
from django.conf import settings
from django.contrib.auth import (
    BACKEND_SESSION_KEY,
    HASH_SESSION_KEY,
    SESSION_KEY,
    get_user_model,
    load_backend,
)
from django.contrib.sessions.backends.base import SessionBase
from django.core.exceptions import ValidationError
from django.utils.crypto import constant_time_compare

from support.services import agent_access_changed


def _session_user_id(session: SessionBase) -> Any | None:
    """The user id the session names, if it also names a configured backend."""
    try:
        user_id = get_user_model()._meta.pk.to_python(session[SESSION_KEY])
        backend_path = session[BACKEND_SESSION_KEY]
    except (KeyError, ValidationError):
        return None
    return user_id if backend_path in settings.AUTHENTICATION_BACKENDS else None


def session_signs_in(session: SessionBase, user: Any) -> bool:
    """Whether ``session`` signs ``user`` in (see the module): it names this user and a
    configured backend, and its auth hash is the user's, or one of a fallback key's.
    Reading a session that no longer exists or has expired finds it empty: False."""
    if user is None or _session_user_id(session) != user.pk:
        return False
    if not hasattr(user, "get_session_auth_hash"):
        return True
    session_hash = session.get(HASH_SESSION_KEY)
    if not session_hash:
        return False
    if constant_time_compare(session_hash, user.get_session_auth_hash()):
        return True
    return any(
        constant_time_compare(session_hash, fallback)
        for fallback in user.get_session_auth_fallback_hash()
    )


def session_user(session: SessionBase) -> Any | None:
    """The user ``session`` signs in (loaded by the backend that signed it in), or None."""
    user_id = _session_user_id(session)
    if user_id is None:
        return None
    user = load_backend(session[BACKEND_SESSION_KEY]).get_user(user_id)
    return user if user is not None and session_signs_in(session, user) else None


@database_sync_to_async
def _scope_user(scope: dict[str, Any]) -> Any:
    from django.contrib.auth.models import AnonymousUser

    return session_user(scope["session"]) or AnonymousUser()


class SessionAuthMiddleware(AuthMiddleware):  # type: ignore[misc]
    """Channels' ``AuthMiddleware`` with the user resolved by :func:`session_user`:
    ``SECRET_KEY_FALLBACKS`` honoured, and the session never flushed or moved."""

    async def resolve_scope(self, scope: dict[str, Any]) -> None:
        scope["user"]._wrapped = await _scope_user(scope)


def session_auth_stack(inner: Any) -> Any:
    """``channels.auth.AuthMiddlewareStack`` with :class:`SessionAuthMiddleware`."""
    return CookieMiddleware(SessionMiddleware(SessionAuthMiddleware(inner)))


def signed_out_announce(sender: Any, request: Any = None, user: Any = None, **kwargs: Any) -> None:
    """``user_logged_out`` receiver: the user's live sockets re-check their sessions now,
    not at their next periodic check (``WORKBENCH_WS_ACCESS_RECHECK_SECONDS``).

    The signal comes just before ``logout`` flushes the session; the announcement reaches
    a socket through the outbox relay (a task on a worker, then the channel layer), so the
    flush has run by the time the socket reads the session. Were it read first (tasks run
    in the web process: ``CELERY_TASK_ALWAYS_EAGER``), the socket closes at its next
    periodic check, as every socket did before sign-outs were announced."""
    if user is not None and user.pk is not None:
        agent_access_changed(user_ids=[user.pk], reason="signed out")
