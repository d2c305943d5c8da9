"""Attachment downloads: only for agents who may see the attachment's ticket (the ticket
rule, ``tickets.selectors.ticket_visibility_q``), streamed from storage (or a signed S3
URL). Any other attachment answers 404, like an unknown one."""

from __future__ import annotations

from django.conf import settings
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.http.response import HttpResponseBase
from django.urls import reverse
from django.utils.http import content_disposition_header
from storages.backends.s3 import S3Storage

from support.auth.roles import is_agent
from tickets.models import Attachment
from tickets.selectors import ticket_visible_to


def attachment_url(attachment: Attachment) -> str:
    if attachment.file:
        return reverse("attachment-download", args=[attachment.pk])
    return attachment.external_url


def shown_inline(content_type: str) -> bool:
    """Pictures, sound and video open in the browser; anything else (HTML, PDF, SVG, which
    can carry script) is downloaded."""
    kind = content_type.lower()
    return kind.startswith(("image/", "audio/", "video/")) and not kind.startswith("image/svg")


def _signed_url(attachment: Attachment, inline: bool, expire: int | None = None) -> str:
    """The signed S3 URL, telling S3 to answer with our disposition and type: S3 serves an
    object with the type it was stored under, so an uploaded HTML file would otherwise open
    as a page on the bucket's origin. ``expire``: seconds (default: the storage's own,
    ``AWS_QUERYSTRING_EXPIRE``)."""
    storage = attachment.file.storage
    if not isinstance(storage, S3Storage):
        return str(attachment.file.url)
    disposition = content_disposition_header(not inline, attachment.filename)
    return str(
        storage.url(
            attachment.file.name,
            parameters={
                "ResponseContentDisposition": disposition or "attachment",
                "ResponseContentType": attachment.content_type or "application/octet-stream",
            },
            expire=expire,
        )
    )


#: How long a URL handed to a channel provider (to fetch a file we send) stays valid.
PROVIDER_URL_EXPIRE_SECONDS = 300


def attachment_provider_url(attachment: Attachment) -> str:
    """A URL a channel provider can fetch the stored file from for a few minutes (a signed
    S3 URL, with our type and disposition), or "" when files are not on S3 (local storage
    is not reachable from outside)."""
    if not (settings.S3_ENABLED and attachment.file):
        return ""
    if not isinstance(attachment.file.storage, S3Storage):
        return ""
    return _signed_url(
        attachment, shown_inline(attachment.content_type), expire=PROVIDER_URL_EXPIRE_SECONDS
    )


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
    inline = shown_inline(attachment.content_type)
    if settings.S3_ENABLED:
        # A short-lived signed URL (AWS_QUERYSTRING_EXPIRE): the bytes never pass through
        # the web process. No cache keeps the redirect (the URL is the key to the file).
        redirect = HttpResponseRedirect(_signed_url(attachment, inline))
        redirect["Cache-Control"] = "private, no-store"
        return redirect
    # A file of a ticket only some agents may see: no shared or browser cache keeps it,
    # as the visitor's and the bot's downloads are not kept.
    return attachment_file_response(attachment, as_attachment=not inline, private=True)


def attachment_file_response(
    attachment: Attachment, *, as_attachment: bool = True, private: bool = False
) -> FileResponse:
    """A stored file's bytes, served safely: never sniffed into another type (``nosniff``),
    never run as a page of this site (``sandbox``), a download unless shown inline;
    ``private``: no cache keeps it (``private, no-store``: a visitor's or a bot's file)."""
    response = FileResponse(
        attachment.file.open("rb"),
        as_attachment=as_attachment,
        filename=attachment.filename,
        content_type=attachment.content_type or "application/octet-stream",
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "sandbox"
    if private:
        response["Cache-Control"] = "private, no-store"
    return response
