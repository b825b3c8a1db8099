"""The command that runs a recipe on a cluster, for the external launcher (no torch)."""

from __future__ import annotations

import shlex

LAUNCH_TOOLS = ("accelerate", "torchrun")
MODULE = "training_bridge.recipes.train"


def render_launch_command(
    spec_path: str,
    *,
    tool: str = "accelerate",
    num_processes: int = 1,
    mixed_precision: str = "no",
) -> str:
    """The exact shell command that runs the spec at ``spec_path`` on one machine.

    The run always resumes from the newest checkpoint in its output folder, so the same command
    continues a run that died. ``accelerate launch`` takes the processes and mixed precision;
    under ``torchrun`` the recipe's own accelerate reads them from the environment and the spec.

    Raises:
        ValueError: unknown ``tool`` or ``num_processes`` outside 1..64.
    """
    if tool not in LAUNCH_TOOLS:
        raise ValueError(f"`tool` has to be one of {', '.join(LAUNCH_TOOLS)} but is {tool!r}.")
    if (
        isinstance(num_processes, bool)
        or not isinstance(num_processes, int)
        or not (1 <= num_processes <= 64)
    ):
        raise ValueError(
            f"`num_processes` has to be an integer in [1, 64] but is {num_processes!r}."
        )
    tail = ["-m", MODULE, "--spec", spec_path, "--resume-from-checkpoint", "latest"]
    if tool == "accelerate":
        head = [
            "accelerate",
            "launch",
            "--num_processes",
            str(num_processes),
            "--num_machines",
            "1",
            "--mixed_precision",
            mixed_precision,
            "--dynamo_backend",
            "no",
        ]
    else:
        head = ["torchrun", "--standalone", "--nproc_per_node", str(num_processes)]
    return shlex.join(head + tail)
