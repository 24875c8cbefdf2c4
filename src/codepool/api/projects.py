"""Projects and their API keys."""

from __future__ import annotations

from litestar import Controller, delete, get, post
from litestar.params import JSONBody

from codepool import errors
from codepool.api.deps import Caller, Svc
from codepool.api.params import Count, IdPath, Skip
from codepool.api.responses import BODY, SECURITY, WRITE, answers
from codepool.auth import authorize
from codepool.models import (
    KeyCreated,
    KeyIn,
    KeyInfo,
    Page,
    Project,
    ProjectIn,
    ProjectSummary,
    SecretRotateIn,
)


class ProjectController(Controller):
    path = "/v1/projects"
    tags = ("projects",)
    security = SECURITY

    @post(
        "/", status_code=201, responses=answers(errors.ProjectExists, *BODY, *WRITE, project=False)
    )
    async def create_project(
        self, data: JSONBody[ProjectIn], principal: Caller, services: Svc
    ) -> Project:
        """Create a project (root only); answers its secrets once."""
        authorize(principal, None)
        return await services.projects.create(data)

    @get("/", responses=answers(project=False))
    async def list_projects(
        self, principal: Caller, services: Svc, skip: Skip = 0, count: Count = 20
    ) -> Page[ProjectSummary]:
        """List projects (root only)."""
        authorize(principal, None)
        return await services.projects.list_page(skip, count)

    @get("/{project_id:str}", responses=answers())
    async def get_project(
        self, project_id: IdPath, principal: Caller, services: Svc
    ) -> ProjectSummary:
        """A project's id and name (no secrets), for its own keys too (agents list it)."""
        authorize(principal, project_id, "admin", "pos")
        project = await services.projects.get(project_id)
        return ProjectSummary(id=project.id, name=project.name, created_at=project.created_at)

    @post("/{project_id:str}/keys", status_code=201, responses=answers(*BODY, *WRITE))
    async def create_key(
        self, project_id: IdPath, data: JSONBody[KeyIn], principal: Caller, services: Svc
    ) -> KeyCreated:
        """Create an admin or pos API key; the key is shown only in this answer."""
        authorize(principal, project_id, "admin")
        return await services.projects.create_key(project_id, data)

    @get("/{project_id:str}/keys", responses=answers())
    async def list_keys(
        self, project_id: IdPath, principal: Caller, services: Svc
    ) -> list[KeyInfo]:
        """List the project's API keys (never their secrets)."""
        authorize(principal, project_id, "admin")
        return await services.projects.list_keys(project_id)

    @delete(
        "/{project_id:str}/keys/{key_id:str}",
        status_code=204,
        responses=answers(errors.KeyNotFound),
    )
    async def delete_key(
        self, project_id: IdPath, key_id: IdPath, principal: Caller, services: Svc
    ) -> None:
        """Revoke an API key; it stops working at once."""
        authorize(principal, project_id, "admin")
        await services.projects.delete_key(project_id, key_id)

    @post("/{project_id:str}/secrets/rotate", status_code=200, responses=answers(*BODY, *WRITE))
    async def rotate_secret(
        self, project_id: IdPath, data: JSONBody[SecretRotateIn], principal: Caller, services: Svc
    ) -> Project:
        """Replace the user-token or webhook secret; tokens signed with the old one stop working."""
        authorize(principal, project_id, "admin")
        return await services.projects.rotate_secret(project_id, data.secret)
