"""crossrec: the thin top of the engine (command line and demo) that assembles retrieval, recsys
and streaming."""

__all__: list[str] = []
