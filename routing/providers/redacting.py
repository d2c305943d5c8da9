"""The one place where routing text leaves the machine: a Strands model wrapper that
redacts everything it is about to send (``support.redaction``).

``AgentProvider`` wraps whatever model it runs (Bedrock, an OpenAI-compatible endpoint,
or a test double) in :class:`RedactingModel`, so the prompt, every tool result, the
model's own earlier turns and the system prompt are redacted on every request, whatever a
tool returns. Names of the ticket's own customer come from the caller (``names``).

Only text is rewritten: text blocks, tool-use inputs and tool-result contents. Roles,
tool names and ids, images and documents are passed through unchanged (routing sends
none of the latter).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, Iterable
from typing import Any

from strands.models import Model

from support.redaction import redact, redact_obj


class RedactingModel(Model):
    """Delegates to ``inner`` after redacting every outgoing message."""

    def __init__(self, inner: Model, *, names: Iterable[str] = ()) -> None:
        self.inner = inner
        self.names = tuple(names)
        self._supports_structured_output = getattr(inner, "_supports_structured_output", False)

    # --- configuration: the inner model's -------------------------------------------------

    @property
    def config(self) -> Any:
        return getattr(self.inner, "config", {})

    @property
    def stateful(self) -> bool:
        return bool(self.inner.stateful)

    def update_config(self, **model_config: Any) -> None:
        self.inner.update_config(**model_config)

    def get_config(self) -> Any:
        return self.inner.get_config()

    # --- redaction ------------------------------------------------------------------------

    def _text(self, text: str | None) -> str | None:
        return redact(text, names=self.names) if text else text

    def _block(self, block: Any) -> Any:
        if not isinstance(block, dict):
            return block
        out = dict(block)
        if isinstance(out.get("text"), str):
            out["text"] = redact(out["text"], names=self.names)
        if isinstance(out.get("toolUse"), dict):
            use = dict(out["toolUse"])
            use["input"] = redact_obj(use.get("input"), names=self.names)
            out["toolUse"] = use
        if isinstance(out.get("toolResult"), dict):
            result = dict(out["toolResult"])
            result["content"] = [self._result_part(p) for p in result.get("content") or []]
            out["toolResult"] = result
        return out

    def _result_part(self, part: Any) -> Any:
        if not isinstance(part, dict):
            return part
        out = dict(part)
        if isinstance(out.get("text"), str):
            out["text"] = redact(out["text"], names=self.names)
        if "json" in out:
            out["json"] = redact_obj(out["json"], names=self.names)
        return out

    def redact_messages(self, messages: Any) -> Any:
        return [
            {**message, "content": [self._block(b) for b in message.get("content") or []]}
            if isinstance(message, dict)
            else message
            for message in messages or []
        ]

    # --- the two calls that send data ----------------------------------------------------

    def stream(  # type: ignore[override]
        self,
        messages: Any,
        tool_specs: Any = None,
        system_prompt: str | None = None,
        *,
        tool_choice: Any = None,
        system_prompt_content: Any = None,
        **kwargs: Any,
    ) -> AsyncIterable[Any]:
        if system_prompt_content is not None:
            system_prompt_content = [self._block(b) for b in system_prompt_content]
        return self.inner.stream(
            self.redact_messages(messages),
            tool_specs,
            self._text(system_prompt),
            tool_choice=tool_choice,
            system_prompt_content=system_prompt_content,
            **kwargs,
        )

    def structured_output(  # type: ignore[override]
        self, output_model: Any, prompt: Any, system_prompt: str | None = None, **kwargs: Any
    ) -> AsyncGenerator[Any, None]:
        return self.inner.structured_output(
            output_model,
            self.redact_messages(prompt),
            system_prompt=self._text(system_prompt),
            **kwargs,
        )
