"""Asking the user before a paid job, and what their answer allows.

The question is asked through elicitation, when the client can show a form: a mid-call `elicitation/create` on
clients before 2026-07-28, an input-required round trip after (the SDK's `Resolve`/`Elicit`). The question is
word for word the same on every round (summaries.consent_question), since an answer counts only for the question
it answered. An accepted answer in an input-required round buys one submission (answers.py).
"""

from __future__ import annotations

from typing import Annotated, Final

from mcp.server.elicitation import AcceptedElicitation, ElicitationResult
from mcp.server.mcpserver import Resolve
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.resolve import Elicit
from pydantic import BaseModel, Field

from .. import answers
from .args import CurrentCall
from .extract_plan import Planned


class Consent(BaseModel):
    """The form the user sees before a paid job (elicitation): accepting it is the consent."""

    submit: bool = Field(
        default=True,
        title="Submit this paid job",
        description="Leave it checked and accept to submit; MusicGPT charges credits for the job.",
    )


# What the resolver answers when it does not ask the user.
NO_SUBMIT: Final = "no-submit"  # an identical job will be reused (or is under way): nothing to pay
UNASKED: Final = "unasked"  # MUSICGPT_MCP_CONFIRM=never, or auto with a client that can neither ask nor show the view
CANNOT_ASK: Final = "cannot-ask"  # MUSICGPT_MCP_CONFIRM=always with a client that can neither
IN_VIEW: Final = "in-view"  # the user approves in the stem view: the body makes a quote, and sends nothing


async def _consent(call: CurrentCall, plan: Planned) -> Elicit[Consent] | str:
    if not plan.submits:
        return NO_SUBMIT
    if plan.asker == "view":
        return IN_VIEW
    if plan.asker is None:
        return CANNOT_ASK if call.settings.confirm == "always" else UNASKED
    return Elicit(plan.question, Consent)


# The user's answer (or why nobody was asked), as a parameter of the tool.
Answer = Annotated[ElicitationResult[Consent], Resolve(_consent)]


def consented(consent: ElicitationResult[Consent]) -> bool:
    """Whether the body may pay for a new job; raises when the user said no."""
    if not isinstance(consent, AcceptedElicitation):
        raise ToolError(
            "The user declined the paid extraction, so nothing was submitted and nothing was charged. Do not "
            "call extract_stems again unless the user asks for it."
        )
    answer = consent.data
    if isinstance(answer, Consent):
        if not answer.submit:
            raise ToolError(
                "The user unchecked 'Submit this paid job', so nothing was submitted and nothing was charged."
            )
        return True
    if answer == CANNOT_ASK:
        raise ToolError(
            "This server is set to ask the user before every paid job (MUSICGPT_MCP_CONFIRM=always), and this "
            "MCP client cannot show such a question (it does not support elicitation). Nothing was submitted. "
            "Use a client that supports elicitation, or set MUSICGPT_MCP_CONFIRM=auto in the server's environment."
        )
    return answer in (UNASKED, IN_VIEW)


def in_view(consent: ElicitationResult[Consent]) -> bool:
    """Whether the user approves in the stem view (the call then makes a quote, not a job)."""
    data: object = consent.data if isinstance(consent, AcceptedElicitation) else None
    return data == IN_VIEW


def spent_answer(consent: ElicitationResult[Consent]) -> str | None:
    """The answer this submission spends: one the user gave in an input-required round (2026-07-28)."""
    accepted = isinstance(consent, AcceptedElicitation) and isinstance(consent.data, Consent)
    return answers.current() if accepted else None
