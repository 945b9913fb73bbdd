"""Personalised creative generation: ad copy, posters and trailers for a (user, item) pair,
scored, gated, labelled as AI-generated and traceable."""

from generation.types import LANGUAGES, NEUTRAL_TONE, ControlSignals, CreativeItem

__all__ = ["ControlSignals", "CreativeItem", "LANGUAGES", "NEUTRAL_TONE"]
