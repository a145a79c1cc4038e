"""The option table: the parser, the ``%jgrad?`` usage text and the README's table agree with it."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from jaxgrad_magic.errors import JaxGradUsageError
from jaxgrad_magic.magics import JaxGradMagics
from jaxgrad_magic.spec import MAGIC, OPTION_TABLE, OPTIONS, Options, parse_line, readme_table

README = Path(__file__).resolve().parent.parent / "README.md"


def _readme_options_table() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("| option | meaning |")
    return text[start : text.index("\n\n", start) + 1]


def test_the_readme_table_is_the_rendered_one() -> None:
    assert _readme_options_table() == readme_table(), (
        "README.md's options table differs from jaxgrad_magic.spec.OPTION_TABLE; paste in the output of "
        "`python -c 'from jaxgrad_magic.spec import readme_table; print(readme_table())'`"
    )


@pytest.mark.parametrize("kind", list(MAGIC))
def test_the_usage_lists_exactly_the_options_the_magic_accepts(kind: str) -> None:
    doc = getattr(JaxGradMagics, MAGIC[kind]).__doc__
    section = doc[doc.index("Options are key=value words") : doc.index("Examples::")]
    listed = tuple(re.findall(r"^  (\w+)=", section, flags=re.MULTILINE))
    assert listed == OPTIONS[kind]


@pytest.mark.parametrize("kind", list(MAGIC))
def test_the_parser_accepts_exactly_the_options_of_the_table(kind: str) -> None:
    for option in OPTION_TABLE:
        line = f"{option.name}=1"
        if kind in option.kinds:
            assert parse_line(kind, line).source(option.name) == "1"
        else:
            with pytest.raises(JaxGradUsageError, match=f"no option '{option.name}'"):
                parse_line(kind, line)


def test_every_option_has_a_typed_field_and_one_row() -> None:
    names = [option.name for option in OPTION_TABLE]
    assert len(names) == len(set(names))
    fields = {f.name for f in dataclasses.fields(Options)}
    for option in OPTION_TABLE:
        assert option.name in fields, option.name
        assert option.kinds and set(option.kinds) <= set(MAGIC), option.name
