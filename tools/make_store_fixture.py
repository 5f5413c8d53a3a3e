"""Write tests/data/store-0001.db: a small SQLite store at schema 0001 with realistic rows.

    .venv/bin/python tools/make_store_fixture.py [OUT]

The file is committed and never regenerated: tests/unit/test_schema.py upgrades a copy of
it to the newest migration and then uses it through core, so every later migration is
tested against data an older cortexctl wrote. Rows are written with plain SQL against the
0001 tables (not through today's models, which follow the newest schema), so this script
keeps producing the same shape of data whatever the head is. When a later release wants
its own fixture (say store-0003.db), copy this script's idea with that revision's columns.

The secrets below are fixture values the test uses to join and authenticate; they guard
nothing.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import sys
from pathlib import Path

REVISION = "0001"
OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / f"store-{REVISION}.db"

# Tokens: cortex-invite.<id>.<secret> and cortex-node.<id>.<secret>
LIVE_INVITE = ("in_0a1b2c3d4e5f", "fixture-live-invite-secret-0001")
NODE_ALPHA = ("nd_a1a1a1a1a1a1", "fixture-alpha-credential-secret")
NODE_BETA = ("nd_b2b2b2b2b2b2", "fixture-beta-credential-secret")
NODE_GONE = ("nd_c3c3c3c3c3c3", "fixture-revoked-credential-secret")
HUB = "hub-fixture-0001"


def sha(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def js(value: object) -> str:
    return json.dumps(value)


def rows() -> dict[str, list[dict[str, object]]]:
    t0 = "2026-11-29 10:00:00.000000"
    t1 = "2026-11-29 10:05:00.000000"
    t2 = "2026-11-29 10:06:30.250000"
    far = "2099-01-01 00:00:00.000000"
    return {
        "invites": [
            dict(
                id=LIVE_INVITE[0],
                secret_hash=sha(LIVE_INVITE[1]),
                created_at=t0,
                expires_at=far,
                uses_allowed=5,
                uses_count=2,
                revoked_at=None,
                labels=js({"team": "ml"}),
                sandbox_mode=None,
                note="lab machines",
            ),
            dict(
                id="in_111111111111",
                secret_hash=sha("expired"),
                created_at=t0,
                expires_at=t1,
                uses_allowed=1,
                uses_count=0,
                revoked_at=None,
                labels=js({}),
                sandbox_mode="permissive",
                note="",
            ),
            dict(
                id="in_222222222222",
                secret_hash=sha("revoked"),
                created_at=t0,
                expires_at=far,
                uses_allowed=1,
                uses_count=0,
                revoked_at=t1,
                labels=js({}),
                sandbox_mode=None,
                note="leaked in chat",
            ),
        ],
        "nodes": [
            dict(
                id=NODE_ALPHA[0],
                name="alpha",
                hostname="gpu-01.lab",
                agent_version="0.1.0",
                labels=js({"team": "ml", "gpu": "a100"}),
                capabilities=js(["sandbox.bwrap", "sync.files"]),
                credential_hash=sha(NODE_ALPHA[1]),
                invite_id=LIVE_INVITE[0],
                sandbox_mode=None,
                allowed_commands=None,
                policy_revision=1,
                created_at=t0,
                last_seen_at=t2,
                revoked_at=None,
            ),
            dict(
                id=NODE_BETA[0],
                name="beta",
                hostname="cpu-07.lab",
                agent_version="0.1.0",
                labels=js({"team": "ml"}),
                capabilities=js([]),
                credential_hash=sha(NODE_BETA[1]),
                invite_id=LIVE_INVITE[0],
                sandbox_mode="strict",
                allowed_commands=js(["python3", "echo"]),
                policy_revision=3,
                created_at=t0,
                last_seen_at=t1,
                revoked_at=None,
            ),
            dict(
                id=NODE_GONE[0],
                name="gamma",
                hostname="old-box",
                agent_version="0.0.9",
                labels=js({}),
                capabilities=js([]),
                credential_hash=sha(NODE_GONE[1]),
                invite_id=None,
                sandbox_mode="permissive",
                allowed_commands=None,
                policy_revision=2,
                created_at=t0,
                last_seen_at=t0,
                revoked_at=t1,
            ),
        ],
        "presence": [
            dict(
                node_id=NODE_ALPHA[0],
                hub_id=HUB,
                connected_at=t1,
                last_heartbeat=t2,
                disconnected_at=None,
                heartbeat_interval_s=5.0,
                running_tasks=1,
                peer="ipv4:10.0.0.11:40022",
                policy_revision_acked=1,
            ),
            dict(
                node_id=NODE_BETA[0],
                hub_id=HUB,
                connected_at=t0,
                last_heartbeat=t1,
                disconnected_at=t2,
                heartbeat_interval_s=5.0,
                running_tasks=0,
                peer="ipv4:10.0.0.17:51544",
                policy_revision_acked=3,
            ),
        ],
        "tasks": [
            dict(
                id="tk_000000000001",
                node_id=NODE_ALPHA[0],
                argv=js(["echo", "hello"]),
                script="",
                env=js({"LANG": "C.UTF-8"}),
                cwd="",
                timeout_s=60,
                state="succeeded",
                created_at=t0,
                dispatched_at=t0,
                started_at=t0,
                finished_at=t1,
                exit_code=0,
                stdout=b"hello\n",
                stderr=b"",
                output_truncated=0,
                error="",
                hub_id=HUB,
                stream_id="st_1",
            ),
            dict(
                id="tk_000000000002",
                node_id=NODE_ALPHA[0],
                argv=js([]),
                script="set -e\npython3 train.py --epochs 3\n",
                env=js({}),
                cwd="runs/a",
                timeout_s=0,
                state="running",
                created_at=t1,
                dispatched_at=t1,
                started_at=t2,
                finished_at=None,
                exit_code=None,
                stdout=b"epoch 1\n",
                stderr=b"\xff\xfe binary noise",
                output_truncated=0,
                error="",
                hub_id=HUB,
                stream_id="st_2",
            ),
            dict(
                id="tk_000000000003",
                node_id=NODE_BETA[0],
                argv=js(["python3", "-V"]),
                script="",
                env=js({}),
                cwd="",
                timeout_s=10,
                state="pending",
                created_at=t2,
                dispatched_at=None,
                started_at=None,
                finished_at=None,
                exit_code=None,
                stdout=b"",
                stderr=b"",
                output_truncated=0,
                error="",
                hub_id=None,
                stream_id=None,
            ),
            dict(
                id="tk_000000000004",
                node_id=NODE_BETA[0],
                argv=js(["rm", "-rf", "/"]),
                script="",
                env=js({}),
                cwd="",
                timeout_s=0,
                state="rejected",
                created_at=t1,
                dispatched_at=None,
                started_at=None,
                finished_at=t1,
                exit_code=None,
                stdout=b"",
                stderr=b"",
                output_truncated=0,
                error="'rm' is not among the node's allowed commands",
                hub_id=None,
                stream_id=None,
            ),
            dict(
                id="tk_000000000005",
                node_id=NODE_GONE[0],
                argv=js(["sleep", "600"]),
                script="",
                env=js({}),
                cwd="",
                timeout_s=0,
                state="failed",
                created_at=t0,
                dispatched_at=t0,
                started_at=t0,
                finished_at=t1,
                exit_code=None,
                stdout=b"",
                stderr=b"",
                output_truncated=1,
                error="node gamma (nd_c3c3c3c3c3c3) was revoked",
                hub_id=HUB,
                stream_id="st_0",
            ),
        ],
        "sync_leases": [
            dict(
                node_id=NODE_ALPHA[0],
                path="results/report.csv",
                sync_id="0123456789abcdef0123456789abcdef",
                hub_id=HUB,
                temp_path=f"{NODE_ALPHA[0]}/results/.cortex-sync.{'0123456789abcdef' * 2}.tmp",
                started_at=t1,
                last_activity=t2,
                bytes_received=1048576,
            ),
        ],
        "hubs": [
            dict(
                id=HUB,
                address="127.0.0.1:50051",
                pid=4242,
                hostname="hub-host",
                started_at=t0,
                lease_expires_at=t2,
                stopped_at=None,
            ),
            dict(
                id="hub-fixture-old",
                address="127.0.0.1:50052",
                pid=17,
                hostname="hub-host",
                started_at=t0,
                lease_expires_at=t0,
                stopped_at=t1,
            ),
        ],
        "admin_locks": [
            dict(name="gc mirrors", holder="hub-host:4242:deadbeef", acquired_at=t1, expires_at=t2),
        ],
        "job_runs": [
            dict(
                hub_id=HUB,
                job="gc-locks",
                interval_s=60.0,
                last_started_at=t1,
                last_duration_s=0.012,
                last_outcome="ok",
                last_error="",
                last_result=js({"expired": 0, "removed": 0}),
                next_run_at=t2,
                runs=6,
                failures=0,
            ),
            dict(
                hub_id=HUB,
                job="gc-mirrors",
                interval_s=3600.0,
                last_started_at=t1,
                last_duration_s=1.5,
                last_outcome="failed",
                last_error="the store is busy; try again",
                last_result=js({}),
                next_run_at=t2,
                runs=2,
                failures=1,
            ),
        ],
    }


def main(out: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from cortexctl.store.engine import Store, upgrade

    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    store = Store(f"sqlite:///{out}")
    upgrade(store, REVISION)
    store.dispose()
    db = sqlite3.connect(out)
    with db:
        for table, items in rows().items():
            for item in items:
                names = ", ".join(item)
                marks = ", ".join("?" for _ in item)
                db.execute(f"INSERT INTO {table} ({names}) VALUES ({marks})", list(item.values()))
        db.execute("UPDATE counters SET value = 17 WHERE name = 'changes'")
    db.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
    db.execute("VACUUM")
    db.close()
    print(f"wrote {out} ({out.stat().st_size} bytes) at schema {REVISION}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
