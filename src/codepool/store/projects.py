"""Projects (tenants) and their API keys."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

import msgspec

from codepool import errors, keys
from codepool.models import (
    KeyCreated,
    KeyIn,
    KeyInfo,
    Page,
    Project,
    ProjectIn,
    ProjectSummary,
    StoredKey,
)
from codepool.settings import Settings
from codepool.store.base import Backend, new_id, now, text

KEY_PREFIX = "cpk_"
_TOKEN_PART = re.compile(r"[A-Za-z0-9_-]{1,64}")
_key_decoder = msgspec.json.Decoder(StoredKey)


def _sha256(secret: str) -> str:
    # API key secrets are 256 random bits, so a fast hash is enough: there is nothing
    # to brute-force that a slow hash would protect.
    return hashlib.sha256(secret.encode()).hexdigest()


def split_api_key(token: str) -> tuple[str, str, str] | None:
    """``cpk_<project>.<key id>.<secret>`` -> (project, key id, secret), else None."""
    if not token.startswith(KEY_PREFIX):
        return None
    parts = token[len(KEY_PREFIX) :].split(".")
    # The parts end up in key names: anything but an id's alphabet is not a key of ours.
    if len(parts) != 3 or not all(_TOKEN_PART.fullmatch(p) for p in parts):
        return None
    return parts[0], parts[1], parts[2]


class ProjectStore:
    def __init__(self, backend: Backend) -> None:
        self._b = backend

    @property
    def settings(self) -> Settings:
        return self._b.settings

    async def create(self, data: ProjectIn) -> Project:
        project = Project(
            id=data.id or new_id(),
            name=data.name,
            created_at=now(),
            user_token_secret=secrets.token_urlsafe(32),
            webhook_secret=secrets.token_urlsafe(32),
        )
        created = await self._b.scripts.run(
            "create_project",
            [keys.project(project.id)],
            [
                project.id,
                project.name,
                project.created_at,
                project.user_token_secret,
                project.webhook_secret,
            ],
        )
        if created != 1:
            raise errors.ProjectExists(id=project.id)
        # The registry is global (other slot), so it is written after the record;
        # SADD is idempotent and nothing reads a project through the registry alone.
        await self._b.client.sadd(keys.PROJECTS, project.id)
        return project

    async def get(self, project_id: str) -> Project:
        raw = await self._b.client.hgetall(keys.project(project_id))
        if not raw:
            raise errors.ProjectNotFound(id=project_id)
        fields = {text(k): text(v) for k, v in raw.items()}
        return Project(
            id=fields["id"],
            name=fields["name"],
            created_at=float(fields["created_at"]),
            user_token_secret=fields["user_token_secret"],
            webhook_secret=fields["webhook_secret"],
        )

    async def rotate_secret(self, project_id: str, field: str) -> Project:
        await self.get(project_id)
        await self._b.client.hset(keys.project(project_id), field, secrets.token_urlsafe(32))
        return await self.get(project_id)

    async def exists(self, project_id: str) -> bool:
        return bool(await self._b.client.exists(keys.project(project_id)))

    async def ids(self) -> list[str]:
        return sorted(text(m) for m in await self._b.client.smembers(keys.PROJECTS))

    async def list_page(self, skip: int, count: int) -> Page[ProjectSummary]:
        ids = await self.ids()
        page = ids[skip : skip + count]
        async with self._b.client.pipeline(transaction=False) as pipe:
            for project_id in page:
                pipe.hmget(keys.project(project_id), "name", "created_at")
            rows = await pipe.execute()
        data = [
            ProjectSummary(id=pid, name=text(row[0]), created_at=float(text(row[1]) or 0))
            for pid, row in zip(page, rows, strict=True)
            if row[0] is not None
        ]
        return Page(data=data, matched=len(ids), matched_limited=False, skip=skip, limit=count)

    async def create_key(self, project_id: str, data: KeyIn) -> KeyCreated:
        await self.get(project_id)
        key_id = new_id()
        secret = secrets.token_urlsafe(32)
        stored = StoredKey(
            id=key_id,
            role=data.role,
            name=data.name,
            created_at=now(),
            secret_sha256=_sha256(secret),
        )
        await self._b.client.hset(keys.api_keys(project_id), key_id, msgspec.json.encode(stored))
        return KeyCreated(
            id=key_id,
            role=data.role,
            name=data.name,
            created_at=stored.created_at,
            key=f"{KEY_PREFIX}{project_id}.{key_id}.{secret}",
        )

    async def list_keys(self, project_id: str) -> list[KeyInfo]:
        await self.get(project_id)
        raw = await self._b.client.hvals(keys.api_keys(project_id))
        stored = sorted((_key_decoder.decode(v) for v in raw), key=lambda k: k.created_at)
        return [KeyInfo(id=k.id, role=k.role, name=k.name, created_at=k.created_at) for k in stored]

    async def delete_key(self, project_id: str, key_id: str) -> None:
        await self.get(project_id)
        if not await self._b.client.hdel(keys.api_keys(project_id), key_id):
            raise errors.KeyNotFound(id=key_id)

    async def verify_key_counted(self, token: str) -> tuple[str, StoredKey, int] | None:
        """Like verify_key, and counts the request in the key's rate-limit window in the
        same round trip (lua/verify_key.lua): (project id, key, ms to wait, 0 within the
        limit)."""
        parts = split_api_key(token)
        if parts is None:
            return None
        project_id, key_id, secret = parts
        digest = _sha256(secret)
        found = await self._b.scripts.run(
            "verify_key",
            [keys.api_keys(project_id), keys.rate_window(project_id)],
            [
                key_id,
                digest,
                self._b.settings.rate_limit_admin,
                self._b.settings.rate_limit_pos,
                f"key:{key_id}",
            ],
        )
        if found[0] != 1:
            return None
        stored = _key_decoder.decode(found[1])
        if not hmac.compare_digest(stored.secret_sha256, digest):
            return None
        return project_id, stored, int(found[2])

    async def verify_key(self, token: str) -> tuple[str, StoredKey] | None:
        """The (project id, key) an API key token belongs to, or None if it is not valid."""
        parts = split_api_key(token)
        if parts is None:
            return None
        project_id, key_id, secret = parts
        raw = await self._b.client.hget(keys.api_keys(project_id), key_id)
        if raw is None:
            return None
        stored = _key_decoder.decode(raw)
        if not hmac.compare_digest(stored.secret_sha256, _sha256(secret)):
            return None
        return project_id, stored
