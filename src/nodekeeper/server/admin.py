"""The admin API: every change needs the bearer token and is written to the audit table."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Header, Query, Request
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from nodekeeper.version.manifest import InvalidArtifactError
from nodekeeper.version.platforms import check_known_platform
from nodekeeper.version.schema import Hex64, ProcessName, Url
from nodekeeper.version.versions import normalize_version

from . import policy, ramp
from .errors import ControlPlaneError, InvalidRequestError
from .models import ArtifactRecord
from .release_check import check_artifact
from .rollout_plan import Plan, PlanError, doubling_stages
from .status import process_status, rollout_state
from .store import recent_reports, version_summary


class UnauthorizedError(ControlPlaneError):
    status_code = 401


def _normalized(value: str) -> str:
    return normalize_version(value)  # raises a ValueError that names the expected form


Version = Annotated[str, AfterValidator(_normalized)]
# A key no keeper computes would only show up as nodes that never update.
KnownPlatform = Annotated[str, AfterValidator(check_known_platform)]


def require_admin(request: Request, authorization: str | None = Header(None)) -> str:
    """Checks the bearer token; returns the caller's address for the audit table."""
    scheme, _, presented = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not presented:
        raise UnauthorizedError(
            "the admin API needs `Authorization: Bearer <token>`; set NODEKEEPER_ADMIN_TOKEN"
        )
    if not request.app.state.settings.admin_token.matches(presented.strip()):
        raise UnauthorizedError(
            "wrong admin token; use the token the server printed at start "
            f"(from {request.app.state.settings.admin_token.source})"
        )
    return request.client.host if request.client else "unknown"


router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(require_admin)])
Caller = Annotated[str, Depends(require_admin)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ArtifactSpec(_Body):
    """Either an upload made with PUT /v1/admin/uploads, or a remote URL with its digest."""

    platform: KnownPlatform
    upload_id: str | None = None
    filename: str | None = None
    url: Url | None = None
    sha256: Hex64 | None = None
    size: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _one_source(self) -> ArtifactSpec:
        if (self.upload_id is None) == (self.url is None):
            raise ValueError("give either upload_id or url for each artifact")
        if self.url is not None and (self.sha256 is None or self.size is None):
            raise ValueError("a remote artifact url needs its sha256 and size")
        return self


class PublishBody(_Body):
    process: ProcessName
    version: Version
    artifacts: list[ArtifactSpec] = Field(min_length=1)
    targets: str | None = Field(
        None,
        description="TUF targets metadata (the file's text, exactly as signed) with this "
        "release's entries, signed by the targets key; required once the server has a TUF "
        "root (decision 084)",
    )

    @model_validator(mode="after")
    def _platforms_unique(self) -> PublishBody:
        platforms = [a.platform for a in self.artifacts]
        if len(set(platforms)) != len(platforms):
            raise ValueError("each platform may appear once per release")
        return self


class MinimumBody(_Body):
    version: Version


class RolloutStartBody(_Body):
    version: Version
    rate_per_day: float | None = Field(None, description="percent per day; none = manual")
    seed: Hex64 | None = Field(None, description="64 hex digits; random when omitted")
    stages: list[float] | None = Field(
        None, description="a staged plan: ascending percents ending at 100 (decision 079)"
    )
    soak_seconds: float | None = Field(
        None, description="how long each stage is held at least, with stages or doubling"
    )
    doubling: bool = Field(False, description="the stages 1, 2, 4, ... 64, 100")

    def plan(self) -> Plan | None:
        """The staged plan asked for, or None; a PlanError says what is wrong."""
        staged = self.stages is not None or self.doubling
        if not staged:
            if self.soak_seconds is not None:
                raise PlanError("soak_seconds goes with a staged plan: give stages or doubling")
            return None
        if self.stages is not None and self.doubling:
            raise PlanError("give either stages or doubling, not both")
        if self.rate_per_day is not None:
            raise PlanError(
                "give either rate_per_day (a linear ramp) or a staged plan (stages or "
                "doubling), not both"
            )
        if self.soak_seconds is None:
            raise PlanError(
                "a staged plan needs soak_seconds: how long each stage is held at least "
                "before the health check may move it on (e.g. 21600 for 6 h)"
            )
        stages = doubling_stages() if self.doubling else tuple(self.stages or ())
        return Plan(stages, self.soak_seconds)


class RolloutSetBody(_Body):
    percent: float


@router.put("/uploads", summary="Stream one artifact file into the artifact store")
async def upload(request: Request) -> dict[str, Any]:
    store = request.app.state.artifacts
    upload_id, part = store.begin_upload()
    digest = hashlib.sha256()
    size = 0
    try:
        async with await anyio.open_file(part, "wb") as f:
            async for chunk in request.stream():
                size += len(chunk)
                if size > store.max_size:
                    raise InvalidRequestError(
                        f"artifact is larger than the server's limit of {store.max_size} bytes"
                    )
                digest.update(chunk)
                await f.write(chunk)
        finished = await anyio.to_thread.run_sync(store.finish_upload, upload_id, digest, size)
    except BaseException:
        store.discard(upload_id)
        raise
    return {"upload_id": finished.id, "sha256": finished.sha256, "size": finished.size}


@router.post("/releases", status_code=201, summary="Publish a release and its artifacts")
def publish(body: PublishBody, request: Request, caller: Caller) -> dict[str, Any]:
    app = request.app.state
    snapshot = app.store.snapshot(app.settings.clock())
    policy.check_new_release(snapshot.processes.get(body.process), body.version)
    records = []
    for spec in body.artifacts:
        if spec.upload_id is not None:
            _check_upload(app.artifacts.finished_path(spec.upload_id), body, spec.platform)
            described = app.artifacts.describe(spec.upload_id)
            records.append((spec, described.sha256, described.size))
        else:
            records.append((spec, spec.sha256, spec.size))
    try:
        signed = _signed_targets(app, body, snapshot, records)
    except ControlPlaneError:
        # A refused signature keeps nothing: the uploads go too (not served anyway).
        for spec in body.artifacts:
            if spec.upload_id is not None:
                app.artifacts.discard(spec.upload_id)
        raise
    artifacts = []
    try:
        for spec, sha256, size in records:
            stored = None
            if spec.upload_id is not None:
                stored = app.artifacts.place(
                    spec.upload_id,
                    body.process,
                    body.version,
                    spec.platform,
                    spec.filename or f"{body.process}_{spec.platform}.zip",
                )
            artifacts.append(
                ArtifactRecord(spec.platform, sha256, size, url=spec.url, stored_name=stored)
            )
        if signed is None:
            app.store.publish_release(
                body.process, body.version, artifacts, now=app.settings.clock(), remote=caller
            )
        else:
            data, md = signed
            now = app.settings.clock()
            app.tuf.retrying(
                lambda: app.store.publish_release(
                    body.process,
                    body.version,
                    artifacts,
                    now=now,
                    remote=caller,
                    also=lambda conn: app.tuf.write_targets(conn, data, md, now),
                ),
                md.signed.version,
            )
            app.tuf_cache.forget_timestamp()
    except BaseException:
        # Nothing of a rejected publish stays behind: not the rows, not the files.
        app.artifacts.remove_stored(a.stored_name for a in artifacts if a.stored_name)
        raise
    app.documents.refresh(force=True)
    return {
        "process": body.process,
        "version": body.version,
        "artifacts": {a.platform: {"sha256": a.sha256, "size": a.size} for a in artifacts},
        "targets_version": signed[1].signed.version if signed else None,
        "notes": policy.publish_notes(
            snapshot.processes.get(body.process), body.process, body.version
        ),
    }


def _signed_targets(app, body: PublishBody, snapshot, records):
    """With a TUF root: the release manager's targets, checked (signed by the targets
    role, the next version, entries equal to these artifacts) before anything is kept;
    the online keys must be here too. Without a root: None, an unsigned publish (083)."""
    from .tuf_repo import expected_entries, known_entries

    root = app.tuf.root()
    if root is None:
        return None
    now = app.settings.clock()
    required = expected_entries(
        body.process,
        body.version,
        [ArtifactRecord(spec.platform, sha256, size) for spec, sha256, size in records],
    )
    data = body.targets.encode("utf-8") if body.targets is not None else None
    md = app.tuf.check_targets(data, root, known_entries(snapshot.processes), required, now)
    app.tuf.signers(root.signed)  # 503 now, before an artifact is placed
    assert data is not None
    return data, md


def _check_upload(path, body: PublishBody, platform: str) -> None:
    """Refuse an artifact the keeper would refuse: the release would be burnt for good."""
    try:
        check_artifact(path, body.process, body.version)
    except InvalidArtifactError as exc:
        raise InvalidRequestError(f"the artifact for {platform}: {exc}") from None


@router.put("/processes/{process}/minimum", summary="Set the minimum allowed version")
def set_minimum(process: str, body: MinimumBody, request: Request, caller: Caller) -> dict:
    app = request.app.state
    app.store.set_minimum(process, body.version, now=app.settings.clock(), remote=caller)
    app.documents.refresh(force=True)
    return {"process": process, "minimum": body.version}


@router.post("/processes/{process}/rollout", status_code=201, summary="Start a rollout")
def start_rollout(process: str, body: RolloutStartBody, request: Request, caller: Caller):
    app = request.app.state
    try:
        plan = body.plan()
    except PlanError as exc:
        raise InvalidRequestError(f"invalid staged plan: {exc}") from None
    record = app.store.start_rollout(
        process,
        body.version,
        body.rate_per_day,
        now=app.settings.clock(),
        remote=caller,
        seed=body.seed,
        plan=plan,
    )
    app.documents.refresh(force=True)
    current = app.documents.current.snapshot.processes.get(process)
    notes = policy.rollout_notes(current, record.version) if current else []
    return {
        "process": process,
        "version": record.version,
        "seed": record.seed,
        "notes": notes,
        "plan": {"stages": list(plan.stages), "soak_seconds": plan.soak_seconds} if plan else None,
    }


def _change(request: Request, process: str, action: str, change, caller: str, **detail):
    app = request.app.state
    now = app.settings.clock()
    record = app.store.change_rollout(
        process, action, lambda state: change(state, now), now=now, remote=caller, detail=detail
    )
    app.documents.refresh(force=True)
    return {
        "process": process,
        "version": record.version,
        "percent": round(ramp.percent_at(record.ramp, now), 4),
        "state": rollout_state(record, now),
    }


@router.put("/processes/{process}/rollout/percent", summary="Set the rollout percent now")
def set_rollout(process: str, body: RolloutSetBody, request: Request, caller: Caller):
    policy.check_percent(body.percent)
    return _change(
        request,
        process,
        "rollout.set",
        lambda state, now: ramp.set_percent(state, body.percent, now),
        caller,
        percent=body.percent,
    )


@router.post("/processes/{process}/rollout/pause", summary="Hold the rollout where it is")
def pause_rollout(process: str, request: Request, caller: Caller):
    return _change(request, process, "rollout.pause", ramp.pause, caller)


@router.post(
    "/processes/{process}/rollout/resume",
    summary="Continue a paused rollout (also one the health check paused: decision 078)",
)
def resume_rollout(process: str, request: Request, caller: Caller):
    return _change(request, process, "rollout.resume", ramp.resume, caller)


@router.post(
    "/processes/{process}/rollout/abort",
    summary="Stop offering the rollout: the cursor goes to 0; nodes keep what they run",
)
def abort_rollout(process: str, request: Request, caller: Caller) -> dict[str, Any]:
    app = request.app.state
    now = app.settings.clock()
    app.store.abort_rollout(process, now=now, remote=caller)
    app.documents.refresh(force=True)
    snapshot = app.store.snapshot(now)
    return process_status(snapshot.processes[process], now)


REPORT_WINDOW = 7 * 86_400.0


@router.get("/status", summary="Every process: versions, rollout, and what nodes report")
def status(request: Request) -> list[dict[str, Any]]:
    app = request.app.state
    now = app.settings.clock()
    snapshot = app.store.snapshot(now)
    reported = version_summary(app.store, now - REPORT_WINDOW)
    return [
        process_status(p, now) | {"reported": reported.get(name, {})}
        for name, p in sorted(snapshot.processes.items())
    ]


@router.get("/reports", summary="The newest reports from keepers")
def reports(
    request: Request,
    limit: int = Query(100, ge=1, le=10_000),
    failures: bool = Query(False, description="only failures"),
) -> list[dict]:
    return recent_reports(request.app.state.store, limit, failures)


@router.get("/audit", summary="The newest admin changes")
def audit(request: Request, limit: int = Query(100, ge=1, le=10_000)) -> list[dict]:
    return request.app.state.store.audit_entries(limit)
