"""Settings: writes go to `default` (drr's primary), reads to `replica`
(drr's replica1, 3000 ms behind), both from the environment `cargo xtask
test` exports."""
import os
from urllib.parse import unquote, urlparse

SECRET_KEY = "example-only"
INSTALLED_APPS = ["notes"]
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"


def database(url):
    u = urlparse(url)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": u.path[1:],
        "USER": unquote(u.username),
        "PASSWORD": unquote(u.password),
        "HOST": u.hostname,
        "PORT": u.port,
    }


DATABASES = {
    "default": database(os.environ["DATABASE_URL"]),
    "replica": database(os.environ["DRR_REPLICA_URLS"].split(",")[0]),
}
DATABASE_ROUTERS = ["shop.routers.PrimaryReplicaRouter"]
TEST_RUNNER = "shop.runner.ReplicaTestRunner"
