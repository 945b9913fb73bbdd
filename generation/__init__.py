"""Personalised creative generation (posters, ad copy, trailers). Not built yet: no issue has
asked for it so far; streaming already publishes the creative requests it will consume."""

__all__: list[str] = []
