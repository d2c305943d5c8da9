"""Attachment downloads: only for agents who may see the attachment's ticket (the ticket
rule, ``tickets.selectors.ticket_visibility_q``), streamed from storage (or a signed S3
URL). Any other attachment answers 404, like an unknown one."""

from __future__ import annotations

from django.conf import settings
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.http.response import HttpResponseBase
from django.urls import reverse

from support.auth.roles import is_agent
from tickets.models import Attachment
from tickets.selectors import ticket_visible_to


def attachment_url(attachment: Attachment) -> str:
    if attachment.file:
        return reverse("attachment-download", args=[attachment.pk])
    return attachment.external_url


def attachment_download(request: HttpRequest, attachment_id: int) -> HttpResponseBase:
    if not request.user.is_authenticated:
        return HttpResponseRedirect(f"{settings.LOGIN_URL}?next={request.path}")
    if not is_agent(request.user):
        return HttpResponse("Agents only.", status=403)
    attachment = (
        Attachment.objects.select_related("message__ticket").filter(pk=attachment_id).first()
    )
    if attachment is None or not attachment.file:
        raise Http404("No such attachment.")
    ticket = attachment.message.ticket
    if not ticket_visible_to(request.user, team_id=ticket.team_id, assignee_id=ticket.assignee_id):
        raise Http404("No such attachment.")  # the same answer as an unknown id
    if settings.S3_ENABLED:
        # A short-lived signed URL: the bytes never pass through the web process.
        return HttpResponseRedirect(attachment.file.url)
    inline = attachment.content_type.startswith(("image/", "audio/", "video/"))
    response = FileResponse(
        attachment.file.open("rb"),
        as_attachment=not inline,
        filename=attachment.filename,
        content_type=attachment.content_type or "application/octet-stream",
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "sandbox"
    return response
