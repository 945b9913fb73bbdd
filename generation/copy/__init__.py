"""Ad copy: the ``CopyWriter`` role, the language-model writer, guardrails and the template
fallback. Importing it loads no model."""

from generation.copy.base import COPY_SOURCES, AdCopy, CopyDraft, CopyRequest, CopyWriter, GuardrailReport
from generation.copy.guardrails import BLOCKLIST, GuardrailConfig, Guardrails, find_entities, sanitise
from generation.copy.lm import LanguageModelCopyWriter, LMCopyConfig, build_prompt, parse_draft
from generation.copy.templates import TemplateCopyWriter

__all__ = [
    "COPY_SOURCES", "AdCopy", "CopyDraft", "CopyRequest", "CopyWriter", "GuardrailReport",
    "BLOCKLIST", "GuardrailConfig", "Guardrails", "find_entities", "sanitise",
    "LanguageModelCopyWriter", "LMCopyConfig", "build_prompt", "parse_draft", "TemplateCopyWriter",
]
