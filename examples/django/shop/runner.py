"""A test runner for a primary with a streaming replica: Django creates the
test database on the primary only (a replica is read-only); the replica
alias then reads that database once replication has brought it there."""
import os

import psycopg
from django.db import connections
from django.test.runner import DiscoverRunner

from shop.replicas import primary_position, wait_for_position


class ReplicaTestRunner(DiscoverRunner):
    def setup_databases(self, **kwargs):
        kwargs["aliases"] = {"default"}
        config = super().setup_databases(**kwargs)
        target = primary_position("default")
        # The test database reaches the replica after its delay.
        replica_url = os.environ["DRR_REPLICA_URLS"].split(",")[0]
        with psycopg.connect(replica_url, autocommit=True) as conn:
            wait_for_position(conn.cursor(), target, timeout=60)
        replica = connections["replica"]
        replica.close()
        replica.settings_dict["NAME"] = connections["default"].settings_dict["NAME"]
        return config

    def teardown_databases(self, old_config, **kwargs):
        connections["replica"].close()
        super().teardown_databases(old_config, **kwargs)
