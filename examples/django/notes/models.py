"""A note: written on the primary, read from the replica."""
from django.db import models


class Note(models.Model):
    body = models.TextField()
