"""Lag tests against drr's real replica (3000 ms behind): the stale read,
and its fix. They commit for real (TransactionTestCase): a write inside a
test transaction would never reach the replica."""
import os

from django.test import TransactionTestCase

from notes.models import Note
from shop.replicas import wait_for_replicas


class ReplicaTestCase(TransactionTestCase):
    databases = {"default", "replica"}

    @classmethod
    def _databases_names(cls, include_mirrors=True):
        # Only the primary is flushed between tests; the replica follows.
        return ["default"]


class ReadAfterWrite(ReplicaTestCase):
    def test_a_read_right_after_a_write_misses_the_row(self):
        note = Note.objects.create(body="stale")
        self.assertFalse(Note.objects.filter(pk=note.pk).exists(), "the replica is behind")

    def test_reading_after_wait_for_replicas_finds_the_row(self):
        note = Note.objects.create(body="fresh")
        if os.environ.get("SHOP_WITHOUT_FIX") != "1":
            wait_for_replicas(timeout=10)
        self.assertTrue(Note.objects.filter(pk=note.pk).exists())
