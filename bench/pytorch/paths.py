"""Where the references find their data: the repository's shipped files and the cache that
`scripts/fetch-assets` fills ($CONTRASTIVE_ASSETS, default ~/.cache/contrastive)."""
import os

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
ASSETS = os.environ.get("CONTRASTIVE_ASSETS", os.path.expanduser("~/.cache/contrastive"))


def asset(folder, fetch_name):
    """The fetched asset's folder; exits with the fetch command when it is missing."""
    path = os.path.join(ASSETS, folder)
    if not os.path.isdir(path):
        raise SystemExit(f"{path} is missing: fetch it with `scripts/fetch-assets {fetch_name}`")
    return path
