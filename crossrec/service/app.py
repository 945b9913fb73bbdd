"""The FastAPI app: catalogue search, items, users, recommendations, creatives, events, health,
metrics and the web page, all served by one process (or several identical worker processes).

``create_app(engine)`` wires a loaded ``ServiceEngine``; ``create_app_from_env()`` is the factory
each uvicorn worker calls (``crossrec serve`` puts the config in the environment). Heavy calls
(embedding, ranking) run in a bounded thread pool, off the event loop. Bad input gets a 4xx whose
``detail`` names the argument and what is allowed; the service stays up.
"""


import gc
import json
import os
import secrets
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Callable

import anyio
from fastapi import Body, Depends, FastAPI, File, Form, HTTPException, Path as PathParam, Query, Request, Security, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.security import APIKeyHeader
from fastapi.staticfiles import StaticFiles

from crossrec.service import metrics
from crossrec.service.config import ServiceConfig
from crossrec.service.engine import CREATIVE_FILES, KeptAnswers, ServiceEngine
from crossrec.service.models import (
    SEARCH_SPACES, CreativeAccepted, CreativeClickAccepted, CreativeClickIn, CreativeOut, ErrorOut, EventsAccepted, Health, ItemOut, ProfileOut, Ready,
    RecommendationsOut, RecommendedItem, SearchHitOut, SearchOut, UsersOut,
)
from crossrec.service.publisher import BrokerUnavailableError
from crossrec.service.uploads import BodyLimitMiddleware, read_upload_image
from crossrec_core.errors import CrossrecError, ImageDecodeError, UnknownIdError
from streaming.events import (
    MAX_ID, CreativeClick, CreativeImpression, CreativeRequest, UserEvent, json_schemas, new_event_id,
)

__all__ = ["create_app", "create_app_from_env", "freeze_loaded"]

STATIC = Path(__file__).parent / "static"
API_KEY_HEADER = "X-API-Key"
_api_key = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="Required by write routes (events, creatives).")
_ERRORS = {401: {"model": ErrorOut}, 403: {"model": ErrorOut}, 404: {"model": ErrorOut}, 422: {"model": ErrorOut}}
_REPORT_SUFFIXES = (".png", ".svg")
# Ids in paths: bounded like the events' (the profile store keeps them as SQLite INTEGER).
UserId = Annotated[int, PathParam(ge=0, le=MAX_ID)]
ItemId = Annotated[int, PathParam(ge=0, le=MAX_ID)]


def _status_of(exc: Exception) -> int:
    if isinstance(exc, UnknownIdError):
        return 404
    if isinstance(exc, BrokerUnavailableError):
        return 503
    if isinstance(exc, ImageDecodeError):
        return 415
    return 422


def create_app(engine: ServiceEngine, *, on_shutdown: Callable[[], None] | None = None) -> FastAPI:
    config = engine.config
    limiter = anyio.CapacityLimiter(config.heavy_threads)
    search_bodies = KeptAnswers(config.search_cache)  # JSON bodies of the engine's kept search answers
    api_key = config.api_key()

    async def heavy(fn, *args, **kwargs):
        """Run ``fn`` in the bounded worker pool (embedding and ranking release the GIL)."""
        return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs), limiter=limiter)

    def require_key(key: Annotated[str | None, Security(_api_key)] = None) -> None:
        if api_key is None:
            raise HTTPException(403, "writes are disabled on this service: start it with $CROSSREC_API_KEY or "
                                     "$CROSSREC_API_KEY_FILE set")
        if not key:
            raise HTTPException(401, f"missing API key: send it in the {API_KEY_HEADER} header", {"WWW-Authenticate": "ApiKey"})
        if not secrets.compare_digest(key.encode(), api_key.encode()):
            raise HTTPException(403, f"the {API_KEY_HEADER} header holds a wrong API key")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if config.bootstrap:  # connect in the background: the first event post should not pay for it
            threading.Thread(target=engine.publisher.connect, name="publisher-connect", daemon=True).start()
        yield
        engine.close()
        if on_shutdown is not None:
            on_shutdown()

    app = FastAPI(title="crossrec", version="1", lifespan=lifespan, responses={422: {"model": ErrorOut}},
                  description="Multimodal recommender engine: cross-media search, recommendations with "
                              "explanations, personalised creatives and event ingestion into Kafka.")
    app.add_middleware(BodyLimitMiddleware, max_bytes=config.max_upload_bytes + 256 * 1024)
    app.add_middleware(metrics.RequestMetrics)
    if config.cors_origins:  # off unless origins are named
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(config.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=[API_KEY_HEADER, "Content-Type"])

    @app.exception_handler(CrossrecError)
    async def engine_error(request: Request, exc: CrossrecError):
        status = _status_of(exc)
        headers = {"Retry-After": "2"} if status == 503 else None
        return JSONResponse({"detail": str(exc)}, status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        # One readable line per problem, naming where it is and what is allowed.
        lines = []
        for err in exc.errors():
            # pydantic names union branches in the location ("function-after[...]"): not for people
            where = ".".join(str(p) for p in err.get("loc", ()) if "[" not in str(p))
            ctx = err.get("ctx", {}).get("error")
            msg = err.get("msg", "invalid")
            lines.append(f"{where}: {msg}" if ctx is None or str(ctx) in msg else f"{where}: {msg} ({ctx})")
        return JSONResponse({"detail": lines}, status_code=422)

    # -- health and metrics ------------------------------------------------------------------

    @app.get("/healthz", response_model=Health, tags=["health"])
    async def healthz():
        return Health()

    @app.get("/readyz", response_model=Ready, tags=["health"])
    async def readyz():
        return Ready(ready=True, catalogues={n: len(s) for n, s in engine.searchers.items()},
                     ranking_catalogue=config.ranking_catalogue, broker=engine.publisher.state(), worker_pid=os.getpid())

    @app.get("/metrics", tags=["health"], response_class=Response,
             responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}})
    async def prometheus():
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    # -- catalogues ----------------------------------------------------------------------------

    def hit_out(catalogue: str, hit) -> SearchHitOut:
        image = f"/catalogues/{catalogue}/items/{hit.item_id}/image" if hit.image else None
        return SearchHitOut(item_id=str(hit.item_id), title=hit.title, score=hit.score, image_url=image,
                            signals={n: s.__dict__ for n, s in hit.signals.items()})

    def search_out(catalogue: str, result) -> SearchOut:
        return SearchOut(catalogue=catalogue, query=result.query, mode=result.mode, language=result.language,
                         matching=result.matching, note=result.note, hits=[hit_out(catalogue, h) for h in result.hits])

    def parse_filters(raw: str | None) -> dict | None:
        if raw is None or not raw.strip():
            return None
        try:
            value = json.loads(raw)
        except ValueError:
            raise HTTPException(422, f"filters={raw[:80]!r} is not JSON; give an object such as "
                                     '{"category": "Fruit"}') from None
        if not isinstance(value, dict):
            raise HTTPException(422, f"filters must be a JSON object (field -> value), got {type(value).__name__}")
        return value

    @app.get("/catalogues", tags=["catalogues"])
    async def catalogues() -> dict[str, int]:
        """Served catalogues and their item counts."""
        return {n: len(s) for n, s in engine.searchers.items()}

    @app.get("/catalogues/{catalogue}/search", response_model=SearchOut, tags=["catalogues"], responses=_ERRORS)
    async def search_text(catalogue: str,
                          q: Annotated[str, Query(min_length=1, max_length=1000, description="The text query.")],
                          k: Annotated[int, Query(ge=1, le=config.max_k)] = 10,
                          mode: Annotated[str, Query(description="hybrid, rrf, or one signal: bm25, trigram, minilm, "
                                                                 "e5, image (text->catalogue images), fused")] = "hybrid",
                          filters: Annotated[str | None, Query(description='JSON object, e.g. {"category": "Fruit"}')] = None):
        engine.searcher(catalogue)
        result = await heavy(engine.search_text, catalogue, q, k=k, mode=mode, filters=parse_filters(filters))
        # The JSON of a kept answer is kept too: building and checking the response model of 10
        # hits with their per-signal scores cost more CPU than finding the kept answer.
        key = (catalogue, q, k, mode, filters)
        body = search_bodies.get(key, result)
        if body is None:
            body = JSONResponse(search_out(catalogue, result).model_dump(mode="json", by_alias=True)).body
            search_bodies.put(key, result, body)
        return Response(body, media_type="application/json")

    @app.post("/catalogues/{catalogue}/search/image", response_model=SearchOut, tags=["catalogues"],
              responses={**_ERRORS, 413: {"model": ErrorOut}, 415: {"model": ErrorOut}})
    async def search_image(catalogue: str,
                           image: Annotated[UploadFile, File(description="A JPEG, PNG, WebP, GIF or BMP photo.")],
                           k: Annotated[int, Form(ge=1, le=config.max_k)] = 10,
                           space: Annotated[str, Form(description=f"one of {SEARCH_SPACES}")] = "fused"):
        engine.searcher(catalogue)
        if space not in SEARCH_SPACES:
            raise HTTPException(422, f"space={space[:40]!r}: allowed {SEARCH_SPACES}")
        picture = await read_upload_image(image, config.max_upload_bytes, config.max_image_pixels)
        result = await heavy(engine.search_image, catalogue, picture, k=k, space=space, filters=None)
        out = search_out(catalogue, result)
        out.query = image.filename or "upload"
        return out

    @app.get("/catalogues/{catalogue}/items/{item_id}", response_model=ItemOut, tags=["catalogues"], responses=_ERRORS)
    async def item(catalogue: str, item_id: str):
        r = engine.item(catalogue, item_id)
        return ItemOut(catalogue=catalogue, item_id=r.item_id, title=r.title, text=r.text, facets=r.facets,
                       image_url=f"/catalogues/{catalogue}/items/{r.item_id}/image" if r.image else None)

    @app.get("/catalogues/{catalogue}/items/{item_id}/image", tags=["catalogues"], response_class=FileResponse,
             responses={**_ERRORS, 200: {"content": {"image/jpeg": {}, "image/png": {}}}})
    async def item_image(catalogue: str, item_id: str):
        return FileResponse(engine.image_path(catalogue, item_id), headers={"Cache-Control": "max-age=3600"})

    # -- users and recommendations -------------------------------------------------------------

    @app.get("/users", response_model=UsersOut, tags=["users"])
    async def users(limit: Annotated[int, Query(ge=1, le=100_000)] = 1000):
        ids = await heavy(engine.user_ids)
        return UsersOut(count=len(ids), user_ids=ids[:limit])

    @app.get("/users/{user_id}/profile", response_model=ProfileOut, tags=["users"], responses=_ERRORS)
    async def profile(user_id: UserId):
        return await heavy(engine.profile, user_id)

    @app.get("/users/{user_id}/recommendations", response_model=RecommendationsOut, tags=["users"], responses=_ERRORS)
    async def recommendations(user_id: UserId, k: Annotated[int, Query(ge=1, le=config.max_k)] = 10,
                              genres: Annotated[list[str] | None, Query(description="Keep items of these genres.")] = None,
                              exclude_seen: bool = True):
        if not engine.is_known_user(user_id):
            raise UnknownIdError(f"user_id={user_id} is not a known user")
        filters: dict[str, Any] = {"exclude_seen": exclude_seen}
        if genres:
            allowed = set(engine.recommender.catalogue.genre_names)
            bad = sorted(set(genres) - allowed)
            if bad:
                raise HTTPException(422, f"genres={bad}: allowed {sorted(allowed)}")
            filters["genres"] = tuple(genres)
        rec = await heavy(engine.recommend, user_id, k=k, filters=filters)
        cat = config.ranking_catalogue
        items = []
        for item_id, score, sources, group in zip(rec.item_ids, rec.scores, rec.sources, rec.top_feature_group):
            item_id = int(item_id)
            record = engine.item(cat, item_id) if cat in engine.searchers else None
            items.append(RecommendedItem(
                item_id=item_id, title=record.title if record else engine.title(item_id), score=float(score),
                sources=list(sources), top_feature_group=group,
                image_url=f"/catalogues/{cat}/items/{item_id}/image" if record and record.image else None,
                creative_url=f"/creatives/{user_id}/{item_id}" if engine.has_creative(user_id, item_id) else None))
        return RecommendationsOut(user_id=user_id, catalogue=cat, cold_start=rec.cold_start, reason=rec.reason, items=items)

    # -- events ----------------------------------------------------------------------------------

    @app.post("/events", response_model=EventsAccepted, tags=["events"], dependencies=[Depends(require_key)],
              responses={**_ERRORS, 503: {"model": ErrorOut}})
    async def post_events(body: Annotated[UserEvent | list[UserEvent], Body(
            description="One user event or a list of them (the `user_event` schema of the Kafka topic, "
                        "without `schema`/`v`). Acknowledged only after the broker acknowledged every event.")]):
        events = body if isinstance(body, list) else [body]
        if not events:
            raise HTTPException(422, "body: an empty list; send one event or a non-empty list")
        if len(events) > config.max_batch:
            raise HTTPException(422, f"body: {len(events)} events; at most max_batch={config.max_batch} per request")
        problems = []
        for i, e in enumerate(events):
            if not engine.is_known_user(e.user_id):
                problems.append(f"events[{i}].user_id={e.user_id} is not a known user")
            if not engine.is_ranked_item(e.item_id):
                problems.append(f"events[{i}].item_id={e.item_id} is not in catalogue {config.ranking_catalogue!r}")
        if problems:
            raise HTTPException(422, problems[:20])
        receipt = await anyio.to_thread.run_sync(engine.publisher.publish, engine.topics.user_events, events)
        metrics.PUBLISH_SECONDS.observe(receipt.seconds)
        return EventsAccepted(accepted=receipt.events, topic=receipt.topic, publish_ms=receipt.seconds * 1000)

    @app.get("/schemas/events", tags=["events"])
    async def event_schemas() -> dict[str, Any]:
        """JSON Schema of every event on the Kafka topics (the same models validate both ends)."""
        return json_schemas()

    # -- creatives -------------------------------------------------------------------------------

    def check_pair(user_id: int, item_id: int) -> None:
        if not engine.is_known_user(user_id):
            raise UnknownIdError(f"user_id={user_id} is not a known user")
        if not engine.is_ranked_item(item_id):
            raise UnknownIdError(f"item_id={item_id} is not in catalogue {config.ranking_catalogue!r}")

    async def impression(served) -> str | None:
        """Publish that ``served``'s variant is shown (the bandit learns from it); its id, or None
        when the broker is down (the creative is served all the same; a click on it cannot count)."""
        event = CreativeImpression(event_id=new_event_id(), timestamp=time.time(), user_id=served.user_id,
                                   item_id=served.item_id, variant_id=served.variant_id, family=served.family)
        try:
            await anyio.to_thread.run_sync(engine.publisher.publish, engine.topics.creative_feedback, [event])
        except BrokerUnavailableError:
            return None
        return event.event_id

    async def find_creative(user_id: int, item_id: int) -> dict | None:
        """From the worker's cache (with the variant shown and its impression), else the folder."""
        served = await heavy(engine.cached_creative, user_id, item_id)
        if served is None:
            return engine.creative(user_id, item_id)
        assets = {"poster": f"/assets/{served.poster_asset}"}
        if served.trailer_asset:
            assets["trailer"] = f"/assets/{served.trailer_asset}"
        return {"user_id": user_id, "item_id": item_id, "assets": assets, "copy": served.copy, "scores": served.scores,
                "variant": {"variant_id": served.variant_id, "family": served.family, "chosen_by": served.chosen_by,
                            "impression_id": await impression(served)}}

    @app.get("/creatives/{user_id}/{item_id}", response_model=CreativeOut, tags=["creatives"], responses=_ERRORS)
    async def creative(user_id: UserId, item_id: ItemId):
        """The creative for (user, item): from the creative worker's cache for the user's current
        profile (the poster variant picked by the bandit when there are several; an impression is
        published), else from the creatives folder; 404 until one exists."""
        check_pair(user_id, item_id)
        found = await find_creative(user_id, item_id)
        if found is None:
            raise HTTPException(404, f"no creative for user {user_id} and item {item_id} yet; POST to this URL "
                                     "(with the API key) to request one")
        return found

    @app.post("/creatives/{user_id}/{item_id}", tags=["creatives"], dependencies=[Depends(require_key)],
              responses={200: {"model": CreativeOut}, 202: {"model": CreativeAccepted}, **_ERRORS,
                         503: {"model": ErrorOut}})
    async def request_creative(user_id: UserId, item_id: ItemId):
        """The creative from the cache at once, else publish a creative request and answer 202 with
        the URL to poll (generation never blocks the request path)."""
        check_pair(user_id, item_id)
        found = await find_creative(user_id, item_id)
        if found is not None:
            return JSONResponse(CreativeOut.model_validate(found).model_dump(by_alias=True))
        request = CreativeRequest(event_id=new_event_id(), timestamp=time.time(), user_id=user_id, item_id=item_id,
                                  reason="api")
        await anyio.to_thread.run_sync(engine.publisher.publish, engine.topics.creative_requests, [request])
        location = f"/creatives/{user_id}/{item_id}"
        return JSONResponse(CreativeAccepted(request_id=request.event_id, location=location).model_dump(),
                            status_code=202, headers={"Location": location})

    @app.post("/creatives/{user_id}/{item_id}/clicks", response_model=CreativeClickAccepted, status_code=202,
              tags=["creatives"], dependencies=[Depends(require_key)], responses={**_ERRORS, 503: {"model": ErrorOut}})
    async def creative_click(user_id: UserId, item_id: ItemId, body: CreativeClickIn):
        """A click on a shown creative (the ``impression_id`` and ``variant_id`` of its variant),
        published on the creative-feedback topic for the bandit; a click on an impression never
        published is dead-lettered there, not counted."""
        check_pair(user_id, item_id)
        parts = body.variant_id.split(":")
        click = CreativeClick(event_id=new_event_id(), timestamp=time.time(), impression_id=body.impression_id,
                              user_id=user_id, item_id=item_id, variant_id=body.variant_id,
                              family=parts[1][:64] if len(parts) == 3 else "")
        receipt = await anyio.to_thread.run_sync(engine.publisher.publish, engine.topics.creative_feedback, [click])
        return CreativeClickAccepted(click_id=click.event_id, topic=receipt.topic)

    @app.get("/assets/{asset_id}", tags=["creatives"], response_class=FileResponse,
             responses={**_ERRORS, 200: {"content": {"image/png": {}, "video/mp4": {}}}})
    async def asset(asset_id: Annotated[str, PathParam(max_length=80)]):
        """A creative's file by its content id (``<sha256>.<suffix>``) from the asset store."""
        return FileResponse(engine.asset_path(asset_id), headers={"Cache-Control": "public, max-age=31536000, immutable"})

    @app.get("/creatives/{user_id}/{item_id}/{kind}", tags=["creatives"], response_class=FileResponse, responses=_ERRORS)
    async def creative_asset(user_id: UserId, item_id: ItemId, kind: str):
        if kind not in CREATIVE_FILES or CREATIVE_FILES[kind].endswith(".json"):
            raise HTTPException(404, f"kind={kind[:40]!r}: assets are poster and trailer")
        folder = engine.creative_dir(user_id, item_id)
        path = None if folder is None else folder / CREATIVE_FILES[kind]
        if path is None or not path.is_file():
            raise HTTPException(404, f"no {kind} for user {user_id} and item {item_id}")
        return FileResponse(path)

    # -- reports and the page ------------------------------------------------------------------

    def report_files() -> dict[str, Path]:
        root = Path(config.reports_dir) if config.reports_dir else None
        if root is None or not root.is_dir():
            return {}
        return {p.relative_to(root).as_posix().replace("/", "--"): p for p in sorted(root.rglob("*"))
                if p.suffix in _REPORT_SUFFIXES and p.is_file()}

    @app.get("/reports", tags=["reports"])
    async def reports() -> list[str]:
        """Evaluation charts (retrieval, ranking) by name."""
        return sorted(report_files())

    @app.get("/reports/{name}", tags=["reports"], response_class=FileResponse, responses=_ERRORS)
    async def report(name: str):
        path = report_files().get(name)  # a name from the listing, never a path
        if path is None:
            raise HTTPException(404, f"report {name[:80]!r} not found; see /reports")
        return FileResponse(path)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index():
        return HTMLResponse((STATIC / "index.html").read_text("utf-8"))

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


GIL_SWITCH_S = 0.0005


def freeze_loaded() -> None:
    """Move every object alive now (the loaded models: long-lived, never garbage) out of the
    collector's view, so that a full collection under load walks only what requests allocate
    instead of stalling the worker's requests in flight for the whole heap."""
    gc.collect()
    gc.freeze()


def create_app_from_env() -> FastAPI:
    """The uvicorn worker factory: the config from ``$CROSSREC_SERVICE_CONFIG``, models loaded once
    in this process."""
    import sys

    started = time.perf_counter()
    config = ServiceConfig.from_env()
    app = create_app(ServiceEngine.load(config))
    freeze_loaded()
    # A request's ranking hands the GIL back and forth with torch/numpy calls; behind another
    # thread's Python work it waits up to the switch interval each time (5 ms by default), which
    # stacks into the latency tail. A shorter interval cuts that wait for little switching cost.
    sys.setswitchinterval(GIL_SWITCH_S)
    # start-up time per worker in the server log: serve-bench and the NOTES figures read it
    print(f"crossrec worker {os.getpid()}: models loaded in {time.perf_counter() - started:.1f} s "
          f"(load average {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
    return app
