"""`nodes delete`: a revoked or offline node goes from the store, and its mirror with it.

What happens to what it had (the documented contract):

- its unfinished tasks end FAILED ("node X was deleted") and then its journal rows are
  removed with it (a task's row cannot outlive its node);
- its presence row and upload leases are removed;
- its mirror folder on this host is removed after the rows are gone, with the file
  records of this host's hubs, unless ``keep_mirror`` (then `cortexctl mirrors ls ID`
  still finds it, and `gc mirrors` removes it after the retention period); files other
  hubs hold on their own disks are removed, with their records, by `gc mirrors` there
  (an unknown node's mirror);
- its name is free at once for a new node.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from cortexctl.core import mirrors, nodes
from cortexctl.core.sandbox import SandboxDefaults
from cortexctl.core.views import NodeDeleted as NodeDeleted
from cortexctl.store.engine import Store


def delete_node(
    store: Store,
    ref: str,
    defaults: SandboxDefaults,
    *,
    mirrors_dir: Path,
    keep_mirror: bool = False,
    dry_run: bool = False,
    local_hubs: Collection[str] = frozenset(),
) -> NodeDeleted:
    with store.session(write=not dry_run) as session:
        rows = nodes.delete_node_rows(session, ref, defaults, dry_run=dry_run)
    root = mirrors_dir / rows.id
    mirror, files, size = "none", 0, 0
    if root.is_dir():
        if keep_mirror:
            mirror = "kept"
        else:
            removed = mirrors.remove_tree(root, dry_run=dry_run)
            mirror, files, size = "removed", removed.files, removed.bytes
            if not dry_run:
                with store.session(write=True) as session:
                    mirrors.forget_files(session, rows.id, removed.paths)
    if not keep_mirror and not dry_run:
        with store.session(write=True) as session:
            mirrors.forget_node(session, rows.id, local_hubs)
    return NodeDeleted(
        rows.id,
        rows.name,
        rows.status,
        rows.failed_tasks,
        rows.deleted_tasks,
        mirror,
        files,
        size,
        dry_run,
    )
