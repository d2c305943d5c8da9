"""An unset ENVIRONMENT is the safe configuration: DEBUG off, production rules, and a clear
message when a required setting is missing. DEBUG is on only with ENVIRONMENT=dev."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from cryptography.fernet import Fernet

from support.testing.processes import python_run

PROBE = (
    "import json; from django.conf import settings; print(json.dumps({"
    "'DEBUG': settings.DEBUG, 'ENVIRONMENT': settings.ENVIRONMENT, "
    "'SECURE_SSL_REDIRECT': settings.SECURE_SSL_REDIRECT, "
    "'SESSION_COOKIE_SECURE': settings.SESSION_COOKIE_SECURE}))"
)
CLEARED = (
    "ENVIRONMENT",
    "DEBUG",
    "SECRET_KEY",
    "ALLOWED_HOSTS",
    "SITE_URL",
    "DATABASE_URL",
    "REDIS_URL",
)
REQUIRED = {
    "SECRET_KEY": "a-long-random-secret-key-for-this-test-only-0123456789abcdef",
    "ALLOWED_HOSTS": "support.example.com",
    "SITE_URL": "https://support.example.com",
    "DATABASE_URL": "postgresql://user:pass@db.example.com:5432/support",
    "REDIS_URL": "redis://redis.example.com:6379/0",
    "CHANNELS_SECRETS_KEY": Fernet.generate_key().decode(),
}


def _load_settings(**overrides: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in CLEARED and not k.startswith(("DB_", "PGHOST"))
    }
    env.update(DJANGO_SETTINGS_MODULE="support.settings", **overrides)
    return python_run(["-c", PROBE], env=env)


def test_unset_environment_is_production_without_debug() -> None:
    result = _load_settings(**REQUIRED)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "DEBUG": False,
        "ENVIRONMENT": "prod",
        "SECURE_SSL_REDIRECT": True,
        "SESSION_COOKIE_SECURE": True,
    }


def test_unset_environment_names_what_is_missing() -> None:
    result = _load_settings()
    assert result.returncode != 0
    message = result.stderr.strip().splitlines()[-1]
    assert "ENVIRONMENT is not set, so the production rules apply" in message
    for name in ("ALLOWED_HOSTS", "DATABASE_URL", "REDIS_URL", "SECRET_KEY", "SITE_URL"):
        assert name in message
    assert "ENVIRONMENT=dev for local development" in message


def test_production_needs_an_https_site_url() -> None:
    """Links mailed to customers (the satisfaction survey's, e-mails, alerts) are built on
    SITE_URL: a production without it mailed http://127.0.0.1:8000 links."""
    without = {k: v for k, v in REQUIRED.items() if k != "SITE_URL"}
    for environment in ({"ENVIRONMENT": "prod"}, {}):
        missing = _load_settings(**without, **environment)
        assert missing.returncode != 0
        assert "SITE_URL" in missing.stderr.strip().splitlines()[-1]
        for plain in ("http://support.example.com", "support.example.com", "https://"):
            refused = _load_settings(**{**REQUIRED, "SITE_URL": plain}, **environment)
            assert refused.returncode != 0, plain
            assert (
                "SITE_URL must be the https:// address customers open in production"
                in refused.stderr
            ), plain
    # elsewhere the local default stands
    dev = python_run(
        ["-c", "from django.conf import settings; print(settings.SITE_URL)"],
        env={
            **{k: v for k, v in os.environ.items() if k not in CLEARED and k != "SITE_URL"},
            "DJANGO_SETTINGS_MODULE": "support.settings",
            "ENVIRONMENT": "dev",
        },
    )
    assert dev.stdout.strip().splitlines()[-1] == "http://127.0.0.1:8000", dev.stderr


def test_debug_is_on_only_where_dev_is_explicit() -> None:
    dev = _load_settings(ENVIRONMENT="dev")
    assert dev.returncode == 0, dev.stderr
    assert json.loads(dev.stdout)["DEBUG"] is True
    test = _load_settings(ENVIRONMENT="test")
    assert json.loads(test.stdout)["DEBUG"] is False


def test_debug_is_refused_in_production() -> None:
    """An explicit DEBUG=true must not turn tracebacks on in production (set or unset)."""
    for environment in ({"ENVIRONMENT": "prod"}, {}):
        result = _load_settings(**REQUIRED, **environment, DEBUG="true")
        assert result.returncode != 0
        assert "DEBUG=true is refused in production" in result.stderr


def test_secret_key_fallbacks_come_from_the_environment() -> None:
    probe = "from django.conf import settings; print(settings.SECRET_KEY_FALLBACKS)"
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env.update(DJANGO_SETTINGS_MODULE="support.settings", ENVIRONMENT="dev")
    env["SECRET_KEY_FALLBACKS"] = "old-key-one,old-key-two"
    result = python_run(["-c", probe], env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['old-key-one', 'old-key-two']"


MAIL_PROBE = (
    "import json; from django.conf import settings; print(json.dumps({k: getattr(settings, k) "
    "for k in ('EMAIL_BACKEND', 'EMAIL_FILE_PATH', 'EMAIL_HOST', 'EMAIL_PORT', "
    "'EMAIL_HOST_USER', 'EMAIL_USE_TLS', 'DEFAULT_FROM_EMAIL')}))"
)


def _mail_settings(**overrides: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in CLEARED and not k.startswith("EMAIL_")}
    env.update(DJANGO_SETTINGS_MODULE="support.settings", **overrides)
    return python_run(["-c", MAIL_PROBE], env=env)


def test_outgoing_mail_comes_from_the_environment() -> None:
    """Alert e-mails reach a real SMTP server in production (set from the environment);
    in development they are files, so the demo's alerts need no server."""
    prod = _mail_settings(
        **REQUIRED,
        EMAIL_HOST="email-smtp.eu-west-1.amazonaws.com",
        EMAIL_PORT="587",
        EMAIL_HOST_USER="AKIAEXAMPLE",
        EMAIL_HOST_PASSWORD="smtp-secret",
        EMAIL_USE_TLS="true",
        DEFAULT_FROM_EMAIL="alerts@example.com",
    )
    assert prod.returncode == 0, prod.stderr
    figures = json.loads(prod.stdout)
    assert figures["EMAIL_BACKEND"] == "django.core.mail.backends.smtp.EmailBackend"
    assert (figures["EMAIL_HOST"], figures["EMAIL_PORT"]) == (
        "email-smtp.eu-west-1.amazonaws.com",
        587,
    )
    assert (figures["EMAIL_HOST_USER"], figures["EMAIL_USE_TLS"]) == ("AKIAEXAMPLE", True)
    assert figures["DEFAULT_FROM_EMAIL"] == "alerts@example.com"
    assert "smtp-secret" not in prod.stdout + prod.stderr

    dev = _mail_settings(ENVIRONMENT="dev", DATA_DIR="/tmp/support-mail-probe")
    assert dev.returncode == 0, dev.stderr
    figures = json.loads(dev.stdout)
    assert figures["EMAIL_BACKEND"] == "django.core.mail.backends.filebased.EmailBackend"
    assert figures["EMAIL_FILE_PATH"] == "/tmp/support-mail-probe/mail"


def test_tls_and_ssl_together_are_refused() -> None:
    result = _mail_settings(ENVIRONMENT="dev", EMAIL_USE_TLS="true", EMAIL_USE_SSL="true")
    assert result.returncode != 0
    assert "EMAIL_USE_TLS and EMAIL_USE_SSL exclude each other" in result.stderr


BROKER_PROBE = (
    "import json; from support.celery import app; ssl = app.connection_for_write().ssl; "
    "print(json.dumps(ssl if ssl is None else {k: int(v) for k, v in ssl.items()}))"
)


def _broker_ssl(redis_url: str) -> object:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in CLEARED and not k.startswith(("DB_", "PGHOST"))
    }
    env.update(DJANGO_SETTINGS_MODULE="support.settings", **{**REQUIRED, "REDIS_URL": redis_url})
    result = python_run(["-c", BROKER_PROBE], env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_celery_broker_verifies_the_certificate_of_a_rediss_url() -> None:
    """ElastiCache with TLS (rediss://, the stack's REDIS_URL): the broker connection checks
    the server's certificate against the system CAs, like the cache and the channel layer
    (redis-py's default); kombu alone falls back to CERT_NONE, with a warning."""
    import ssl

    assert _broker_ssl("rediss://redis.example.com:6379/0") == {
        "ssl_cert_reqs": int(ssl.CERT_REQUIRED)
    }
    assert _broker_ssl("redis://redis.example.com:6379/0") is None  # plain Redis: no TLS


@pytest.mark.parametrize(
    ("site_url", "domain"),
    [
        ("https://support.example.com", "support.example.com"),
        ("https://Help.Example.COM:8443/desk/", "help.example.com"),
        ("http://127.0.0.1:8000", "support.local"),
        ("http://localhost:8000", "support.local"),
        ("http://[::1]:8000", "support.local"),
        ("http://desk.localhost", "support.local"),
        ("", "support.local"),
    ],
)
def test_message_ids_end_in_the_deployments_own_domain_by_default(
    site_url: str, domain: str
) -> None:
    """Deployments set SITE_URL (https://<DomainName>) but not the Message-ID domain, so
    every reply left as <reply-…@support.local>, a name no mail filter can check."""
    from support.env import message_id_domain_default

    assert message_id_domain_default(site_url) == domain


def test_a_deployment_without_a_message_id_domain_uses_its_site_url() -> None:
    probe = "from django.conf import settings; print(settings.CHANNELS_EMAIL_MESSAGE_ID_DOMAIN)"
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env.pop("CHANNELS_EMAIL_MESSAGE_ID_DOMAIN", None)
    env.update(DJANGO_SETTINGS_MODULE="support.settings", ENVIRONMENT="dev")
    env["SITE_URL"] = "https://support.example.com"
    result = python_run(["-c", probe], env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "support.example.com"
    env["CHANNELS_EMAIL_MESSAGE_ID_DOMAIN"] = "mail.example.org"  # set: it wins
    result = python_run(["-c", probe], env=env)
    assert result.stdout.strip().splitlines()[-1] == "mail.example.org"


DB_PROBE = (
    "import json; from django.conf import settings; "
    "print(json.dumps(settings.DATABASES['default'].get('OPTIONS', {}).get('sslmode')))"
)


def _database_sslmode(**overrides: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in CLEARED and not k.startswith(("DB_", "PGHOST"))
    }
    env.update(DJANGO_SETTINGS_MODULE="support.settings", **{**REQUIRED, **overrides})
    return python_run(["-c", DB_PROBE], env=env)


def _sslmode_of(result: subprocess.CompletedProcess[str]) -> object:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


RDS = "postgresql://user:pass@support.abc123.eu-west-1.rds.amazonaws.com:5432/support"


@pytest.mark.parametrize("environment", [{"ENVIRONMENT": "prod"}, {}])
def test_production_encrypts_a_remote_database_connection_by_default(
    environment: dict[str, str],
) -> None:
    """A DATABASE_URL without ?sslmode= (Elastic Beanstalk's, as documented) left libpq at
    sslmode=prefer: a connection that silently falls back to plain text. Production now
    asks for TLS from any database not on the machine, with either way of naming it."""
    assert _sslmode_of(_database_sslmode(DATABASE_URL=RDS, **environment)) == "require"
    parts = {
        "DB_HOST": "support.abc123.eu-west-1.rds.amazonaws.com",
        "DB_USER": "support",
        "DB_PASSWORD": "pw",
    }
    assert _sslmode_of(_database_sslmode(**parts, **environment)) == "require"
    # Stronger modes are kept as given.
    for mode in ("require", "verify-ca", "verify-full"):
        url = f"{RDS}?sslmode={mode}"
        assert _sslmode_of(_database_sslmode(DATABASE_URL=url, **environment)) == mode
        assert _sslmode_of(_database_sslmode(**parts, DB_SSLMODE=mode, **environment)) == mode


@pytest.mark.parametrize("mode", ["disable", "allow", "prefer", "Prefer"])
def test_production_refuses_a_database_connection_that_may_run_without_tls(mode: str) -> None:
    for overrides in (
        {"DATABASE_URL": f"{RDS}?sslmode={mode}"},
        {"DB_HOST": "db.internal", "DB_USER": "u", "DB_PASSWORD": "p", "DB_SSLMODE": mode},
    ):
        result = _database_sslmode(ENVIRONMENT="prod", **overrides)
        assert result.returncode != 0, overrides
        message = result.stderr.strip().splitlines()[-1]
        assert f"sslmode is {mode.lower()!r}" in message
        assert "production requires require, verify-ca or verify-full" in message
        assert "user:pass" not in result.stderr  # the URL's credentials stay out of it


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres@/support?host=/srv/support/.devdata/pg",  # make run, tests
        "postgresql://postgres@/support",  # libpq's default socket
        "postgresql://x@localhost/x",  # the image's build-time collectstatic
        "postgresql://u@127.0.0.1:5432/support",
        "postgresql://u@[::1]:5432/support",
    ],
)
def test_a_local_database_needs_no_tls_even_in_production(url: str) -> None:
    """A Unix socket or the loopback address never leaves the machine: production settings
    (the image's collectstatic, the deploy smoke test) keep libpq's default there."""
    assert _sslmode_of(_database_sslmode(ENVIRONMENT="prod", DATABASE_URL=url)) is None


def test_a_url_without_a_host_is_as_remote_as_the_pghost_libpq_reads() -> None:
    """``postgresql://u:p@/support`` names no host: libpq then connects to ``PGHOST`` (or
    ``PGHOSTADDR``), which the TLS check read as the local socket."""
    url = "postgresql://u:p@/support"
    for variable in ("PGHOST", "PGHOSTADDR"):
        remote = {variable: "10.0.3.7"}
        assert _sslmode_of(_database_sslmode(ENVIRONMENT="prod", DATABASE_URL=url, **remote)) == (
            "require"
        )
        refused = _database_sslmode(
            ENVIRONMENT="prod", DATABASE_URL=f"{url}?sslmode=prefer", **remote
        )
        assert refused.returncode != 0
        assert "sslmode is 'prefer'" in refused.stderr
    # a socket folder there is still local
    local = _database_sslmode(ENVIRONMENT="prod", DATABASE_URL=url, PGHOST="/var/run/postgresql")
    assert _sslmode_of(local) is None
    # but a hostaddr is where libpq connects, whatever the host says
    for overrides in (
        {"DATABASE_URL": url, "PGHOST": "/var/run/postgresql", "PGHOSTADDR": "10.0.3.7"},
        {"DATABASE_URL": "postgresql://u:p@localhost/support?hostaddr=10.0.3.7"},
    ):
        assert _sslmode_of(_database_sslmode(ENVIRONMENT="prod", **overrides)) == "require"
    loopback = "postgresql://u:p@localhost/support?hostaddr=127.0.0.1"
    assert _sslmode_of(_database_sslmode(ENVIRONMENT="prod", DATABASE_URL=loopback)) is None


def test_development_and_tests_leave_a_remote_database_as_configured() -> None:
    for environment in ("dev", "test"):
        assert _sslmode_of(_database_sslmode(ENVIRONMENT=environment, DATABASE_URL=RDS)) is None
        url = f"{RDS}?sslmode=disable"
        assert _sslmode_of(_database_sslmode(ENVIRONMENT=environment, DATABASE_URL=url)) == (
            "disable"
        )
