"""Translations: gettext catalogs (`web/translations/<lang>/LC_MESSAGES/messages.po`), Vietnamese first.

Message ids are English; the `.po` files are read with Babel at start-up (no compile step).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from babel.messages.pofile import read_po

LANGUAGES: tuple[str, ...] = ("vi", "en")
LANGUAGE_NAMES = {"vi": "Tiếng Việt", "en": "English"}


def N_(message: str) -> str:  # noqa: N802 - the gettext convention
    """Mark a string for translation where it is defined; translate it where it is shown."""
    return message


@dataclass(frozen=True)
class Catalogs:
    """msgid → msgstr for every language."""

    messages: dict[str, dict[str, str]]

    @classmethod
    def load(cls) -> Catalogs:
        messages: dict[str, dict[str, str]] = {}
        root = resources.files("web").joinpath("translations")
        for lang in LANGUAGES:
            # One .po file per area (messages.po, registry.po, …), so translators and features don't collide.
            messages[lang] = {}
            folder = root.joinpath(lang, "LC_MESSAGES")
            for po in sorted((e for e in folder.iterdir() if e.name.endswith(".po")), key=lambda e: e.name):
                with po.open("rb") as fh:
                    catalog = read_po(fh, locale=lang)
                messages[lang].update({str(m.id): str(m.string) for m in catalog if m.id and m.string})
        return cls(messages)

    def gettext(self, lang: str, message: str) -> str:
        return self.messages.get(lang, {}).get(message) or message

    def translator(self, lang: str) -> Translator:
        return Translator(self, lang)


@dataclass(frozen=True)
class Translator:
    catalogs: Catalogs
    lang: str

    def __call__(self, message: str, **values: Any) -> str:
        text = self.catalogs.gettext(self.lang, message)
        return text.format(**values) if values else text

    def json(self, messages: list[str], keyed: dict[str, str] | None = None) -> str:
        """A JSON object of translated strings for a page's script (`<` escaped for inline use): each message
        under itself, and each of `keyed` (key → message, e.g. an error code's text) under its key."""
        strings = {m: self(m) for m in messages} | {k: self(m) for k, m in (keyed or {}).items()}
        return json.dumps(strings, ensure_ascii=False).replace("<", "\\u003c")
