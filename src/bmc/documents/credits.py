"""The credit every client deliverable carries: pages, slides and the PDF.

The Business Model Canvas is Strategyzer's, published under CC BY-SA 3.0, whose attribution
clause asks every reproduction to name the author and the licence. The Value Proposition
Canvas is Strategyzer's too but not under that licence, so bmc never copies its artwork (the
square beside the circle): it sets the same questions out in a table of its own and names
the method and its author wherever that table appears.
"""

from __future__ import annotations

BMC_CREDIT = (
    "The Business Model Canvas is by Strategyzer AG (strategyzer.com), used under the "
    "Creative Commons Attribution-ShareAlike 3.0 licence "
    "(CC BY-SA 3.0, creativecommons.org/licenses/by-sa/3.0)."
)
VPC_CREDIT = (
    'The "Value Proposition Canvas" is by Strategyzer AG (strategyzer.com) and not under '
    "that licence; its parts are set out in a table of our own."
)


def credit(*, value_proposition_canvas: bool = False) -> str:
    """The credit line for a deliverable, naming the Value Proposition Canvas when it shows
    one."""
    return f"{BMC_CREDIT} {VPC_CREDIT}" if value_proposition_canvas else BMC_CREDIT
