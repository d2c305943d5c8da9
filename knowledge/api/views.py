"""Knowledge-base API: thin views over services and selectors."""

from __future__ import annotations

import hmac
from typing import Any

from django.conf import settings
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from knowledge import draft_services, selectors, services
from knowledge.models import IngestionJob, KnowledgeSource, ReplyDraft
from knowledge.s3events import parse_events
from support.api_schema import path_parameter
from support.auth.permissions import IsAgent, IsSupervisor
from support.errors import Forbidden, InvalidInput, NotFound
from support.parsing import content_length
from support.throttling import PerClientRateThrottle, PerIPRateThrottle, hit
from tickets.api.schema import TICKET_ID

JOB_ID = path_parameter("job_id", description="The ingestion job's id.", examples={"id": "1"})
CHUNK_ID = path_parameter(
    "chunk_id",
    description="The suggested passage as listed by the suggestions endpoint: a passage id, "
    "or the backend's reference for it.",
    pattern=r"^[^/]{1,200}$",
    examples={"passage": "1"},
)


def job_data(job: IngestionJob) -> dict[str, Any]:
    return {
        "id": job.pk,
        "kind": job.kind,
        "status": job.status,
        "backend": job.backend,
        "source": job.source.name if job.source else None,
        "file": job.file_name or None,  # an upload job's file (its document id)
        "full": job.full,
        "external_job_id": job.external_job_id or None,
        "progress": job.progress,
        "total": job.total,
        "processed": job.processed,
        "counts": {
            "created": job.created_count,
            "updated": job.updated_count,
            "unchanged": job.unchanged_count,
            "deleted": job.deleted_count,
            "failed": job.failed_count,
            "chunks": job.chunk_count,
        },
        "errors": job.errors,
        "timings": job.timings,
        "created_at": job.created_at.isoformat(),
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "heartbeat_at": job.heartbeat_at.isoformat(),
    }


class KbSyncInput(serializers.Serializer):
    source = serializers.CharField(  # type: ignore[assignment]
        required=False, allow_blank=True, default=""
    )
    full = serializers.BooleanField(required=False, default=False)


class KbSyncApi(APIView):
    """Start a resync (seed 000's ``/kb/sync``): 202 with the job id; runs in Celery. While
    a sync covering the request is queued or running, that job is answered instead, with
    ``existing: true`` and a message (a new job's answer keeps the seed's two fields): a
    source is synced by one job at a time. An upload source is a 400 saying why, as the
    admin's action refuses it (``services.source_sync_check``, in ``sync_job_queue``)."""

    permission_classes = [IsSupervisor]

    @extend_schema(
        operation_id="kb_sync",
        request=KbSyncInput,
        responses={
            202: inline_serializer(
                "KbSyncStarted",
                {
                    "job_id": serializers.IntegerField(),
                    "status": serializers.CharField(),
                    "existing": serializers.BooleanField(required=False),
                    "message": serializers.CharField(required=False),
                },
            )
        },
        examples=[OpenApiExample("one source", request_only=True, value={"source": "faq"})],
    )
    def post(self, request: Request) -> Response:
        data = KbSyncInput(data=request.data)
        if not data.is_valid():
            raise InvalidInput("Invalid sync request.", details=data.errors)
        source = None
        if data.validated_data["source"]:
            source = KnowledgeSource.objects.filter(name=data.validated_data["source"]).first()
            if source is None:
                raise NotFound(f"source: no source named {data.validated_data['source']!r}")
        job, created = services.sync_job_queue(
            source=source,
            full=data.validated_data["full"],
            backend=settings.KB_BACKEND,
            user=request.user,
        )
        body: dict[str, Any] = {"job_id": job.pk, "status": job.status}
        if not created:
            scope = f"source {job.source.name!r}" if job.source else "all sources"
            body["existing"] = True
            body["message"] = (
                f"A sync of {scope} is already {job.status} (job {job.pk}); "
                "this request joins it instead of starting a second one."
            )
        return Response(body, status=status.HTTP_202_ACCEPTED)


class KbJobApi(APIView):
    permission_classes = [IsAgent]

    @extend_schema(operation_id="kb_job", parameters=[JOB_ID], responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, job_id: str) -> Response:
        return Response(job_data(selectors.job_get(job_id)))


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(f"{name}: an integer is required") from None
    if not low <= value <= high:
        raise InvalidInput(f"{name}: must be between {low} and {high}")
    return value


class KbSearchApi(APIView):
    """``GET /api/kb/search?q=&k=&source=&tag=`` (source and tag may repeat)."""

    permission_classes = [IsAgent]

    @extend_schema(
        operation_id="kb_search",
        parameters=[
            OpenApiParameter(
                "q",
                str,
                required=True,
                description="What to look for.",
                examples=[OpenApiExample("q", value="refund policy")],
            ),
            OpenApiParameter("k", int, description="How many passages (1-50, default 5)."),
            OpenApiParameter("source", str, many=True, description="Only these sources."),
            OpenApiParameter("tag", str, many=True, description="Only passages with a tag."),
        ],
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request: Request) -> Response:
        query = request.query_params.get("q", "").strip()
        if not query:
            raise InvalidInput("q: a search query is required")
        k = _int_param(request, "k", 5, 1, 50)
        results = selectors.kb_search(
            query,
            k=k,
            sources=request.query_params.getlist("source") or None,
            tags=request.query_params.getlist("tag") or None,
        )
        return Response({"query": query, "results": [r.as_dict() for r in results]})


class KbEventsApi(APIView):
    """S3 object events (EventBridge or S3 notification JSON), authenticated by a bearer
    token (``KB_EVENTS_TOKEN``): recorded once each, acknowledged, processed in Celery."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    throttle_classes = [PerIPRateThrottle]

    @extend_schema(
        operation_id="kb_events",
        description="Authenticated by `Authorization: Bearer <KB_EVENTS_TOKEN>`.",
        request=OpenApiTypes.OBJECT,
        responses={202: OpenApiTypes.OBJECT},
    )
    def post(self, request: Request) -> Response:
        expected = str(settings.KB_EVENTS_TOKEN)
        if not expected:
            raise Forbidden("KB events intake is off (KB_EVENTS_TOKEN is not set)")
        given = request.META.get("HTTP_AUTHORIZATION", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return Response(
                {"error": {"code": "unauthorized", "message": "bad token", "details": {}}},
                status=status.HTTP_401_UNAUTHORIZED,
            )
        events = parse_events(request.body, sns_fresh=True)
        recorded = services.object_events_intake(events, via="http")
        return Response(
            {"received": len(events), "new": len(recorded)}, status=status.HTTP_202_ACCEPTED
        )


class TicketSuggestionsApi(APIView):
    permission_classes = [IsAgent]

    @extend_schema(
        operation_id="tickets_suggestions",
        parameters=[
            TICKET_ID,
            OpenApiParameter("k", int, description="How many passages (1-10, default 3)."),
        ],
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request: Request, ticket_id: str) -> Response:
        from tickets.selectors import ticket_get_visible

        ticket = ticket_get_visible(ticket_id, user=request.user)
        k = _int_param(request, "k", 3, 1, 10)
        results = selectors.ticket_suggestions(ticket, k=k)
        return Response({"ticket": ticket.pk, "suggestions": [r.as_dict() for r in results]})


class SuggestionFeedbackInput(serializers.Serializer):
    helpful = serializers.BooleanField()
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)


class SuggestionFeedbackApi(APIView):
    permission_classes = [IsAgent]

    @extend_schema(
        operation_id="tickets_suggestions_feedback",
        parameters=[TICKET_ID, CHUNK_ID],
        request=SuggestionFeedbackInput,
        responses={201: OpenApiTypes.OBJECT},
        examples=[
            OpenApiExample("helpful", request_only=True, value={"helpful": True, "comment": ""})
        ],
    )
    def post(self, request: Request, ticket_id: str, chunk_id: str) -> Response:
        from tickets.selectors import ticket_get_visible

        ticket = ticket_get_visible(ticket_id, user=request.user)
        data = SuggestionFeedbackInput(data=request.data)
        if not data.is_valid():
            raise InvalidInput("Invalid feedback.", details=data.errors)
        feedback = services.suggestion_feedback_record(
            ticket=ticket,
            chunk_ref=chunk_id,
            user=request.user,
            helpful=data.validated_data["helpful"],
            comment=data.validated_data["comment"],
        )
        return Response(
            {
                "id": feedback.pk,
                "ticket": ticket.pk,
                "chunk_id": feedback.chunk_ref,
                "helpful": feedback.helpful,
            },
            status=status.HTTP_201_CREATED,
        )


class DraftRateThrottle(PerClientRateThrottle):
    """Drafts per agent per minute (``KB_DRAFT_RATE_LIMIT_PER_MINUTE``), on top of the
    API's own limit: each draft embeds sentences or calls a model."""

    def allow_request(self, request: Request, view: Any) -> bool:
        self._wait = hit(
            f"kb-draft:{request.user.pk}", int(settings.KB_DRAFT_RATE_LIMIT_PER_MINUTE)
        )
        return self._wait is None


def draft_data(draft: ReplyDraft) -> dict[str, Any]:
    return {
        "id": draft.pk,
        "ticket": draft.ticket_id,
        "channel": draft.channel,
        "text": draft.text,
        "citations": draft.citations,
        "score": round(draft.score, 6),
        "margin": round(draft.margin, 6),
        "provider": draft.provider,
        "fallback": bool(draft.fallback_reason),
        "outcome": draft.outcome,
        "created_at": draft.created_at.isoformat(),
    }


NO_DRAFT_MESSAGES = {
    "no_question": "The customer has not asked anything yet.",
    "no_results": "No knowledge-base article fits this ticket.",
    "low_score": "No knowledge-base article fits this ticket well enough for a draft.",
    "low_margin": "Several articles fit this ticket about equally: no draft, pick one below.",
}
DRAFT_ID = path_parameter(
    "draft_id", description="The draft's id.", pattern=r"^[0-9]{1,18}$", examples={"id": "1"}
)


class TicketDraftCreateApi(APIView):
    """A reply draft for the ticket from its best knowledge-base articles, with citations,
    in the format of the ticket's channel: 201 with the draft when retrieval is confident
    enough, else 200 with ``draft: null`` and the reason (the panel says no article fits)."""

    permission_classes = [IsAgent]
    throttle_classes = [PerClientRateThrottle, DraftRateThrottle]

    @extend_schema(
        operation_id="tickets_drafts_create",
        parameters=[TICKET_ID],
        request=None,
        responses={201: OpenApiTypes.OBJECT, 200: OpenApiTypes.OBJECT},
    )
    def post(self, request: Request, ticket_id: str) -> Response:
        from tickets.selectors import ticket_get_visible

        ticket = ticket_get_visible(ticket_id, user=request.user)
        offer = draft_services.reply_draft_create(ticket=ticket, user=request.user)
        if offer.draft is None:
            message = NO_DRAFT_MESSAGES.get(offer.gate.reason, "")
            if offer.gate.reason == "low_score":  # the figures the suggestions show beside
                message = (
                    f"{message[:-1]} (the best fits {offer.gate.score:.2f}; "
                    f"a draft needs {float(settings.KB_DRAFT_MIN_SCORE):.2f})."
                )
            return Response(
                {
                    "draft": None,
                    "reason": offer.gate.reason,
                    "message": message,
                    "score": round(offer.gate.score, 6),
                    "margin": round(offer.gate.margin, 6),
                }
            )
        return Response(
            {"draft": draft_data(offer.draft), "links_removed": offer.links_removed},
            status=status.HTTP_201_CREATED,
        )


class TicketDraftDiscardApi(APIView):
    """The agent discarded its draft (sent drafts are settled from the reply itself)."""

    permission_classes = [IsAgent]

    @extend_schema(
        operation_id="tickets_drafts_discard",
        parameters=[TICKET_ID, DRAFT_ID],
        request=None,
        responses={200: OpenApiTypes.OBJECT},
    )
    def post(self, request: Request, ticket_id: str, draft_id: str) -> Response:
        from tickets.selectors import ticket_get_visible

        ticket = ticket_get_visible(ticket_id, user=request.user)
        draft = draft_services.reply_draft_get(ticket=ticket, draft_id=draft_id, user=request.user)
        draft = draft_services.reply_draft_discard(draft=draft)
        return Response({"draft": draft_data(draft)})


class KbFeedbackApi(APIView):
    """Supervisors: every feedback entry (newest first), per-document totals and the
    reply-draft outcomes (offered, sent as drafted, edited, discarded)."""

    permission_classes = [IsSupervisor]

    @extend_schema(operation_id="kb_feedback", responses=OpenApiTypes.OBJECT)
    def get(self, request: Request) -> Response:
        entries = [
            {
                "ticket": f.ticket_id,
                "chunk_id": f.chunk_ref,
                "document": f.document.title if f.document else None,
                "helpful": f.helpful,
                "comment": f.comment,
                "user": f.user.username,
                "created_at": f.created_at.isoformat(),
            }
            for f in selectors.feedback_list()[:200]
        ]
        return Response(
            {
                "entries": entries,
                "documents": list(selectors.feedback_summary()),
                "drafts": selectors.reply_draft_summary(),
            }
        )


# What a multipart body may hold besides the file (boundaries, headers, the source
# field): a body bigger than the file cap plus this is refused before it is parsed.
UPLOAD_FORM_OVERHEAD_BYTES = 64 * 1024


def prefers_async(request: Request) -> bool:
    """Whether the request's ``Prefer`` header (RFC 7240: comma-separated preferences,
    each maybe with parameters) asks for ``respond-async``."""
    preferences = request.headers.get("Prefer", "")  # several headers arrive comma-joined
    return any(
        p.split(";", 1)[0].split("=", 1)[0].strip().lower() == "respond-async"
        for p in preferences.split(",")
    )


class KbDocumentUploadApi(APIView):
    """``POST /api/kb/documents`` (multipart ``file``, optional ``source``, default
    ``uploads``): parse and ingest one file now; the id is the file name (re-uploading the
    same name replaces the document, an identical upload is a no-op). With ``Prefer:
    respond-async`` the file is stored, 202 answers the upload job (``GET
    /api/kb/jobs/{id}``, also the ``Location``) and a worker ingests it."""

    permission_classes = [IsSupervisor]
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        operation_id="kb_documents_upload",
        request={
            "multipart/form-data": inline_serializer(
                "KbDocumentUpload",
                {
                    "file": serializers.FileField(),
                    "source": serializers.CharField(required=False, max_length=100),
                },
            )
        },
        parameters=[
            OpenApiParameter(
                "Prefer",
                str,
                OpenApiParameter.HEADER,
                description="`respond-async`: store the file, answer 202 with the upload "
                "job and ingest it in a worker (default: ingest now, 201/400).",
            )
        ],
        responses={
            201: OpenApiTypes.OBJECT,
            202: OpenApiTypes.OBJECT,
            400: OpenApiTypes.OBJECT,
            413: OpenApiTypes.OBJECT,
        },
    )
    def post(self, request: Request) -> Response:
        # Checked on the declared length before the body is parsed: the multipart parser
        # would copy a body of any size to a temporary file first.
        declared = content_length(request.META.get("CONTENT_LENGTH")) or 0
        if declared > services.UPLOAD_MAX_BYTES + UPLOAD_FORM_OVERHEAD_BYTES:
            raise services.upload_too_large(f"file: the request is {declared:,} bytes")
        upload = request.FILES.get("file")
        if upload is None:
            raise InvalidInput("file: a file is required")
        name = services.upload_name_check(filename=upload.name or "", size=upload.size or 0)
        source = services.upload_source_get(str(request.data.get("source") or "uploads"))
        if prefers_async(request):
            job = services.upload_job_queue(
                source=source, filename=name, data=upload.read(), user=request.user
            )
            response = Response(job_data(job), status=status.HTTP_202_ACCEPTED)
            response["Preference-Applied"] = "respond-async"
            response["Location"] = reverse("api-kb-job", kwargs={"job_id": job.pk})
            return response
        counts = services.upload_ingest(source=source, filename=name, data=upload.read())
        return Response(
            {"source": source.name, **counts.as_dict(), "errors": counts.errors},
            status=status.HTTP_201_CREATED if not counts.failed else status.HTTP_400_BAD_REQUEST,
        )
