"""User-facing errors: each carries one line naming what is wrong and where.

The CLI turns any :class:`TagcacheError` into that line on stderr and exit status 2;
the library raises them and never prints.
"""

from __future__ import annotations


class TagcacheError(Exception):
    """Base of every error caused by user input (scenario, option, trace)."""


class LayoutError(TagcacheError):
    """A machine layout breaks a rule of the arm,mte-tag-storage binding.

    ``region`` is the index of the tag region at fault, when one is.
    """

    def __init__(self, message: str, region: int | None = None) -> None:
        super().__init__(message)
        self.region = region


class ScenarioError(TagcacheError):
    """A scenario file or option has a bad key or value."""


class TraceError(TagcacheError):
    """A trace file cannot be read: names the file, the line or record, and what was expected."""


class CaptureError(TagcacheError):
    """A capture cannot be made here (not root, no tracefs, no memory cgroup, bad command)."""


class OptionError(TagcacheError):
    """A command-line option has a bad value or does not go with the others given."""


class ResourceError(TagcacheError):
    """The simulation would need more memory than this machine has: refused before it starts,
    with the estimate (pages simulated, bytes needed, bytes available)."""
