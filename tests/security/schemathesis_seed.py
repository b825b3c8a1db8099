"""Seed the scratch database of tests/security/schemathesis_run.sh: a user per role with an API
token, and a little of everything (prompt set, candidates, a running campaign with items, a
dataset rule and version) so that the fuzzed ids 1, 2, 3 … reach real rows.

Prints ``role token`` lines. Run from the repository root with the run's environment.
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stickerloop.settings")

import django

django.setup()

from stickerloop.roles import Role  # noqa: E402
from stickerloop.services import token_issue  # noqa: E402
from tests import factories  # noqa: E402


def main() -> None:
    users = {role: factories.user(f"fuzz-{role}", [role]) for role in Role.values}
    make = factories.Factory()
    make.alignment_rule(["a red fox", "a blue whale"], users[Role.CURATOR])
    factories.running_campaign(raters=[users[Role.RATER], users[Role.ADMIN]], n_items=4)
    factories.dataset_version({"sticker-base": make.model("sticker-base")}, purpose="alignment")
    factories.prompt_set(["a cat", "a dog"])
    for role, user in users.items():
        print(role, token_issue(user=user).key)


if __name__ == "__main__":
    main()
