"""wait_for_replicas for Django: wait until the replica has replayed the
primary's current WAL position, as drr-core's `wait_for_replicas` does.
Returns within milliseconds of the row becoming visible; never sleeps for
a fixed time."""
import time

from django.db import connections


def primary_position(alias="default"):
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_lsn()::text")
        return cursor.fetchone()[0]


def wait_for_position(cursor, target, timeout):
    deadline = time.monotonic() + timeout
    while True:
        cursor.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [target])
        if cursor.fetchone()[0]:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the replica did not replay {target} within {timeout} s")
        time.sleep(0.01)


def wait_for_replicas(timeout=10.0, primary="default", replica="replica"):
    """Waits until `replica` shows everything committed on `primary`."""
    target = primary_position(primary)
    with connections[replica].cursor() as cursor:
        wait_for_position(cursor, target, timeout)
