"""Admin roles and the one table of what each admin API method needs.

The hub's role interceptor reads ``METHOD_ROLES``; README.md and SECURITY.md show the same
table (a test compares them). A role includes every role below it.
"""

from __future__ import annotations

from cortexctl.errors import InvalidArgument

VIEWER, OPERATOR, ADMIN = "viewer", "operator", "admin"
ROLES: tuple[str, ...] = (VIEWER, OPERATOR, ADMIN)  # each includes the ones before it

# AdminService method -> the least role allowed to call it. A method missing here is
# refused to everyone (so a new method is closed until it is given a row).
METHOD_ROLES: dict[str, str] = {
    # viewer: every read (lists, show, status, events, audit, mirrors ls)
    "ListInvites": VIEWER,
    "ListNodes": VIEWER,
    "ShowNode": VIEWER,
    "ListTasks": VIEWER,
    "ShowTask": VIEWER,
    "WatchTask": VIEWER,
    "MeshStatus": VIEWER,
    "WatchEvents": VIEWER,
    "ListMirrors": VIEWER,
    "ListHubs": VIEWER,
    "ListAudit": VIEWER,
    # operator: tasks, journal fail, gc, invites, mirror downloads
    "SubmitTask": OPERATOR,
    "CancelTask": OPERATOR,
    "WaitTask": OPERATOR,
    "CreateInvite": OPERATOR,
    "RevokeInvite": OPERATOR,
    "FailNodeTasks": OPERATOR,
    "RunGc": OPERATOR,
    "DownloadMirrorFile": OPERATOR,
    # admin: everything else (a PERMISSIVE sandbox is root on a fleet)
    "SetSandbox": ADMIN,
    "SetQuota": ADMIN,
    "RevokeNode": ADMIN,
    "RotateCredential": ADMIN,
    "RenameNode": ADMIN,
    "DeleteNode": ADMIN,
    "CordonNode": ADMIN,
    "DrainNode": ADMIN,
    "RemoveMirrorFiles": ADMIN,
    "CreateAdminToken": ADMIN,
    "ListAdminTokens": ADMIN,
    "RevokeAdminToken": ADMIN,
}


def parse_cert_roles(entries: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``hub.admin_cert_roles`` (``SUBJECT=ROLE`` entries) as subject -> role."""
    roles: dict[str, str] = {}
    for entry in entries:
        subject, sep, role = entry.rpartition("=")
        subject, role = subject.strip(), role.strip().lower()
        if not sep or not subject:
            raise InvalidArgument(
                f"bad admin certificate role {entry!r}: expected SUBJECT=ROLE, e.g. "
                "'ops-laptop=operator'"
            )
        if role not in ROLES:
            raise InvalidArgument(
                f"bad admin certificate role {entry!r}: the role is one of {', '.join(ROLES)}"
            )
        if roles.get(subject, role) != role:
            raise InvalidArgument(f"admin certificate subject {subject!r} is given two roles")
        roles[subject] = role
    return roles


TABLE_START, TABLE_END = "<!-- admin-roles -->", "<!-- /admin-roles -->"


def markdown_table() -> str:
    """The table README.md and SECURITY.md show (``tools/regen.py docs`` writes it)."""
    rows = sorted(METHOD_ROLES.items(), key=lambda item: (ROLES.index(item[1]), item[0]))
    lines = ["| method | least role |", "|---|---|"]
    lines += [f"| `{method}` | {role} |" for method, role in rows]
    return "\n".join([TABLE_START, *lines, TABLE_END])


def with_table(text: str) -> str:
    """``text`` with its role table (between the two markers) replaced by this one's."""
    head, _, rest = text.partition(TABLE_START)
    _, _, tail = rest.partition(TABLE_END)
    return head + markdown_table() + tail


def check_role(role: str) -> str:
    role = role.lower()
    if role not in ROLES:
        raise InvalidArgument(f"bad --role {role!r}: expected one of {', '.join(ROLES)}")
    return role


def allows(role: str, needed: str) -> bool:
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)


def needed_role(method: str) -> str | None:
    """The least role for ``method``, or None when no role may call it."""
    return METHOD_ROLES.get(method)
