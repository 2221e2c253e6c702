"""Retention: remove gallery images older than ``TPS_RETENTION_DAYS``, and old audit entries.

An image's age counts from its capture time (``captured_at``), or from when it entered the
gallery (``added_at``) when it has none or gives a later one (a capture time in the future must
not keep an image forever). The expired images leave the store in one ``remove`` call (on a
folder index one commit: a search sees all of them or none of them; Milvus deletes in chunks),
then their files go:
only files in the service's image folder, the uploads. An index built from a data set folder
references the user's own files; retention takes those images out of the gallery (vectors and
metadata: they can no longer be found or viewed) and leaves the files where they are, since the
service never deletes what it did not write.

Between sweeps every read path (search results, examples, metadata, the image, its thumbnail)
refuses an image past the same cutoff (:func:`read_cutoff`, :func:`is_expired`), so footage is
never shown after its time for want of a sweep; an upload already past it is refused.

The decision and the removal happen under the image folder's write lock (service/storage.py),
as uploads and deletes do, so an upload cannot slip a new file between them. Each batch is
recorded in the audit trail with the ids removed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from index.gallery_store import GalleryStore
from index.items import ItemMeta
from service.access.audit import AuditLog, Entry
from service.image_paths import image_path
from service.settings import Settings
from service.storage import ImageStore

log = logging.getLogger(__name__)

DAY_S = 86_400.0


@dataclass
class Outcome:
    cutoff: float
    removed: list[str] = field(default_factory=list)
    files_deleted: int = 0
    files_kept: int = 0  # outside the image folder: the user's own data set
    files_failed: int = 0  # could not be deleted now; the start-up orphan sweep retries
    dry_run: bool = False

    def as_dict(self) -> dict:
        return {
            "cutoff": self.cutoff,
            "removed": self.removed,
            "files_deleted": self.files_deleted,
            "files_kept": self.files_kept,
            "files_failed": self.files_failed,
            "dry_run": self.dry_run,
        }


def cutoff_for(days: float, now: float | None = None) -> float:
    return (now if now is not None else time.time()) - days * DAY_S


def age_reference(item: ItemMeta) -> float:
    if item.captured_at is None:
        return item.added_at
    return min(item.captured_at, item.added_at)


def is_expired(item: ItemMeta, cutoff: float | None) -> bool:
    return cutoff is not None and age_reference(item) < cutoff


def read_cutoff(settings: Settings) -> float | None:
    """The cutoff reads apply now (None: no retention period), the sweep's own."""
    if settings.retention_days is None:
        return None
    return cutoff_for(settings.retention_days)


def expired(store: GalleryStore, cutoff: float) -> list[ItemMeta]:
    return [item for item in store.items() if is_expired(item, cutoff)]


def past_retention(captured_at: float | None, settings: Settings) -> str | None:
    """Why an upload captured at ``captured_at`` must be refused, or None: it would be past the
    retention period the moment it was stored (its age counts from the capture time)."""
    cutoff = read_cutoff(settings)
    if captured_at is None or cutoff is None or captured_at >= cutoff:
        return None
    return (
        f"captured_at is more than {settings.retention_days:g} days ago, past the retention "
        "period (TPS_RETENTION_DAYS): the image would be removed at once, so it is not stored"
    )


def sweep(
    store: GalleryStore,
    images: ImageStore,
    cutoff: float,
    *,
    trail: AuditLog | None = None,
    who: tuple[str, str | None] = ("retention", None),
    client: str | None = None,
    dry_run: bool = False,
) -> Outcome:
    """Remove every image older than ``cutoff`` (blocking: a worker thread or the CLI)."""
    outcome = Outcome(cutoff, dry_run=dry_run)
    if dry_run:  # a list of what is about to go is a view of the gallery: audited too
        outcome.removed = sorted(i.image_id for i in expired(store, cutoff))
        if trail is not None:
            trail.record_now(Entry(who[0], who[1], client, "retention_dry_run", outcome.as_dict()))
        return outcome
    with images.writing():
        doomed = expired(store, cutoff)
        if not doomed:
            return outcome
        present = set(store.remove([i.image_id for i in doomed]))
        for item in doomed:
            if item.image_id not in present:
                continue
            outcome.removed.append(item.image_id)
            path = image_path(images, item.source_path)  # a migrated gallery's are relative
            if not images.owns(path):
                outcome.files_kept += 1
                continue
            try:  # the store has changed: every removal must still reach the trail below
                outcome.files_deleted += images.delete(path)
            except OSError as err:
                outcome.files_failed += 1
                log.warning("retention: cannot delete %s: %s", item.source_path, err)
    outcome.removed.sort()
    if trail is not None:
        trail.record_now(Entry(who[0], who[1], client, "retention", outcome.as_dict()))
    return outcome
