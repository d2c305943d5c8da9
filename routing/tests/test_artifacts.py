"""Router artifacts are signed, and unverified bytes are never unpickled (issue #13, Low)."""

from __future__ import annotations

import hashlib
import io
import pickle
from typing import Any

import joblib
import pytest
from django.core.management import call_command

from routing import artifacts, services
from routing.artifacts import ArtifactError, artifact_dump, artifact_load
from routing.classifier import TextRouter
from routing.models import RouterModel

EXPLODED: list[str] = []


def _explode(marker: str) -> str:
    EXPLODED.append(marker)
    return marker


class Payload:
    """Unpickling this calls ``_explode``: what a hostile artifact would do."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (_explode, ("code ran",))


@pytest.fixture(autouse=True)
def _reset() -> None:
    EXPLODED.clear()


def _joblib(obj: Any) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(obj, buffer, compress=3)
    return buffer.getvalue()


def test_round_trip():
    assert artifact_load(artifact_dump({"labels": ["a", "b"]})) == {"labels": ["a", "b"]}


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: _joblib(Payload()), id="unsigned joblib (the old format)"),
        pytest.param(lambda: pickle.dumps(Payload()), id="plain pickle"),
        pytest.param(
            lambda: artifacts.HEADER + b"\0" * artifacts.MAC_SIZE + _joblib(Payload()),
            id="header with a forged signature",
        ),
        pytest.param(
            lambda: artifact_dump({"ok": 1})[: -len(_joblib({"ok": 1}))] + _joblib(Payload()),
            id="valid signature, payload swapped",
        ),
    ],
)
def test_tampered_or_unsigned_bytes_are_refused_unread(make):
    with pytest.raises(ArtifactError):
        artifact_load(make())
    assert EXPLODED == []


def test_a_key_that_is_not_ours_is_refused(settings):
    settings.ROUTER_ARTIFACT_KEY = "attacker-key"
    forged = artifact_dump(Payload())
    EXPLODED.clear()
    settings.ROUTER_ARTIFACT_KEY = "our-key"
    with pytest.raises(ArtifactError, match="signature mismatch"):
        artifact_load(forged)
    assert EXPLODED == []


def test_key_defaults_to_secret_key_and_survives_its_rotation(settings):
    settings.ROUTER_ARTIFACT_KEY = ""
    settings.SECRET_KEY = "old-secret"
    signed = artifact_dump({"v": 1})
    settings.SECRET_KEY = "new-secret"
    with pytest.raises(ArtifactError):
        artifact_load(signed)
    settings.SECRET_KEY_FALLBACKS = ["old-secret"]
    assert artifact_load(signed) == {"v": 1}


@pytest.mark.django_db
def test_a_tampered_active_model_is_refused_then_resigned_by_an_operator(bitext_router):
    row = services.router_model_save(router=bitext_router, name="tampered", training={})
    evil = _joblib(Payload())
    RouterModel.objects.filter(pk=row.pk).update(
        artifact=evil, artifact_sha256=hashlib.sha256(evil).hexdigest()
    )
    with pytest.raises(ArtifactError, match="router_artifacts_sign"):
        services.router_active()
    assert EXPLODED == []

    out = io.StringIO()
    call_command("router_artifacts_sign", stdout=out, stderr=io.StringIO())
    assert f"{row.pk} tampered v1 (active): REFUSED" in out.getvalue()
    assert EXPLODED == []

    # An operator who trusts these bytes (e.g. models stored before signing) re-signs them.
    legit = _joblib(bitext_router)
    RouterModel.objects.filter(pk=row.pk).update(
        artifact=legit, artifact_sha256=hashlib.sha256(legit).hexdigest()
    )
    out = io.StringIO()
    call_command("router_artifacts_sign", "--trust-unverified", stdout=out)
    assert "re-signed" in out.getvalue()
    router, active = services.router_active()
    assert active.pk == row.pk
    assert isinstance(router, TextRouter)
    assert router.labels == bitext_router.labels


@pytest.mark.django_db
def test_the_shipped_default_model_is_signed_and_loads():
    row = services.router_model_ensure_default()
    assert bytes(row.artifact).startswith(artifacts.HEADER)
    router, active = services.router_active()
    assert active.pk == row.pk
    assert router.predict("I want to cancel my order").label
    out = io.StringIO()
    call_command("router_artifacts_sign", stdout=out)
    assert out.getvalue().strip().endswith("signature ok")
