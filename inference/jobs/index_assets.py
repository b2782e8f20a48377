"""Asset search indexing in the worker: a generated model becomes searchable by its owner as it succeeds, and the
reaper's sweep picks up any that a stopped worker left unindexed."""

from __future__ import annotations

import logging

from app.search import service as search_service
from app.search.store import pgvector_installed
from app.tasks.models import Task
from inference.jobs.context import JobContext

log = logging.getLogger(__name__)


async def index_one(job: JobContext, task: Task) -> bool:
    """Index a just-finished task; failures are logged, never raised (the task itself has succeeded)."""
    if task.type not in search_service.INDEXED_TYPES or not job.settings.search_index_generated:
        return False
    try:
        async with job.sessionmaker() as session, session.begin():
            fresh = await session.get(Task, task.id)
            if fresh is None:
                return False
            models = search_service.Models.from_settings(job.settings)
            return await search_service.index_task(session, job.store, models, fresh) is not None
    except Exception:
        log.exception("indexing task %s for asset search failed; the sweep retries it", task.id)
        return False


async def index_missing(job: JobContext, limit: int = 50) -> int:
    """Index up to `limit` SUCCEEDED generation tasks that have no asset row yet."""
    if not job.settings.search_index_generated:
        return 0
    async with job.sessionmaker() as session:
        if not await pgvector_installed(session):  # asset search is off on this server
            return 0
        tasks = await search_service.unindexed_tasks(session, limit)
    done = 0
    for task in tasks:
        done += await index_one(job, task)
    return done
