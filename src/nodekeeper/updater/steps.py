"""The one table of an update's steps: what each does, what recovery does after a crash
in it, and how an error in it ends.

Each step is journaled (``state/update.json``) *before* its side effects, so after a
SIGKILL or a power cut the journal names the step that was in flight and this table says
how to get back to a node running a verified version (shape after the Mender client's
ArtifactInstall / ArtifactCommit / ArtifactRollback states). ``recovery.plan_recovery``
reads ``STEPS[step].after_crash`` to choose its action; the state machine
(``machine.py``) carries the steps out; this module's ``__doc__`` ends with the table
rendered from the data, so the documentation is the code (``python -m
nodekeeper.updater.steps`` prints it).

A journal write that fails in any step stops the update before that step's side effects;
the step left in flight is recovered the same way as after a crash before any new update.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from enum import StrEnum

from .state import Step


class Action(StrEnum):
    """What recovery does with the step it finds in flight at keeper start."""

    NOTHING = "nothing"  # no step in flight
    ABANDON = "abandon"  # a pre-switch step: the old node never stopped
    RESUME_PROBATION = "resume-probation"
    FINISH_COMMIT = "finish-commit"
    FINISH_ROLLBACK = "finish-rollback"
    FINISH_HOLD = "finish-hold"


@dataclass(frozen=True)
class StepRule:
    """One row: a step, its side effects, and its two ways out."""

    step: Step
    side_effects: str
    after_crash: Action
    recovery: str  # what ``after_crash`` means for the node and the files
    on_error: str  # how an error in this step ends the update


_PRE_SWITCH_ERROR = (
    "failed: the old node never stopped; the version is not tried again if the error "
    "marks the release failed (errors.py), otherwise the next cycle retries it"
)

STEPS: dict[Step, StepRule] = {
    rule.step: rule
    for rule in (
        StepRule(
            Step.DOWNLOAD,
            "downloads/<name>.part grows",
            Action.ABANDON,
            "the old node runs on; the .part is kept and resumed next cycle",
            _PRE_SWITCH_ERROR,
        ),
        StepRule(
            Step.VERIFY,
            ".part → <name>.zip (size + sha256); a bad file is deleted",
            Action.ABANDON,
            "the old node runs on; an existing .zip is re-hashed before it is reused",
            _PRE_SWITCH_ERROR,
        ),
        StepRule(
            Step.UNPACK,
            "versions/<p>/<v>.tmp-* → rename to versions/<p>/<v>",
            Action.ABANDON,
            "the old node runs on; .tmp-* leftovers are deleted",
            _PRE_SWITCH_ERROR,
        ),
        StepRule(
            Step.PREFLIGHT,
            "runs `<artifact> version`",
            Action.ABANDON,
            "the old node runs on; nothing to undo",
            _PRE_SWITCH_ERROR,
        ),
        StepRule(
            Step.SWITCH,
            "stop the old version, start the new one (supervisor)",
            Action.RESUME_PROBATION,
            "run the new version and start its probation from zero",
            "probation judges the new version's exits (by command generation)",
        ),
        StepRule(
            Step.PROBATION,
            "watch the new version's pulse and exits",
            Action.RESUME_PROBATION,
            "run the new version and start its probation from zero",
            "roll back to the old version; hold on the new one if a migration ran or "
            "there is no old version",
        ),
        StepRule(
            Step.COMMIT,
            "report; current = new, previous = old",
            Action.FINISH_COMMIT,
            "run the new version and finish the commit",
            "a journal write that fails is finished like a crash here",
        ),
        StepRule(
            Step.ROLLBACK,
            "switch back to the old version; report",
            Action.FINISH_ROLLBACK,
            "run the old version and finish the rollback",
            "hold on the new version if the old one refuses the database as too new",
        ),
        StepRule(
            Step.HOLD,
            "stay on the new version; report loudly",
            Action.FINISH_HOLD,
            "run the new version and finish the hold",
            "stays held until a newer version is announced",
        ),
    )
}


def render(rules: dict[Step, StepRule] = STEPS) -> str:
    """The table as indented text (for this module's ``__doc__`` and the docs)."""
    lines = []
    for rule in rules.values():
        lines.append(f"    {rule.step.value}")
        for label, text in (
            ("does", rule.side_effects),
            ("after a crash", f"{rule.after_crash.value}: {rule.recovery}"),
            ("on an error", rule.on_error),
        ):
            lines += textwrap.wrap(
                text,
                width=88,
                initial_indent=f"        {label + ':':<15} ",
                subsequent_indent=" " * 24,
            )
    return "\n".join(lines)


__doc__ = f"{__doc__}\nThe steps, in order:\n\n{render()}\n"

if __name__ == "__main__":
    print(render())
