"""File storage on S3 with the project's AWS client settings (``support.aws``).

django-storages builds its own boto3 resource; without a ``client_config`` it would use
botocore's defaults (60 s timeouts, legacy retries). This subclass gives it the same
timeouts and bounded retries as every other AWS call, keeping django-storages' own
addressing style, signature version and proxies.
"""

from __future__ import annotations

from typing import Any, cast

from storages.backends.s3 import S3Storage as BaseS3Storage

from support.aws import aws_config


class S3Storage(BaseS3Storage):  # type: ignore[misc]
    def get_default_settings(self) -> dict[str, Any]:
        from botocore.config import Config

        defaults: dict[str, Any] = super().get_default_settings()
        if defaults.get("client_config") is None:  # AWS_S3_CLIENT_CONFIG still wins
            defaults["client_config"] = aws_config().merge(
                Config(
                    s3=cast(Any, {"addressing_style": defaults.get("addressing_style")}),
                    signature_version=defaults.get("signature_version"),
                    proxies=defaults.get("proxies"),
                )
            )
        return defaults
