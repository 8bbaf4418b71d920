"""click's own words (usage lines, the option list, its error messages) in
the chosen language.

click looks them up with `gettext.gettext`, i.e. the `gettext` module's
global domain, which holds no Thai; and it does so when a decorator runs
(``click.Path`` names itself "file" at import).  So its modules are pointed
at our catalogue before any command is defined: cli/common.py imports this
module, and every command module imports cli/common.py first.
"""

from __future__ import annotations

import click.core
import click.decorators
import click.exceptions
import click.formatting
import click.parser
import click.termui
import click.types

from mailbackup import i18n
from mailbackup.i18n import N_, ngettext

# The messages of click 8 that a user of mailbackup meets; the catalogue translates them.
CLICK_MESSAGES = (
    N_("Usage:"), N_("Options"), N_("Commands"), N_("Show this message and exit."), N_("Show the version and exit."),
    N_("Error: {message}"), N_("Try '{command} {option}' for help."), N_("Missing argument"), N_("Missing option"),
    N_("Missing parameter"), N_("No such option {name!r}."), N_("No such command {name!r}."), N_("Aborted!"),
    N_("Repeat for confirmation"), N_("Error: The two entered values do not match."), N_("Error: invalid input"),
    N_("Invalid value for {param_hint}: {message}"), N_("Invalid value: {message}"), N_("default: {default}"),
    N_("{value!r} is not a valid {number_type}."), N_("{value} is not in the range {range}."),
    N_("{name} {filename!r} does not exist."), N_("file"), N_("directory"), N_("path"),
    N_("%(prog)s, version %(version)s"),
    N_("{name} {filename!r} is a file."), N_("{name} {filename!r} is a directory."),
    N_("{name} {filename!r} is not readable."), N_("{name} {filename!r} is not writable."),
    N_("Missing command."), N_("Choose from:\n\t{choices}"), N_("Missing parameter: {param_name}"),
    N_("{value!r} is not a valid boolean. Recognized values: {states}"), N_("Option {name!r} does not take a value."),
    N_("Could not open file {filename!r}: {message}"), N_("Do you want to continue?"),
)


def _click_plurals() -> None:
    """Never called: marks click's messages with a plural for the catalogue."""
    ngettext("{value!r} is not {choice}.", "{value!r} is not one of {choices}.", 2)
    ngettext("Got unexpected extra argument ({args})", "Got unexpected extra arguments ({args})", 2)
    ngettext("Option {name!r} requires an argument.", "Option {name!r} requires {nargs} arguments.", 2)
    ngettext("Did you mean {possibility}?", "(Did you mean one of: {possibilities}?)", 2)
CLICK_MODULES = (click.core, click.decorators, click.exceptions, click.formatting, click.parser, click.termui,
                 click.types)


def translate_click() -> None:
    """Point each click module's `_` and `ngettext` (bound at its import) at our catalogue."""
    for module in CLICK_MODULES:
        if hasattr(module, "_"):
            module._ = i18n._  # type: ignore[attr-defined]
        if hasattr(module, "ngettext"):
            module.ngettext = i18n.ngettext  # type: ignore[attr-defined]


translate_click()
