"""Django settings, all read from the environment through ``support.env``.

See ``.env.example`` and ``docs/settings.md`` for every variable.
"""

from __future__ import annotations

import ssl
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from support import env
from support.logging_context import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env.get_str("DATA_DIR", str(BASE_DIR / ".devdata")))

ENVIRONMENT = env.environment()
IS_PROD = ENVIRONMENT == "prod"
IS_TEST = ENVIRONMENT == "test"

SECRET_KEY = env.get_str(
    "SECRET_KEY",
    "django-insecure-local-development-key-never-used-in-production",
    required_in_prod=True,
)
# Earlier keys, still accepted for signatures (sessions, web chat tokens, router models)
# while a SECRET_KEY rotation settles; comma-separated.
SECRET_KEY_FALLBACKS = env.get_list("SECRET_KEY_FALLBACKS", [])
# On only where ENVIRONMENT=dev is set explicitly (an unset ENVIRONMENT means prod), and
# never in prod: tracebacks and settings would be shown to anyone.
DEBUG = env.get_bool("DEBUG", default=ENVIRONMENT == "dev")
if DEBUG and IS_PROD:
    raise ImproperlyConfigured(
        "DEBUG=true is refused in production (ENVIRONMENT=prod or unset): it shows "
        "tracebacks and settings to anyone. Set ENVIRONMENT=dev for local development."
    )
ALLOWED_HOSTS = env.get_list(
    "ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"], required_in_prod=True
)
CSRF_TRUSTED_ORIGINS = env.get_list("CSRF_TRUSTED_ORIGINS", [])
# The address customers open: the links we mail them (the satisfaction survey's, e-mails,
# alert notifications) are built on it. Required in production, and https there.
SITE_URL = env.get_str("SITE_URL", "http://127.0.0.1:8000", required_in_prod=True).rstrip("/")
if (
    IS_PROD
    and SITE_URL
    and not (SITE_URL.lower().startswith("https://") and urlsplit(SITE_URL).hostname)
):
    raise ImproperlyConfigured(
        f"SITE_URL must be the https:// address customers open in production, not "
        f"{SITE_URL!r}: links in customers' e-mails and messages are built on it."
    )

INSTALLED_APPS = [
    # django.contrib.admin with the project's site (support/admin_site.py)
    "support.admin_site.SupportAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.postgres",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "axes",  # login lockout (before "support", whose admin replaces axes' attempt admin)
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "corsheaders",
    "channels",
    "mozilla_django_oidc",
    "support",
    "support.delivery",
    "tickets",
    "channels_app",
    "knowledge",
    "calls",
    "routing",
    "events_out",
    "alerts",
    # Supervisor dashboard (issue #16): widgets discovered from each app's dashboard_widgets.py.
    "dashboard",
]

MIDDLEWARE = [
    # Request metrics (obs/metrics2): outermost, so it times and counts every answer,
    # probes and /metrics included (support/request_metrics.py).
    "support.request_metrics.RequestMetricsMiddleware",
    # First: the health probes answer whatever the Host header (load balancer checks send
    # the target's IP) without passing the host check that guards every other path.
    "support.middleware.HealthProbeMiddleware",
    # Request id, user and ticket on every log line, and one line per request.
    "support.logging_context.RequestContextMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "support.csp.ContentSecurityPolicyMiddleware",
    # CORS before anything that can answer (WhiteNoise, CommonMiddleware's redirects) and
    # before CSRF: it answers preflights itself; CSP still covers its responses.
    "corsheaders.middleware.CorsMiddleware",
    # The web chat widget's paths, which corsheaders leaves out (any origin, no
    # credentials): preflights, and the headers on every answer there, 500s included.
    "channels_app.api.cors.WebchatCorsMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "support.middleware.RejectNulCharactersMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a lockout into the lockout page
]

ROOT_URLCONF = "support.urls"
ASGI_APPLICATION = "support.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "support.context_processors.product",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------
_default_db_url = f"postgresql://postgres@/support?host={DATA_DIR / 'pg'}"
_db: dict[str, Any]
if env.get_str("DB_HOST"):
    # Separate parts, as ECS injects them from Secrets Manager (see deploy/cloudformation).
    _db = {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": env.get_str("DB_HOST"),
        "PORT": env.get_str("DB_PORT", "5432"),
        "NAME": env.get_str("DB_NAME", "support"),
        "USER": env.get_str("DB_USER", required_in_prod=True),
        "PASSWORD": env.get_str("DB_PASSWORD", required_in_prod=True),
        "CONN_MAX_AGE": 0,
        "OPTIONS": {"sslmode": env.get_str("DB_SSLMODE", "require" if IS_PROD else "prefer")},
    }
else:
    _db = dict(
        dj_database_url.parse(
            env.get_str("DATABASE_URL", _default_db_url, required_in_prod=True) or _default_db_url,
            conn_max_age=0,
        )
    )

# Production encrypts every database connection that leaves the machine: libpq's own
# default (sslmode=prefer) falls back to plain text without a word, and a DATABASE_URL
# without ?sslmode= (as Elastic Beanstalk's was documented) used it. A remote host in
# production gets sslmode=require unless it names require, verify-ca or verify-full, and a
# weaker mode (disable, allow, prefer) refuses to start. A local database (a Unix socket,
# as `make run` and the tests use, or the loopback address) is not asked for TLS.
DATABASE_TLS_SSLMODES = ("require", "verify-ca", "verify-full")
_DATABASE_LOCAL_HOSTS = {"", "localhost", "127.0.0.1", "::1"}


def _database_hosts(db: dict[str, Any]) -> list[str]:
    """The hosts libpq will connect to: HOST, or a URL's ``?host=`` (a socket folder), or
    else libpq's own ``PGHOST`` / ``PGHOSTADDR`` environment variables (a URL naming no
    host connects where they say); libpq takes a comma-separated list. Empty: libpq's
    default Unix socket."""
    hosts = str(
        db.get("HOST")
        or db.get("OPTIONS", {}).get("host")
        or env.get_str("PGHOST")
        or env.get_str("PGHOSTADDR")
    )
    return [host.strip().strip("[]") for host in hosts.split(",")]


def _database_addresses(db: dict[str, Any]) -> list[str]:
    """libpq's ``hostaddr`` (the URL's ``?hostaddr=``, else ``PGHOSTADDR``): when set, the
    address it connects to whatever the host says (the host then only names the server)."""
    addresses = str(db.get("OPTIONS", {}).get("hostaddr") or env.get_str("PGHOSTADDR"))
    return [a.strip().strip("[]") for a in addresses.split(",") if a.strip()]


def _database_is_local(db: dict[str, Any]) -> bool:
    return all(
        host.startswith("/") or host.lower() in _DATABASE_LOCAL_HOSTS
        for host in _database_hosts(db)
    ) and all(address in _DATABASE_LOCAL_HOSTS for address in _database_addresses(db))


if IS_PROD and not _database_is_local(_db):
    _db_options = _db.setdefault("OPTIONS", {})
    _sslmode = str(_db_options.get("sslmode") or "require").strip().lower()
    if _sslmode not in DATABASE_TLS_SSLMODES:
        raise ImproperlyConfigured(
            f"The database connection's sslmode is {_sslmode!r}, which lets it run without "
            "TLS: production requires require, verify-ca or verify-full for a database "
            "that is not on this machine (DB_SSLMODE with DB_HOST, ?sslmode= in "
            "DATABASE_URL; unset is require). RDS accepts TLS as it is. See "
            "docs/settings.md."
        )
    _db_options["sslmode"] = _sslmode
if env.get_bool("DB_POOL", default=not IS_TEST):
    _db.setdefault("OPTIONS", {})["pool"] = {
        "min_size": env.get_int("DB_POOL_MIN", 2),
        "max_size": env.get_int("DB_POOL_MAX", 20),
        "timeout": env.get_int("DB_POOL_TIMEOUT", 10),
    }
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: cache, Celery broker, Channels layer ---------------------------
REDIS_URL = env.get_str("REDIS_URL", "redis://127.0.0.1:6390/0", required_in_prod=True)
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "support",
        "TIMEOUT": 300,
        "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
    }
}
# The channel layer waits for a socket's next event with a blocking BZPOPMIN of up to 5 s
# (channels_redis' RedisChannelLayer.brpop_timeout). redis-py 8 gives every connection a 5 s
# read timeout by default, so an idle workbench's wait ended in a TimeoutError that closed
# its websocket every few seconds (the page reconnected, the log filled with tracebacks):
# the read timeout has to outlast the blocking pop, and still catch a dead connection.
CHANNEL_LAYER_SOCKET_TIMEOUT = 15.0
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            "hosts": [
                {
                    "address": REDIS_URL,
                    "socket_timeout": CHANNEL_LAYER_SOCKET_TIMEOUT,
                    "socket_connect_timeout": 5,
                }
            ],
            "prefix": "support-ws",
            "capacity": 1000,
        },
    }
}
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
# Flash messages in the session, not in a cookie: the admin shows one-time secrets (a new
# API key, a webhook's signing secret) as a message after a redirect, and Django's default
# (cookie first) sent them to the browser in a signed but readable ``messages`` cookie.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

CELERY_BROKER_URL = REDIS_URL
# rediss:// (ElastiCache with TLS): verify the server's certificate against the system CAs,
# as redis-py does for the cache and the channel layer; kombu alone would not (CERT_NONE).
CELERY_BROKER_USE_SSL = (
    {"ssl_cert_reqs": ssl.CERT_REQUIRED} if REDIS_URL.startswith("rediss://") else None
)
CELERY_RESULT_BACKEND = None  # no results kept (a Redis result backend would need the same)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SOFT_TIME_LIMIT = env.get_int("CELERY_TASK_SOFT_TIME_LIMIT", 120)
CELERY_TASK_TIME_LIMIT = env.get_int("CELERY_TASK_TIME_LIMIT", 180)
CELERY_WORKER_PREFETCH_MULTIPLIER = 4
# Two queues: "realtime" holds what a person is waiting for (a received message reaching its
# ticket, events reaching the workbench, a reply leaving); "celery" the enrichment behind it
# (routing, sentiment, knowledge base, calls). Each has a worker of its own, locally and
# deployed (scripts/processes.py), "realtime" at a higher priority, so a burst of routing
# work never delays intake.
CELERY_TASK_DEFAULT_QUEUE = "celery"
REALTIME_QUEUE = "realtime"
CELERY_TASK_ROUTES = {
    name: {"queue": REALTIME_QUEUE}
    for name in (
        "support.tasks.outbox_relay_task",
        "channels_app.tasks.inbound_events_drain_task",
        "channels_app.tasks.inbound_event_process_task",
        "channels_app.tasks.outbound_message_send_task",
        # SLA pages: raised in the relay itself before they became tasks, so not queued
        # behind routing or knowledge-base work on the default queue
        "alerts.tasks.sla_event_handle_task",
        "alerts.tasks.sla_alerts_resolve_task",
    )
}
# (support.delivery's attempt task picks its queue per target kind: channel replies and
# web chat codes go to "realtime", the CRM and ticketing syncs to the default queue.)
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ALWAYS_EAGER = env.get_bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "outbox-relay-sweep": {"task": "support.tasks.outbox_relay_task", "schedule": 15.0},
    "outbox-purge": {"task": "support.tasks.outbox_purge_task", "schedule": 3600.0},
    "raw-events-purge": {"task": "support.tasks.raw_events_purge_task", "schedule": 3600.0},
    # The knowledge base's common words (knowledge.models.CommonLexeme) are counted after each
    # ingestion and deletion; this is the safety net.
    "kb-common-lexemes-count": {
        "task": "knowledge.tasks.kb_common_lexemes_count_task",
        "schedule": 3600.0,
    },
}

# Outbound delivery engine (support.delivery; docs/operations.md "Outbound deliveries").
# The one sweep: how often, how long a delivery may be overdue before it picks it up (its
# own task normally runs first), and how many it enqueues per run.
DELIVERY_SWEEP_SECONDS = env.get_float("DELIVERY_SWEEP_SECONDS", 15.0)
DELIVERY_SWEEP_GRACE_SECONDS = env.get_float("DELIVERY_SWEEP_GRACE_SECONDS", 30.0)
DELIVERY_SWEEP_BATCH = env.get_int("DELIVERY_SWEEP_BATCH", 500)
# How long a claim holds a delivery; keep it above the attempt task's hard limit (90 s), so
# an expired lease always belongs to a worker that is gone.
DELIVERY_LEASE_SECONDS = env.get_float("DELIVERY_LEASE_SECONDS", 120.0)
# Circuit breaking per target: this many consecutive failures (5xx, timeouts, 429, refused
# credentials) pause the target for the cool-off, then one probe decides; 0 switches the
# count off (a Retry-After or refused credentials still pause it).
DELIVERY_CIRCUIT_FAILURES = env.get_int("DELIVERY_CIRCUIT_FAILURES", 10)
DELIVERY_CIRCUIT_COOLOFF_SECONDS = env.get_float("DELIVERY_CIRCUIT_COOLOFF_SECONDS", 60.0)
# The longest Retry-After honoured (a target asking for more waits this long).
DELIVERY_RETRY_AFTER_MAX_SECONDS = env.get_float("DELIVERY_RETRY_AFTER_MAX_SECONDS", 900.0)
CELERY_BEAT_SCHEDULE["delivery-sweep"] = {
    "task": "support.delivery.tasks.delivery_sweep_task",
    "schedule": DELIVERY_SWEEP_SECONDS,
}
# Finished deliveries and their attempt logs (recipients, bodies' summaries, errors) are
# deleted this many days after they finished (support.delivery.services.deliveries_purge,
# hourly); open ones, dead letters a re-drive could still send, possible duplicates and
# given-up status updates are kept. 0: never.
DELIVERY_RETENTION_DAYS = env.get_int("DELIVERY_RETENTION_DAYS", 90)
CELERY_BEAT_SCHEDULE["delivery-purge"] = {
    "task": "support.delivery.tasks.deliveries_purge_task",
    "schedule": 3600.0,
}

# Events out (events_out; docs/operations.md "Events out"): the outbox relay's external
# sinks, each send a delivery. Each is off until configured.
# Amazon EventBridge: PutEvents on this bus (empty: off), with this source.
EVENTS_EVENTBRIDGE_BUS = env.get_str("EVENTS_EVENTBRIDGE_BUS")
EVENTS_EVENTBRIDGE_SOURCE = env.get_str("EVENTS_EVENTBRIDGE_SOURCE", "support.ticketing")
EVENTS_EVENTBRIDGE_REGION = env.get_str("EVENTS_EVENTBRIDGE_REGION")  # empty: AWS_REGION
EVENTS_EVENTBRIDGE_MAX_ATTEMPTS = env.get_int("EVENTS_EVENTBRIDGE_MAX_ATTEMPTS", 8)
# Outgoing webhooks (configured by supervisors in the admin): signed POSTs.
OUTGOING_WEBHOOKS_ENABLED = env.get_bool("OUTGOING_WEBHOOKS_ENABLED", default=True)
OUTGOING_WEBHOOKS_TIMEOUT = env.get_float("OUTGOING_WEBHOOKS_TIMEOUT", 10.0)
OUTGOING_WEBHOOKS_MAX_ATTEMPTS = env.get_int("OUTGOING_WEBHOOKS_MAX_ATTEMPTS", 10)
# Local development only: plain http URLs, and hosts on loopback/private/link-local networks
# (the default refuses them: a webhook must not reach internal services or cloud metadata).
OUTGOING_WEBHOOKS_ALLOW_HTTP = env.get_bool("OUTGOING_WEBHOOKS_ALLOW_HTTP", default=False)
OUTGOING_WEBHOOKS_ALLOW_PRIVATE_NETWORKS = env.get_bool(
    "OUTGOING_WEBHOOKS_ALLOW_PRIVATE_NETWORKS", default=False
)
# Kafka (seed 001's topics): comma-separated bootstrap servers (empty: off).
EVENTS_KAFKA_BOOTSTRAP_SERVERS = env.get_list("EVENTS_KAFKA_BOOTSTRAP_SERVERS")
EVENTS_KAFKA_TOPIC_TICKETS = env.get_str("EVENTS_KAFKA_TOPIC_TICKETS", "support-tickets")
EVENTS_KAFKA_TOPIC_MESSAGES = env.get_str("EVENTS_KAFKA_TOPIC_MESSAGES", "support-messages")
EVENTS_KAFKA_SECURITY_PROTOCOL = env.get_str("EVENTS_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")
EVENTS_KAFKA_SASL_MECHANISM = env.get_str("EVENTS_KAFKA_SASL_MECHANISM")  # e.g. SCRAM-SHA-512
EVENTS_KAFKA_SASL_USERNAME = env.get_str("EVENTS_KAFKA_SASL_USERNAME")
EVENTS_KAFKA_SASL_PASSWORD = env.get_str("EVENTS_KAFKA_SASL_PASSWORD")
EVENTS_KAFKA_TIMEOUT = env.get_float("EVENTS_KAFKA_TIMEOUT", 10.0)
EVENTS_KAFKA_MAX_ATTEMPTS = env.get_int("EVENTS_KAFKA_MAX_ATTEMPTS", 8)

# Alerts (alerts; docs/alerts.md): alarm rules evaluated on a schedule, alerts, and
# notifications through the delivery engine (targets are configured in the admin).
ALERTS_EVALUATION_SECONDS = env.get_float("ALERTS_EVALUATION_SECONDS", 60.0)
ALERTS_EVALUATIONS_RETENTION_DAYS = env.get_int("ALERTS_EVALUATIONS_RETENTION_DAYS", 14)
ALERTS_NOTIFY_MAX_ATTEMPTS = env.get_int("ALERTS_NOTIFY_MAX_ATTEMPTS", 8)
# Slack and PagerDuty calls (and SNS's connect/read timeouts), in seconds.
ALERTS_HTTP_TIMEOUT = env.get_float("ALERTS_HTTP_TIMEOUT", 10.0)
ALERTS_EMAIL_TIMEOUT = env.get_float("ALERTS_EMAIL_TIMEOUT", 10.0)
ALERTS_EMAIL_FROM = env.get_str("ALERTS_EMAIL_FROM")  # empty: DEFAULT_FROM_EMAIL
# Outgoing e-mail (alert notifications) through Django's mail backend: an SMTP server (for
# example Amazon SES's SMTP endpoint) in production; in development, files under
# DATA_DIR/mail (no server needed: `make run`'s demo alerts can be read there).
EMAIL_BACKEND = env.get_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.filebased.EmailBackend"
    if ENVIRONMENT == "dev"
    else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_FILE_PATH = env.get_str("EMAIL_FILE_PATH", str(DATA_DIR / "mail"))
EMAIL_HOST = env.get_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env.get_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env.get_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env.get_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env.get_bool("EMAIL_USE_TLS", default=False)  # STARTTLS (port 587)
EMAIL_USE_SSL = env.get_bool("EMAIL_USE_SSL", default=False)  # implicit TLS (port 465)
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ImproperlyConfigured(
        "EMAIL_USE_TLS and EMAIL_USE_SSL exclude each other: TLS is STARTTLS (usually port "
        "587), SSL an encrypted connection from the start (usually 465). Set one."
    )
DEFAULT_FROM_EMAIL = env.get_str("DEFAULT_FROM_EMAIL", "support-desk@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
ALERTS_EMAIL_SUBJECT_PREFIX = env.get_str("ALERTS_EMAIL_SUBJECT_PREFIX", "[Support alert] ")
ALERTS_PAGERDUTY_EVENTS_URL = env.get_str(
    "ALERTS_PAGERDUTY_EVENTS_URL", "https://events.pagerduty.com/v2/enqueue"
)
# PagerDuty's payload.source / client: which installation raised the alert.
ALERTS_SOURCE_NAME = env.get_str("ALERTS_SOURCE_NAME", "support-desk")
# Local development only: plain http target URLs, and hosts on private networks.
ALERTS_TARGETS_ALLOW_HTTP = env.get_bool("ALERTS_TARGETS_ALLOW_HTTP", default=False)
ALERTS_TARGETS_ALLOW_PRIVATE_NETWORKS = env.get_bool(
    "ALERTS_TARGETS_ALLOW_PRIVATE_NETWORKS", default=False
)
CELERY_BEAT_SCHEDULE["alerts-evaluate"] = {
    "task": "alerts.tasks.alert_rules_evaluate_task",
    "schedule": ALERTS_EVALUATION_SECONDS,
}

# --- Auth -----------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
if IS_TEST:
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGIN_URL = "/accounts/login/"
# After sign-in: supervisors to the dashboard, agents to their inbox (tickets.views.landing).
LOGIN_REDIRECT_URL = "/start/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

OIDC_RP_CLIENT_ID = env.get_str("OIDC_RP_CLIENT_ID")
OIDC_ENABLED = env.get_bool("OIDC_ENABLED", default=bool(OIDC_RP_CLIENT_ID))
OIDC_RP_CLIENT_SECRET = env.get_str("OIDC_RP_CLIENT_SECRET")
OIDC_OP_AUTHORIZATION_ENDPOINT = env.get_str("OIDC_OP_AUTHORIZATION_ENDPOINT")
OIDC_OP_TOKEN_ENDPOINT = env.get_str("OIDC_OP_TOKEN_ENDPOINT")
OIDC_OP_USER_ENDPOINT = env.get_str("OIDC_OP_USER_ENDPOINT")
OIDC_OP_JWKS_ENDPOINT = env.get_str("OIDC_OP_JWKS_ENDPOINT")
OIDC_RP_SIGN_ALGO = env.get_str("OIDC_RP_SIGN_ALGO", "RS256")
OIDC_RP_SCOPES = env.get_str("OIDC_RP_SCOPES", "openid email profile")
OIDC_GROUPS_CLAIM = env.get_str("OIDC_GROUPS_CLAIM", "cognito:groups")
OIDC_SUPERVISOR_GROUPS = env.get_list("OIDC_SUPERVISOR_GROUPS", ["Supervisors"])
OIDC_AGENT_GROUPS = env.get_list("OIDC_AGENT_GROUPS", ["Agents"])
OIDC_TIMEOUT = env.get_int("OIDC_TIMEOUT", 10)
# Tokens are verified here (support.auth.tokens), for browser sign-in (the ID token) and API
# bearer tokens alike: RS256 signature against the provider's JWKS, issuer, audience (our
# client id: `aud`, or `client_id` on a Cognito access token) and expiry (with leeway).
# A Cognito issuer is its JWKS URL without "/.well-known/jwks.json", the default here.
_jwks_suffix = "/.well-known/jwks.json"
OIDC_OP_ISSUER = env.get_str(
    "OIDC_OP_ISSUER",
    OIDC_OP_JWKS_ENDPOINT.removesuffix(_jwks_suffix)
    if OIDC_OP_JWKS_ENDPOINT.endswith(_jwks_suffix)
    else "",
)
OIDC_JWKS_CACHE_SECONDS = env.get_int("OIDC_JWKS_CACHE_SECONDS", 3600)
# A token naming a key we do not have refreshes the JWKS at most this often (key rotation
# is seen at once; a flood of made-up key ids costs one fetch per interval).
OIDC_JWKS_MIN_REFRESH_SECONDS = env.get_int("OIDC_JWKS_MIN_REFRESH_SECONDS", 60)
OIDC_CLOCK_LEEWAY_SECONDS = env.get_int("OIDC_CLOCK_LEEWAY_SECONDS", 30)
if OIDC_ENABLED and not (OIDC_OP_JWKS_ENDPOINT and OIDC_OP_ISSUER):
    raise ImproperlyConfigured(
        "OIDC needs OIDC_OP_JWKS_ENDPOINT and OIDC_OP_ISSUER (derived from a Cognito JWKS URL)"
    )

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses locked-out sign-ins
    "django.contrib.auth.backends.ModelBackend",
]
if OIDC_ENABLED:
    AUTHENTICATION_BACKENDS.append("support.auth.oidc.GroupMappingOIDCBackend")

# Login lockout (django-axes; support/auth/lockout.py): after LOGIN_FAILURE_LIMIT failed
# password sign-ins (workbench or admin) the username, and separately the client IP, are
# locked for LOGIN_LOCKOUT_MINUTES after the last failure. Supervisors unlock in the admin
# (Axes → Access attempts); `manage.py axes_reset_username <name>` / `axes_reset_ip <ip>` too.
LOGIN_LOCKOUT_ENABLED = env.get_bool("LOGIN_LOCKOUT_ENABLED", default=True)
LOGIN_FAILURE_LIMIT = env.get_int("LOGIN_FAILURE_LIMIT", 5)
LOGIN_LOCKOUT_MINUTES = env.get_int("LOGIN_LOCKOUT_MINUTES", 15)
# What a lockout is counted per: "username", "ip_address", or "username+ip_address" (both
# together). Behind one shared NAT address use "username,username+ip_address".
LOGIN_LOCKOUT_PARAMETERS = env.get_list("LOGIN_LOCKOUT_PARAMETERS", ["username", "ip_address"])
AXES_ENABLED = LOGIN_LOCKOUT_ENABLED
AXES_FAILURE_LIMIT = LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = timedelta(minutes=LOGIN_LOCKOUT_MINUTES)
AXES_LOCKOUT_PARAMETERS = [p.split("+") if "+" in p else p for p in LOGIN_LOCKOUT_PARAMETERS]
if {n for p in LOGIN_LOCKOUT_PARAMETERS for n in p.split("+")} - {"username", "ip_address"}:
    raise ImproperlyConfigured(
        "LOGIN_LOCKOUT_PARAMETERS: comma-separated username, ip_address or username+ip_address"
    )
AXES_CLIENT_IP_CALLABLE = "support.auth.lockout.login_client_ip"
AXES_LOCKOUT_CALLABLE = "support.auth.lockout.lockout_response"
AXES_WHITELIST_CALLABLE = "support.auth.lockout.not_a_password_login"
AXES_USERNAME_CALLABLE = "support.auth.lockout.login_username"  # bounded to its column
AXES_RESET_ON_SUCCESS = False  # a success must not wipe an IP's failures on other names
AXES_DISABLE_ACCESS_LOG = True  # no row per successful sign-in; failures are what we keep

# --- API ------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "support.auth.authentication.ApiKeyAuthentication",
        "support.auth.authentication.OIDCBearerAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["support.auth.permissions.IsAgent"],
    "DEFAULT_THROTTLE_CLASSES": [
        "support.throttling.PerClientRateThrottle",
    ],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["support.api_parsers.JsonParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_VERSIONING_CLASS": "rest_framework.versioning.AcceptHeaderVersioning",
    "DEFAULT_VERSION": "1",
    "ALLOWED_VERSIONS": ["1"],
    "EXCEPTION_HANDLER": "support.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
if DEBUG:
    REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"].append(  # type: ignore[attr-defined]
        "rest_framework.renderers.BrowsableAPIRenderer"
    )
# --- CORS and the seeds' documented contracts (docs/api.md#seed-contracts) ----------
# Browser pages on these origins (scheme://host[:port], comma-separated) may call the API
# and the seed paths, with credentials; none by default. Other origins get no CORS header.
CORS_ALLOWED_ORIGINS = env.get_list("CORS_ALLOWED_ORIGINS", [])
CORS_ALLOW_CREDENTIALS = True
# The API (not the web chat widget's endpoints, which answer any origin through
# channels_app.api.cors.WebchatCorsMiddleware, nor the channels' server-to-server
# webhooks) and the seed paths mounted at the root.
CORS_URLS_REGEX = (
    r"^/(?:api/(?!webchat/|webhooks/)"
    r"|analytics(?:/[^/]*)?$"
    r"|tickets(?:/[^/]+(?:/context|/feedback)?)?$"
    r"|kb/sync$)"
)
CORS_ALLOW_HEADERS = (
    "accept",
    "authorization",
    "content-type",
    "idempotency-key",
    "x-api-key",
    "x-csrftoken",
    "x-requested-with",
)
CORS_EXPOSE_HEADERS = ("idempotent-replayed",)  # a retry's answer says so (docs/api.md)
CORS_PREFLIGHT_MAX_AGE = 600
# Mount each seed's documented paths (seed_api/); on by default.
SEED_CONTRACTS_ENABLED = env.get_bool("SEED_CONTRACTS_ENABLED", default=True)
# Seed 003's analytics API at /analytics without authentication ("None (configurable)"):
# anyone who can reach the host reads every call's analytics. Off by default.
SEED_ANALYTICS_PUBLIC = env.get_bool("SEED_ANALYTICS_PUBLIC", default=False)
API_RATE_LIMIT_PER_MINUTE = env.get_int("API_RATE_LIMIT_PER_MINUTE", 1200)
API_ANON_RATE_LIMIT_PER_MINUTE = env.get_int("API_ANON_RATE_LIMIT_PER_MINUTE", 120)
# Which X-Forwarded-For entries to believe (support.throttling.client_ip_from_meta): none
# by default (the socket address is the client); behind N proxies we run (an ALB: 1) the
# right-most address not written by them. TRUST_X_FORWARDED_FOR=true (older name) = 1 hop.
TRUSTED_PROXY_HOPS = env.get_int(
    "TRUSTED_PROXY_HOPS", 1 if env.get_bool("TRUST_X_FORWARDED_FOR", default=False) else 0
)
TRUSTED_PROXY_CIDRS = env.get_cidr_list("TRUSTED_PROXY_CIDRS")
# Failed API-key authentications per client IP and minute before further attempts get 429.
API_AUTH_FAILURE_LIMIT_PER_MINUTE = env.get_int("API_AUTH_FAILURE_LIMIT_PER_MINUTE", 20)
SPECTACULAR_SETTINGS = {
    "TITLE": "Support platform API",
    "DESCRIPTION": "Tickets, channels, routing, knowledge base and call analytics.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and its UI are for signed-in agents and agents' keys (docs/api.md).
    "SERVE_PERMISSIONS": ["support.auth.permissions.IsAgent"],
    "COMPONENT_SPLIT_REQUEST": True,
    # a choice set used by two request bodies (JSON and multipart) gets one name
    "ENUM_NAME_OVERRIDES": {
        "MessageCreateKindEnum": "tickets.api.serializers.MESSAGE_CREATE_KINDS",
        # two choice sets of fields named "status": each its own name (the tickets' kept
        # the one it had before orders were taken in, StatusEnum)
        "StatusEnum": "tickets.models.TicketStatus",
        "OrderStatusEnum": "tickets.context.models.OrderStatus",
    },
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Static and media files ----------------------------------------------
STATIC_URL = "/static/"
# Where collectstatic writes and WhiteNoise serves from (the image builds it at /app/staticfiles).
STATIC_ROOT = Path(env.get_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(env.get_str("MEDIA_ROOT", str(DATA_DIR / "media")))
S3_ENABLED = env.get_bool("S3_ENABLED", default=False)
# boto's own variable is AWS_DEFAULT_REGION (the AWS CLI's, and what many platforms set):
# used when AWS_REGION is not, so both name the region every client of ours uses.
AWS_REGION = env.get_str("AWS_REGION") or env.get_str("AWS_DEFAULT_REGION", "us-east-1")
# Every boto3 client (support/aws.py): connect/read timeouts in seconds, and attempts per
# call including the first (botocore "standard" retry mode). Call sites that need more say
# so: AWS_BEDROCK_READ_TIMEOUT for Bedrock generation, SQS long polls wait longer.
AWS_CONNECT_TIMEOUT = env.get_float("AWS_CONNECT_TIMEOUT", 5.0)
AWS_READ_TIMEOUT = env.get_float("AWS_READ_TIMEOUT", 30.0)
AWS_MAX_ATTEMPTS = env.get_int("AWS_MAX_ATTEMPTS", 3)
AWS_BEDROCK_READ_TIMEOUT = env.get_float("AWS_BEDROCK_READ_TIMEOUT", 60.0)
if AWS_CONNECT_TIMEOUT <= 0 or AWS_READ_TIMEOUT <= 0 or AWS_BEDROCK_READ_TIMEOUT <= 0:
    raise ImproperlyConfigured("AWS_*_TIMEOUT settings must be positive (seconds).")
if AWS_MAX_ATTEMPTS < 1:
    raise ImproperlyConfigured("AWS_MAX_ATTEMPTS must be at least 1 (the first try counts).")
AWS_STORAGE_BUCKET_NAME = env.get_str("AWS_STORAGE_BUCKET_NAME")
AWS_S3_REGION_NAME = AWS_REGION
AWS_DEFAULT_ACL = None
AWS_QUERYSTRING_AUTH = True
# How long a signed S3 URL (an agent's /attachments/<id> redirect) works, in seconds: for
# anyone who has it, so short (django-storages' default was an hour). S3 caps it at 7 days.
AWS_QUERYSTRING_EXPIRE = env.get_int("AWS_QUERYSTRING_EXPIRE", 120)
if not 1 <= AWS_QUERYSTRING_EXPIRE <= 604_800:
    raise ImproperlyConfigured("AWS_QUERYSTRING_EXPIRE must be 1 to 604800 seconds.")
STORAGES = {
    "default": {
        "BACKEND": "support.storage.S3Storage"
        if S3_ENABLED
        else "django.core.files.storage.FileSystemStorage",
    },
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not (DEBUG or IS_TEST)
        else "django.contrib.staticfiles.storage.StaticFilesStorage",
    },
}
DATA_UPLOAD_MAX_MEMORY_SIZE = env.get_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 26_214_400)
# The largest request body any endpoint takes (support/body_limit.py): above every
# endpoint's own cap (25 MiB e-mail webhooks and attachments), refused with 413 before the
# application reads it (a multipart body is otherwise written to temporary files whatever
# its size, even for an anonymous form POST). 0 switches it off.
REQUEST_MAX_BYTES = env.get_int("REQUEST_MAX_BYTES", 33_554_432)
# The files an agent attaches to one reply or note, all together (workbench and API;
# tickets.services.messages): 20 MB keeps an e-mail within SendGrid's 30 MB per message
# once base64 grows it by a third. Keep it below REQUEST_MAX_BYTES.
TICKET_REPLY_FILES_MAX_BYTES = env.get_int("TICKET_REPLY_FILES_MAX_BYTES", 20_000_000)

# --- Internationalisation ------------------------------------------------------
LANGUAGE_CODE = "en-us"
# Dates as the workbench writes them ("2026-12-04 17:30") wherever a page gives no format.
FORMAT_MODULE_PATH = ["support.formats"]
TIME_ZONE = env.get_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# --- Security -------------------------------------------------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
if IS_PROD:
    SECURE_SSL_REDIRECT = env.get_bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_REDIRECT_EXEMPT = [r"^health(/live|/ready)?$"]
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.get_int("SECURE_HSTS_SECONDS", 31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_REFERRER_POLICY = "same-origin"

# Content-Security-Policy on every response (django-csp; support/csp.py adds the websocket
# origins and the admin's inline styles). No 'unsafe-inline' / 'unsafe-eval' for scripts:
# every script is a static file. docs/workbench.md explains each directive.
SITE_CSP_REPORT_ONLY = env.get_bool("SITE_CSP_REPORT_ONLY", default=False)
SITE_CSP_REPORT_URI = env.get_str("SITE_CSP_REPORT_URI", "")
# Where attachment images/audio may load from besides this site: the S3 bucket that
# /attachments/<id> redirects to (signed URLs) when S3_ENABLED.
SITE_CSP_MEDIA_ORIGINS = env.get_list(
    "SITE_CSP_MEDIA_ORIGINS",
    [
        f"https://{AWS_STORAGE_BUCKET_NAME}.s3.amazonaws.com",
        f"https://{AWS_STORAGE_BUCKET_NAME}.s3.{AWS_REGION}.amazonaws.com",
    ]
    if S3_ENABLED and AWS_STORAGE_BUCKET_NAME
    else [],
)
_csp_policy: dict[str, Any] = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:", *SITE_CSP_MEDIA_ORIGINS],
        "media-src": ["'self'", *SITE_CSP_MEDIA_ORIGINS],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],  # + ws(s)://<host>, added per request
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
        **({"report-uri": [SITE_CSP_REPORT_URI]} if SITE_CSP_REPORT_URI else {}),
    }
}
if SITE_CSP_REPORT_ONLY:
    CONTENT_SECURITY_POLICY_REPORT_ONLY = _csp_policy
else:
    CONTENT_SECURITY_POLICY = _csp_policy

# --- Product behaviour -------------------------------------------------------
OUTBOX_RETENTION_DAYS = env.get_int("OUTBOX_RETENTION_DAYS", 14)
# Raw inbound events (webhook deliveries, call events) are deleted this many days after
# they were processed (support.retention); pending ones and dead letters are kept. 0: never.
RAW_EVENT_RETENTION_DAYS = env.get_int("RAW_EVENT_RETENTION_DAYS", 30)
# How long an Idempotency-Key of the API's creates is remembered (support.idempotency):
# a retry with the same key within it answers with what the first request created.
IDEMPOTENCY_KEY_RETENTION_HOURS = max(1, env.get_int("IDEMPOTENCY_KEY_RETENTION_HOURS", 24))
CELERY_BEAT_SCHEDULE["idempotency-keys-purge"] = {
    "task": "support.tasks.idempotency_keys_purge_task",
    "schedule": 3600.0,
}
HEALTH_CELERY_TIMEOUT = env.get_float("HEALTH_CELERY_TIMEOUT", 1.0)
# The most rows an admin action takes at once (support.auth.admin.bounded_actions): actions
# run in the web request, so "Select all" over a big table is refused with a message.
ADMIN_ACTION_MAX_ROWS = max(1, env.get_int("ADMIN_ACTION_MAX_ROWS", 500))
# GET /metrics (support/metrics.py): Prometheus text, only with "Authorization: Bearer
# <METRICS_TOKEN>"; unset, the endpoint answers 404 (off). Windowed values count the last
# METRICS_WINDOW_SECONDS.
METRICS_TOKEN = env.get_str("METRICS_TOKEN", "")
METRICS_WINDOW_SECONDS = env.get_int("METRICS_WINDOW_SECONDS", 86400)

# --- CloudWatch metrics publishing (obs/metrics2; support/cloudwatch.py) ---
# Off by default. On: beat sends the /metrics values with PutMetricData every interval.
CLOUDWATCH_METRICS_ENABLED = env.get_bool("CLOUDWATCH_METRICS_ENABLED", default=False)
CLOUDWATCH_METRICS_NAMESPACE = env.get_str("CLOUDWATCH_METRICS_NAMESPACE", "SupportDesk")
CLOUDWATCH_METRICS_REGION = env.get_str("CLOUDWATCH_METRICS_REGION", "")
CLOUDWATCH_METRICS_INTERVAL_SECONDS = env.get_int("CLOUDWATCH_METRICS_INTERVAL_SECONDS", 60)
if CLOUDWATCH_METRICS_ENABLED:
    CELERY_BEAT_SCHEDULE["cloudwatch-metrics-publish"] = {
        "task": "support.tasks.cloudwatch_metrics_publish_task",
        "schedule": float(CLOUDWATCH_METRICS_INTERVAL_SECONDS),
    }
DEMO_PASSWORD = env.get_str("DEMO_PASSWORD", "demo-password-123")
# Live workbench sockets re-check the agent's teams and roles at least this often (they
# also do on each ticket subscription and on an agent.access_changed event).
WORKBENCH_WS_ACCESS_RECHECK_SECONDS = env.get_int("WORKBENCH_WS_ACCESS_RECHECK_SECONDS", 60)

# --- Integrations: each is off until configured ---------------------------------
# channels_app (omnichannel intake and delivery)
CHANNEL_REOPEN_WINDOW_HOURS = env.get_int("CHANNEL_REOPEN_WINDOW_HOURS", 72)
# Fernet keys for channel account secrets at rest, comma-separated, newest first (the
# first encrypts, all decrypt). Required in prod; elsewhere a key derived from SECRET_KEY.
CHANNELS_SECRETS_KEY = env.get_list("CHANNELS_SECRETS_KEY", [], required_in_prod=True)
CHANNELS_HTTP_TIMEOUT = env.get_float("CHANNELS_HTTP_TIMEOUT", 10.0)
CHANNELS_OUTBOUND_MAX_ATTEMPTS = env.get_int("CHANNELS_OUTBOUND_MAX_ATTEMPTS", 6)
CHANNELS_OUTBOUND_BACKOFF_BASE = env.get_float("CHANNELS_OUTBOUND_BACKOFF_BASE", 2.0)
CHANNELS_OUTBOUND_BACKOFF_CAP = env.get_float("CHANNELS_OUTBOUND_BACKOFF_CAP", 600.0)
# Chatbot hand-off: how old a signed status poll may be (X-Signature-Timestamp), and the
# timeout of a POST to a bot's callback URL (docs/channels.md#chatbot-hand-off).
CHATBOT_SIGNATURE_MAX_AGE_SECONDS = env.get_int("CHATBOT_SIGNATURE_MAX_AGE_SECONDS", 300)
CHATBOT_CALLBACK_TIMEOUT_SECONDS = env.get_float("CHATBOT_CALLBACK_TIMEOUT_SECONDS", 10.0)
CHANNELS_INBOUND_MAX_ATTEMPTS = env.get_int("CHANNELS_INBOUND_MAX_ATTEMPTS", 5)
CHANNELS_WEBHOOK_RATE_LIMIT_PER_MINUTE = env.get_int(
    "CHANNELS_WEBHOOK_RATE_LIMIT_PER_MINUTE", 60000
)
# Largest webhook body per channel: JSON events (about 1 MB; the platforms send far less)
# and e-mail (SendGrid posts whole messages with their attachments). Checked on
# Content-Length before reading, and again while reading.
CHANNELS_WEBHOOK_MAX_BYTES = env.get_int("CHANNELS_WEBHOOK_MAX_BYTES", 1_048_576)
CHANNELS_EMAIL_WEBHOOK_MAX_BYTES = env.get_int("CHANNELS_EMAIL_WEBHOOK_MAX_BYTES", 26_214_400)
# Subscription handshakes (GET: X's CRC, Meta's hub.challenge) per minute, per IP and per
# account: the platforms send a few an hour.
CHANNELS_HANDSHAKE_RATE_LIMIT_PER_MINUTE = env.get_int(
    "CHANNELS_HANDSHAKE_RATE_LIMIT_PER_MINUTE", 30
)
# Media downloads: https only, from each channel's CDN hosts (plus "<channel>:<host>"
# entries here), at most CHANNELS_MEDIA_MAX_BYTES (streamed, refused past the cap).
CHANNELS_MEDIA_MAX_BYTES = env.get_int("CHANNELS_MEDIA_MAX_BYTES", 26_214_400)
CHANNELS_MEDIA_EXTRA_HOSTS = env.get_list("CHANNELS_MEDIA_EXTRA_HOSTS", [])
# The right-hand side of our Message-IDs: by default the host of SITE_URL (the deployment's
# own domain, e.g. support.example.com), "support.local" for a local address. Threading
# matches whole Message-IDs, so changing it leaves earlier threads working.
CHANNELS_EMAIL_MESSAGE_ID_DOMAIN = env.get_str(
    "CHANNELS_EMAIL_MESSAGE_ID_DOMAIN", env.message_id_domain_default(SITE_URL)
)
# SendGrid's signed Event Webhook: a delivery whose signed timestamp is further from now is
# refused. 25 hours: SendGrid retries a batch it could not deliver for 24 hours, and its docs
# do not say the retry is signed anew; a replay within the window changes nothing, since
# each event is applied once, by its sg_event_id.
CHANNELS_EMAIL_EVENT_MAX_AGE_SECONDS = env.get_int("CHANNELS_EMAIL_EVENT_MAX_AGE_SECONDS", 90_000)
# Inbound e-mail failing SPF and DKIM (aligned with From), or replying to another
# customer's ticket: "mark" (suspicious, own ticket), "reject" (quarantined event), "off"
CHANNELS_EMAIL_AUTH_POLICY = env.get_str("CHANNELS_EMAIL_AUTH_POLICY", "mark").lower()
if CHANNELS_EMAIL_AUTH_POLICY not in {"mark", "reject", "off"}:
    raise ImproperlyConfigured(
        "CHANNELS_EMAIL_AUTH_POLICY must be mark, reject or off, "
        f"not {CHANNELS_EMAIL_AUTH_POLICY!r}"
    )
# Web chat: visitor session lifetime, websocket messages per session and minute, and the
# email verification codes (lifetime, wrong guesses allowed, codes per session/address/hour).
WEBCHAT_SESSION_TTL_SECONDS = env.get_int("WEBCHAT_SESSION_TTL_SECONDS", 86400)
WEBCHAT_WS_MESSAGES_PER_MINUTE = env.get_int("WEBCHAT_WS_MESSAGES_PER_MINUTE", 30)
# ... and per address (sessions are free: an address may open 60 a minute); an office
# behind one NAT shares it: 300 is ten visitors each at the session limit.
WEBCHAT_MESSAGES_PER_IP_PER_MINUTE = env.get_int("WEBCHAT_MESSAGES_PER_IP_PER_MINUTE", 300)
# Every frame a web chat socket receives (a message, a ping, junk), counted before it is
# parsed: a token bucket of this many units, refilled this many a second; a frame costs a
# unit per started 1,024 characters (the longest message, every character escaped, 30).
# Over it: a rate_limited error frame; 20 refused in a row close the socket (1008).
WEBCHAT_WS_FRAME_BURST = env.get_int("WEBCHAT_WS_FRAME_BURST", 40)
WEBCHAT_WS_FRAME_REFILL_PER_SECOND = env.get_float("WEBCHAT_WS_FRAME_REFILL_PER_SECOND", 2.0)
if WEBCHAT_WS_FRAME_BURST < 1 or WEBCHAT_WS_FRAME_REFILL_PER_SECOND < 0:
    raise ImproperlyConfigured(
        "WEBCHAT_WS_FRAME_BURST must be at least 1 and WEBCHAT_WS_FRAME_REFILL_PER_SECOND "
        "at least 0."
    )
# The widget polls every 4 s (15 a minute) when its websocket is down; an address may hold
# many visitors (an office behind one NAT).
WEBCHAT_POLL_RATE_LIMIT_PER_MINUTE = env.get_int("WEBCHAT_POLL_RATE_LIMIT_PER_MINUTE", 60)
WEBCHAT_POLL_IP_RATE_LIMIT_PER_MINUTE = env.get_int("WEBCHAT_POLL_IP_RATE_LIMIT_PER_MINUTE", 600)
WEBCHAT_VERIFY_CODE_TTL_SECONDS = env.get_int("WEBCHAT_VERIFY_CODE_TTL_SECONDS", 600)
WEBCHAT_VERIFY_MAX_ATTEMPTS = env.get_int("WEBCHAT_VERIFY_MAX_ATTEMPTS", 5)
WEBCHAT_VERIFY_CODES_PER_HOUR = env.get_int("WEBCHAT_VERIFY_CODES_PER_HOUR", 5)
WEBCHAT_VERIFY_REQUESTS_PER_IP_PER_HOUR = env.get_int("WEBCHAT_VERIFY_REQUESTS_PER_IP_PER_HOUR", 20)
# Files a visitor sends (docs/channels.md "Files from visitors"): the largest upload
# (refused on its Content-Length before it is read), and uploads per session and per
# address an hour (on top of the message limits above).
WEBCHAT_UPLOAD_MAX_BYTES = env.get_int("WEBCHAT_UPLOAD_MAX_BYTES", 10_000_000)
WEBCHAT_UPLOADS_PER_SESSION_PER_HOUR = env.get_int("WEBCHAT_UPLOADS_PER_SESSION_PER_HOUR", 20)
WEBCHAT_UPLOADS_PER_IP_PER_HOUR = env.get_int("WEBCHAT_UPLOADS_PER_IP_PER_HOUR", 200)
# A visitor's file waits in storage until the drain makes it an attachment; the hourly
# purge deletes staged files older than this that no pending event names (0: never).
WEBCHAT_STAGED_UPLOAD_MAX_AGE_HOURS = env.get_float("WEBCHAT_STAGED_UPLOAD_MAX_AGE_HOURS", 24.0)
WHATSAPP_WINDOW_HOURS = env.get_int("WHATSAPP_WINDOW_HOURS", 24)
META_GRAPH_API_BASE = env.get_str("META_GRAPH_API_BASE", "https://graph.facebook.com")
META_GRAPH_API_VERSION = env.get_str("META_GRAPH_API_VERSION", "v21.0")
X_API_BASE = env.get_str("X_API_BASE", "https://api.x.com")
# X OAuth 2.0 user tokens live about two hours: refresh this long before they expire.
X_TOKEN_REFRESH_MARGIN_SECONDS = env.get_int("X_TOKEN_REFRESH_MARGIN_SECONDS", 300)
SENDGRID_API_BASE = env.get_str("SENDGRID_API_BASE", "https://api.sendgrid.com")
# Channel webhook POSTs answered without Django's request handling (same checks, same
# code; channels_app.api.fastpath). Off: every request goes through Django.
WEBHOOK_FAST_PATH = env.get_bool("WEBHOOK_FAST_PATH", default=True)
WEBHOOK_FAST_PATH_THREADS = env.get_int("WEBHOOK_FAST_PATH_THREADS", 8)
CELERY_BEAT_SCHEDULE["channels-inbound-sweep"] = {
    "task": "channels_app.tasks.inbound_event_sweep_task",
    "schedule": 60.0,
}
CELERY_BEAT_SCHEDULE["channels-outbound-sweep"] = {
    "task": "channels_app.tasks.outbound_replies_sweep_task",
    "schedule": 60.0,
}
CELERY_BEAT_SCHEDULE["channels-media-sweep"] = {
    "task": "channels_app.tasks.attachment_downloads_sweep_task",
    "schedule": 60.0,
}
CELERY_BEAT_SCHEDULE["csat-surveys-sweep"] = {
    "task": "channels_app.tasks.csat_surveys_sweep_task",
    "schedule": 300.0,
}
CELERY_BEAT_SCHEDULE["webchat-uploads-purge"] = {
    "task": "channels_app.tasks.staged_uploads_purge_task",
    "schedule": 3600.0,
}

# routing (AI routing agent)
AI_PROVIDER = env.get_str("AI_PROVIDER", "local")  # local | bedrock | openai
# A programming error (TypeError, KeyError ...) met by an LLM fallback is always logged with
# its traceback and counted (/health); re-raised instead of falling back when on (tests).
PROVIDER_RAISE_PROGRAMMING_ERRORS = env.get_bool(
    "PROVIDER_RAISE_PROGRAMMING_ERRORS", default=IS_TEST
)
TICKETING_SYSTEM_URL = env.get_str("TICKETING_SYSTEM_URL")
TICKETING_SYSTEM_TOKEN = env.get_str("TICKETING_SYSTEM_TOKEN")
TICKETING_SYSTEM_TIMEOUT = env.get_float("TICKETING_SYSTEM_TIMEOUT", 10.0)
# Seed 004's MAX_RETRIES / RETRY_DELAY_BASE: retries after base x 1, 2, 4, 8, 16 (capped).
TICKETING_SYNC_MAX_RETRIES = env.get_int("TICKETING_SYNC_MAX_RETRIES", 5)
TICKETING_SYNC_RETRY_DELAY_BASE = env.get_float("TICKETING_SYNC_RETRY_DELAY_BASE", 1.0)
ROUTING_ENABLED = env.get_bool("ROUTING_ENABLED", default=not IS_TEST)
ROUTING_REVIEW_THRESHOLD = env.get_float("ROUTING_REVIEW_THRESHOLD", 0.6)
ROUTING_DECISION_RETENTION_DAYS = env.get_int("ROUTING_DECISION_RETENTION_DAYS", 90)
# HMAC key of stored router models (routing.artifacts); empty: derived from SECRET_KEY.
ROUTER_ARTIFACT_KEY = env.get_str("ROUTER_ARTIFACT_KEY", "")
ROUTING_ACCOUNT_PATTERNS = env.get_list("ROUTING_ACCOUNT_PATTERNS", [r"\bACC-\d{3,}\b"])
ROUTING_VIP_BILLING_TEAM = env.get_str("ROUTING_VIP_BILLING_TEAM", "priority-billing")
# The external service-status endpoint polled every minute (docs/routing.md "Service
# status"): "services" (this project's GET shape) or "seed" (seed 004's POST
# <url>/status/batch with service_ids); an optional bearer token; each poll is a delivery
# of kind routing_status_poll, its records kept ROUTING_STATUS_RECORD_DAYS.
ROUTING_STATUS_URL = env.get_str("ROUTING_STATUS_URL")  # optional external status JSON
ROUTING_STATUS_FORMAT = env.get_str("ROUTING_STATUS_FORMAT", "services")
ROUTING_STATUS_TOKEN = env.get_str("ROUTING_STATUS_TOKEN")
ROUTING_STATUS_TIMEOUT = env.get_float("ROUTING_STATUS_TIMEOUT", 10.0)
ROUTING_STATUS_RECORD_DAYS = env.get_int("ROUTING_STATUS_RECORD_DAYS", 7)
# Seed 004's customer database (docs/routing.md "Customer database"): when set, the VIP
# tool's tier and account type come from GET <url>/customers/<customer id> (this
# platform's customer id), cached per process, local data on any failure.
ROUTING_CUSTOMER_DB_URL = env.get_str("ROUTING_CUSTOMER_DB_URL")
ROUTING_CUSTOMER_DB_TOKEN = env.get_str("ROUTING_CUSTOMER_DB_TOKEN")
ROUTING_CUSTOMER_DB_TIMEOUT = env.get_float("ROUTING_CUSTOMER_DB_TIMEOUT", 2.0)
ROUTING_CUSTOMER_DB_CACHE_SECONDS = env.get_float("ROUTING_CUSTOMER_DB_CACHE_SECONDS", 300.0)
ROUTING_CUSTOMER_DB_CACHE_SIZE = env.get_int("ROUTING_CUSTOMER_DB_CACHE_SIZE", 10_000)
# The tier of a customer the database calls VIP ("is_vip": true) without naming a tier.
ROUTING_CUSTOMER_DB_VIP_TIER = env.get_str("ROUTING_CUSTOMER_DB_VIP_TIER", "gold")
ROUTING_BEDROCK_MODEL_ID = env.get_str(
    "ROUTING_BEDROCK_MODEL_ID", "us.anthropic.claude-haiku-4-5-20251001-v1:0"
)
ROUTING_BEDROCK_SUMMARY_MODEL_ID = env.get_str(
    "ROUTING_BEDROCK_SUMMARY_MODEL_ID", "us.anthropic.claude-haiku-4-5-20251001-v1:0"
)
ROUTING_BEDROCK_REGION = env.get_str("ROUTING_BEDROCK_REGION", AWS_REGION)
ROUTING_BEDROCK_TIMEOUT = env.get_float("ROUTING_BEDROCK_TIMEOUT", 20.0)
ROUTING_BEDROCK_MAX_ATTEMPTS = env.get_int("ROUTING_BEDROCK_MAX_ATTEMPTS", 3)
ROUTING_BEDROCK_BACKOFF = env.get_float("ROUTING_BEDROCK_BACKOFF", 1.0)
ROUTING_OPENAI_BASE_URL = env.get_str("ROUTING_OPENAI_BASE_URL")  # e.g. a local Ollama /v1
ROUTING_OPENAI_MODEL_ID = env.get_str("ROUTING_OPENAI_MODEL_ID", "llama3.1")
ROUTING_OPENAI_API_KEY = env.get_str("ROUTING_OPENAI_API_KEY")
# USD per 1,000 tokens (input, output), by model id.
ROUTING_PRICES: dict[str, tuple[float, float]] = {
    "us.anthropic.claude-haiku-4-5-20251001-v1:0": (0.001, 0.005),
    "us.anthropic.claude-sonnet-4-5-20250929-v1:0": (0.003, 0.015),
    "anthropic.claude-3-haiku-20240307-v1:0": (0.00025, 0.00125),
}
CELERY_BEAT_SCHEDULE["routing-decision-purge"] = {
    "task": "routing.tasks.routing_decision_purge_task",
    "schedule": 3600.0,
}
# The routing sweep (routing.tasks.routing_sweep_task): every ROUTING_SWEEP_SECONDS, routing
# again for tickets without a decision created more than ROUTING_SWEEP_AFTER_SECONDS and
# less than ROUTING_SWEEP_LOOKBACK_SECONDS ago, at most ROUTING_SWEEP_BATCH per run; the
# same tickets are the metric support_routing_unrouted_tickets.
ROUTING_SWEEP_SECONDS = env.get_float("ROUTING_SWEEP_SECONDS", 120.0)
ROUTING_SWEEP_AFTER_SECONDS = env.get_float("ROUTING_SWEEP_AFTER_SECONDS", 300.0)
ROUTING_SWEEP_LOOKBACK_SECONDS = env.get_float("ROUTING_SWEEP_LOOKBACK_SECONDS", 86400.0)
ROUTING_SWEEP_BATCH = env.get_int("ROUTING_SWEEP_BATCH", 200)
CELERY_BEAT_SCHEDULE["routing-sweep"] = {
    "task": "routing.tasks.routing_sweep_task",
    "schedule": ROUTING_SWEEP_SECONDS,
}
CELERY_BEAT_SCHEDULE["routing-status-poll"] = {
    "task": "routing.tasks.service_status_poll_task",
    "schedule": 60.0,
}

# knowledge (knowledge base)
KB_BACKEND = env.get_str("KB_BACKEND", "local")  # local (PostgreSQL) | bedrock
# minilm-int8-fused-ln (default: offline MiniLM, int8 kernels, fused graph with plain
# LayerNorms; the router's encoder) | minilm-int8-fused (the same with onnxruntime's slower
# fused LayerNorms) | minilm-int8 (int8, unfused) | minilm (float32 kernels) | titan (Bedrock).
# Changing it (or KB_EMBED_MAX_TOKENS) needs `manage.py kb_reembed`; until it has run,
# search embeds its queries like the stored vectors (docs/knowledge.md).
KB_EMBEDDER = env.get_str("KB_EMBEDDER", "minilm-int8-fused-ln")
# MiniLM batches run side by side (one onnxruntime thread each): the cores embedding may use
KB_EMBED_WORKERS = env.get_int("KB_EMBED_WORKERS", 2)
# Queries only: empty (default) = the passages' own embedder; minilm-int8 over minilm
# passages embeds queries with the int8 variant (half the CPU per turn). Ignored when it
# cannot search the passages' vectors.
KB_QUERY_EMBEDDER = env.get_str("KB_QUERY_EMBEDDER", "")
# Tokens embedded per passage (MiniLM, at most 256); fewer = faster ingestion, other vectors.
# 128 with minilm-int8-fused-ln: ~130 chunks/s on 2 cores (docs/benchmarks.md)
KB_EMBED_MAX_TOKENS = env.get_int("KB_EMBED_MAX_TOKENS", 128)
KB_TITAN_MODEL_ID = env.get_str("KB_TITAN_MODEL_ID", "amazon.titan-embed-text-v2:0")
KB_AWS_REGION = env.get_str("KB_AWS_REGION", "")
KB_BEDROCK_KNOWLEDGE_BASE_ID = env.get_str("KB_BEDROCK_KNOWLEDGE_BASE_ID", "")
KB_BEDROCK_DATA_SOURCE_ID = env.get_str("KB_BEDROCK_DATA_SOURCE_ID", "")
KB_EVENTS_TOKEN = env.get_str("KB_EVENTS_TOKEN", "")  # shared secret for POST /api/kb/events
KB_SQS_QUEUE_URL = env.get_str("KB_SQS_QUEUE_URL", "")
KB_SUGGESTION_MIN_SCORE = env.get_float("KB_SUGGESTION_MIN_SCORE", 0.35)
KB_HNSW_EF_SEARCH = env.get_int("KB_HNSW_EF_SEARCH", 80)
KB_TEXT_WEIGHT = env.get_float("KB_TEXT_WEIGHT", 0.02)  # full-text boost in hybrid fusion
# Conversational retrieval (docs/knowledge.md): the context turns' share of the query vector,
# agent turns' weight and the decay per turn back from the question, how many turns count,
# and the boost for titles holding the conversation's distinctive (rare) terms.
KB_CONTEXT_WEIGHT = env.get_float("KB_CONTEXT_WEIGHT", 0.3)
KB_AGENT_WEIGHT = env.get_float("KB_AGENT_WEIGHT", 1.0)
KB_CONTEXT_DECAY = env.get_float("KB_CONTEXT_DECAY", 0.9)
KB_CONTEXT_TURNS = env.get_int("KB_CONTEXT_TURNS", 8)
# ... of which the nearest 3 are embedded into the query vector (0 = all of them; 3 chosen on
# MWOZ-FAQ dev, docs/knowledge.md);
# names are carried from all KB_CONTEXT_TURNS
KB_CONTEXT_EMBED_TURNS = env.get_int("KB_CONTEXT_EMBED_TURNS", 3)
KB_ENTITY_WEIGHT = env.get_float("KB_ENTITY_WEIGHT", 0.5)
KB_ENTITY_MAX_DF = env.get_float("KB_ENTITY_MAX_DF", 0.02)
# Reply drafts (docs/knowledge.md#reply-drafts-knowledgedraftspy-knowledgedraft_servicespy):
# offered only when the best article scores
# at least KB_DRAFT_MIN_SCORE and leads the runner-up by KB_DRAFT_MIN_MARGIN (both calibrated
# on the StackFAQ dev split by bench/kb_draft_calibrate.py for the default embedders
# minilm-int8, 128 tokens); drafts per agent per minute.
KB_DRAFT_MIN_SCORE = env.get_float("KB_DRAFT_MIN_SCORE", 0.55)
KB_DRAFT_MIN_MARGIN = env.get_float("KB_DRAFT_MIN_MARGIN", 0.0475)
KB_DRAFT_MAX_CITATIONS = env.get_int("KB_DRAFT_MAX_CITATIONS", 2)
KB_DRAFT_RATE_LIMIT_PER_MINUTE = env.get_int("KB_DRAFT_RATE_LIMIT_PER_MINUTE", 20)
# Sync and ingest jobs (docs/knowledge.md#jobs): every KB_JOB_SWEEP_SECONDS, a queued or
# running job with no sign of life (IngestionJob.heartbeat_at; a running job beats at least
# every 10 s while it reads, embeds, writes or waits) for KB_JOB_STALE_SECONDS is finished
# as failed with the reason: its worker was killed or its task was lost.
KB_JOB_STALE_SECONDS = env.get_float("KB_JOB_STALE_SECONDS", 900.0)
KB_JOB_SWEEP_SECONDS = env.get_float("KB_JOB_SWEEP_SECONDS", 300.0)
CELERY_BEAT_SCHEDULE["kb-jobs-sweep"] = {
    "task": "knowledge.tasks.kb_jobs_sweep_task",
    "schedule": KB_JOB_SWEEP_SECONDS,
}
# S3 events recorded but never processed (task lost, retries spent) are queued again
# (docs/knowledge.md "S3 and events"); S3 does not deliver an answered event again.
CELERY_BEAT_SCHEDULE["kb-object-events-sweep"] = {
    "task": "knowledge.tasks.kb_object_events_sweep_task",
    "schedule": 300.0,
}

# calls (call analytics)
CALLS_TRANSCRIPTION_BACKEND = env.get_str("CALLS_TRANSCRIPTION_BACKEND", "local")
# local | bedrock | openai; empty: AI_PROVIDER. The model: routing's shared factory
# (ROUTING_BEDROCK_SUMMARY_MODEL_ID on Bedrock, ROUTING_OPENAI_* for openai).
CALLS_AI_PROVIDER = env.get_str("CALLS_AI_PROVIDER")
CALLS_OUTPUT_BUCKET = env.get_str("CALLS_OUTPUT_BUCKET")
CALLS_RECORDINGS_BUCKET = env.get_str("CALLS_RECORDINGS_BUCKET")
# S3 locations call events may name ("bucket" or "bucket/prefix"); empty: the two above.
CALLS_ALLOWED_S3_BUCKETS = env.get_list("CALLS_ALLOWED_S3_BUCKETS", [])
CALLS_TRANSCRIBE_LANGUAGE = env.get_str("CALLS_TRANSCRIBE_LANGUAGE", "en-US")
CALLS_TRANSCRIBE_POLL_SECONDS = env.get_int("CALLS_TRANSCRIBE_POLL_SECONDS", 30)
CALLS_BDA_PROJECT_ARN = env.get_str("CALLS_BDA_PROJECT_ARN")
CALLS_BDA_PROFILE_ARN = env.get_str("CALLS_BDA_PROFILE_ARN")
CALLS_SNS_TOPIC_ARNS = env.get_list("CALLS_SNS_TOPIC_ARNS", [])
# SNS messages received over HTTP (calls, knowledge events) older than this are refused.
SNS_MAX_AGE_SECONDS = env.get_int("SNS_MAX_AGE_SECONDS", 3600)
CALLS_ALERT_SNS_TOPIC_ARN = env.get_str("CALLS_ALERT_SNS_TOPIC_ARN")
CALLS_IVR_MAX_RETRIES = env.get_int("CALLS_IVR_MAX_RETRIES", 3)
SALESFORCE_ENABLED = env.get_bool("SALESFORCE_ENABLED", default=False)
SALESFORCE_AUTH_FLOW = env.get_str("SALESFORCE_AUTH_FLOW", "client_credentials")
SALESFORCE_LOGIN_URL = env.get_str("SALESFORCE_LOGIN_URL", "https://login.salesforce.com")
SALESFORCE_CLIENT_ID = env.get_str("SALESFORCE_CLIENT_ID")
SALESFORCE_CLIENT_SECRET = env.get_str("SALESFORCE_CLIENT_SECRET")
SALESFORCE_USERNAME = env.get_str("SALESFORCE_USERNAME")
SALESFORCE_PRIVATE_KEY_FILE = env.get_str("SALESFORCE_PRIVATE_KEY_FILE")
SALESFORCE_API_VERSION = env.get_str("SALESFORCE_API_VERSION", "v62.0")
SALESFORCE_TIMEOUT = env.get_float("SALESFORCE_TIMEOUT", 10.0)
SALESFORCE_TOKEN_TTL = env.get_int("SALESFORCE_TOKEN_TTL", 1800)
SALESFORCE_MAX_ATTEMPTS = env.get_int("SALESFORCE_MAX_ATTEMPTS", 8)
# Cases and Tasks are upserted by this External ID field (create it on both objects): a
# retry after a timeout updates the record instead of creating a second one.
SALESFORCE_EXTERNAL_ID_FIELD = env.get_str("SALESFORCE_EXTERNAL_ID_FIELD", "Support_Desk_Id__c")
# The calls app's backstops (docs/calls.md "When a task or chain is lost"): call events
# still received two minutes after they came, and pipelines left in a non-final status.
CELERY_BEAT_SCHEDULE["calls-events-sweep"] = {
    "task": "calls.tasks.call_events_sweep_task",
    "schedule": 60.0,
}
CELERY_BEAT_SCHEDULE["calls-pipeline-sweep"] = {
    "task": "calls.tasks.call_pipelines_sweep_task",
    "schedule": 300.0,
}
CELERY_BEAT_SCHEDULE["calls-agent-alerts"] = {
    "task": "calls.tasks.agent_alerts_sweep_task",
    "schedule": 30.0,
}

# customer context
INTERACTIONS_BACKEND = env.get_str("INTERACTIONS_BACKEND", "postgres")  # postgres | dynamodb
INTERACTIONS_RETENTION_DAYS = env.get_int("INTERACTIONS_RETENTION_DAYS", 180)
INTERACTIONS_DYNAMODB_TABLE = env.get_str("INTERACTIONS_DYNAMODB_TABLE", "support-interactions")
INTERACTIONS_DYNAMODB_ENDPOINT_URL = env.get_str("INTERACTIONS_DYNAMODB_ENDPOINT_URL")
SENTIMENT_BACKEND = env.get_str("SENTIMENT_BACKEND", "vader")  # vader | comprehend
SENTIMENT_LANGUAGE = env.get_str("SENTIMENT_LANGUAGE", "en")
CONTEXT_AWS_TIMEOUT = env.get_float("CONTEXT_AWS_TIMEOUT", 5.0)
CUSTOMER_CONTEXT_CACHE_TTL = env.get_int("CUSTOMER_CONTEXT_CACHE_TTL", 300)
# Seed 000's in-process LRU in front of Redis: entries per process (0: off) and seconds
# each is kept (how late another process's invalidation can be seen; see cache.py).
CUSTOMER_CONTEXT_LOCAL_CACHE_SIZE = env.get_int("CUSTOMER_CONTEXT_LOCAL_CACHE_SIZE", 512)
CUSTOMER_CONTEXT_LOCAL_CACHE_TTL = env.get_float("CUSTOMER_CONTEXT_LOCAL_CACHE_TTL", 5.0)
FEEDBACK_LINK_MAX_AGE_DAYS = env.get_int("FEEDBACK_LINK_MAX_AGE_DAYS", 30)
# After each resolution the customer gets one message with the feedback link on the
# ticket's own channel (channels_app.services.csat_survey; docs/customer-context.md).
CSAT_SURVEY_ENABLED = env.get_bool("CSAT_SURVEY_ENABLED", default=True)
CELERY_BEAT_SCHEDULE["interactions-purge"] = {
    "task": "tickets.context.tasks.interaction_purge_task",
    "schedule": 3600.0,
}

# SLA policies (issue #16 item 2; docs/sla.md): a warning this many minutes before a due
# time; tickets recorded per target and kind per checker run; how long a process keeps
# the active policies before reading them again (saving one forgets them at once in the
# saving process only).
SLA_WARNING_MINUTES = env.get_int("SLA_WARNING_MINUTES", 30)
SLA_CHECK_BATCH_SIZE = env.get_int("SLA_CHECK_BATCH_SIZE", 200)
SLA_POLICY_CACHE_SECONDS = env.get_float("SLA_POLICY_CACHE_SECONDS", 60.0)
CELERY_BEAT_SCHEDULE["sla-check"] = {"task": "tickets.tasks.sla_check_task", "schedule": 60.0}

# Logs (docs/operations.md#logs): JSON lines in production, text for `make run`; each line
# carries the request id, user id, ticket id and correlation id where known.
LOG_FORMAT = env.get_str("LOG_FORMAT", "json" if IS_PROD else "plain").lower()
LOG_LEVEL = env.get_str("LOG_LEVEL", "INFO")
# Take X-Request-ID from the incoming request when well-formed: only behind a proxy of
# ours that overwrites the header (an ALB does not set it), hence off in production.
LOG_TRUST_REQUEST_ID = env.get_bool("LOG_TRUST_REQUEST_ID", default=not IS_PROD)
LOGGING = logging_config(LOG_FORMAT, LOG_LEVEL)
# The worker keeps this configuration (and its JSON lines) instead of Celery's own.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

env.check_required()
