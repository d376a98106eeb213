"""The bundled BibTeX (references.bib beside this file, plus valstat's own entry) and the
citations written `[@key]` or `[@a; @b]` in the report's text: author-year for HTML and Markdown,
\\cite{...} for LaTeX, full references for the reference lists. The author-year labels come from
the BibTeX entries, so every key that references.bib holds renders.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
CITE_RE = re.compile(r"\[(@[A-Za-z0-9_]+(?:\s*;\s*@[A-Za-z0-9_]+)*)\]")
_PAIRS = {")": "(", "）": "（"}


def valstat_bib() -> str:
    """The BibTeX entry for valstat itself, at the installed version (as in CITATION.cff).

    @misc, not biblatex's @software: plain BibTeX styles (plain, unsrt, plainnat...) know no
    @software and drop its version, so the version is in howpublished, which they and biblatex
    print; no version field, which biblatex would print a second time."""
    from valstat import __version__

    return ("@misc{valstat,\n"
            "  author  = {{The valstat maintainers}},\n"
            "  title   = {valstat: measuring why small-validation-set {CNN} training curves "
            "look the way they do},\n"
            "  year    = {2026},\n"
            f"  howpublished = {{Python package, version {__version__}, MIT licence}}\n"
            "}")


def bib_text() -> str:
    return (HERE / "references.bib").read_text(encoding="utf-8") + "\n\n" + valstat_bib() + "\n"


def parse_bib(text: str) -> dict:
    """key -> {"type", fields...} for the (well-formed, brace-delimited) bundled BibTeX."""
    entries = {}
    for match in re.finditer(r"@(\w+)\s*\{\s*([^,\s]+)\s*,", text):
        kind, key = match.group(1).lower(), match.group(2)
        depth, i = 1, match.end()
        while depth and i < len(text):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        body = text[match.end():i - 1]
        fields = {"type": kind, "raw": text[match.start():i]}
        for f in re.finditer(r"(\w+)\s*=\s*\{", body):
            depth, j = 1, f.end()
            while depth and j < len(body):
                depth += {"{": 1, "}": -1}.get(body[j], 0)
                j += 1
            fields[f.group(1).lower()] = body[f.end():j - 1]
        entries[key] = fields
    return entries


def _plain_tex(value: str) -> str:
    value = value.replace('{\\"e}', "ë").replace("{\\c{c}}", "ç").replace("$\\chi^2$", "χ²")
    value = re.sub(r"\\url\{([^}]*)\}", r"\1", value)
    return value.replace("{", "").replace("}", "").replace("--", "–")


def format_reference(entry: dict) -> str:
    """One plain-text reference: Authors (Year). Title. Venue, volume(number), pages. doi."""
    names = [a.strip() for a in _plain_tex(entry.get("author", "")).split(" and ") if a.strip()]
    authors = []
    for name in names[:6]:
        if name == "others":
            continue
        last, _, first = name.partition(",")
        initials = " ".join(f"{part[0]}." for part in first.replace(".", " ").split() if part)
        authors.append(f"{last.strip()}, {initials}" if initials else last.strip())
    if len(names) > 6 or "others" in names:
        authors.append("et al.")
    text = ", ".join(authors)
    text = f"{text} ({entry.get('year', '')}). {_plain_tex(entry.get('title', ''))}."
    venue = entry.get("journal") or entry.get("booktitle") or entry.get("publisher") \
        or entry.get("howpublished")
    if venue:
        text += f" {_plain_tex(venue)}"
        if entry.get("volume"):
            text += f", {entry['volume']}"
            if entry.get("number"):
                text += f"({entry['number']})"
        if entry.get("pages"):
            text += f", {_plain_tex(entry['pages'])}"
        text += "."
    if entry.get("doi"):
        text += f" doi:{entry['doi']}"
    elif entry.get("eprint"):
        text += f" arXiv:{entry['eprint']}"
    return text


@functools.lru_cache(maxsize=1)
def bib_entries() -> dict:
    """parse_bib of the bundled BibTeX, read once."""
    return parse_bib(bib_text())


def _authors(entry: dict) -> list:
    """Surnames of an entry's authors in order; "others" kept as the last name."""
    names = [a.strip() for a in _plain_tex(entry.get("author", "")).split(" and ") if a.strip()]
    return [name.partition(",")[0].strip() for name in names]


def cite_label(key: str) -> str:
    """Author-year label of a BibTeX key: 'Wilson 1927', 'Clopper & Pearson 1934',
    'Brown et al. 2001' (three or more, or "and others", as APA does).
    A key the bundled BibTeX lacks is a programming error (KeyError)."""
    entry = bib_entries()[key]
    names = _authors(entry)
    if len(names) > 2 or "others" in names:
        who = f"{names[0]} et al."
    elif len(names) > 1:
        who = ", ".join(names[:-1]) + " & " + names[-1]
    else:
        who = names[0] if names else key
    return f"{who} {entry.get('year', '')}".strip()


def cite_keys(text: str) -> list:
    keys = []
    for match in CITE_RE.finditer(text):
        keys += [k.strip().lstrip("@") for k in match.group(1).split(";")]
    return keys


def cite_plain(text: str) -> str:
    """'[@wilson1927; @brown2001]' -> '(Wilson 1927; Brown, Cai & DasGupta 2001)'.

    A citation already inside parentheses joins them ('(... gives fewer; Noether 1987)',
    '（……；Noether 1987）') rather than opening a second pair."""
    pieces, last = [], 0
    for match in re.finditer(r"(\s*)" + CITE_RE.pattern, text):
        labels = "; ".join(cite_label(k.strip().lstrip("@")) for k in match.group(2).split(";"))
        opened = _open_parenthesis(text[:match.start()])
        joined = {"(": f"; {labels}", "（": f"；{labels}"}.get(opened, f"{match.group(1)}({labels})")
        pieces += [text[last:match.start()], joined]
        last = match.end()
    return "".join(pieces + [text[last:]])


def _open_parenthesis(text: str) -> str | None:
    """The innermost parenthesis, '(' or '（', still open at the end of `text` (None if none)."""
    stack = []
    for ch in text:
        if ch in _PAIRS.values():
            stack.append(ch)
        elif ch in _PAIRS and stack and stack[-1] == _PAIRS[ch]:
            stack.pop()
    return stack[-1] if stack else None


def cite_latex(text: str) -> str:
    """'[@wilson1927; @brown2001]' -> '~\\cite{wilson1927,brown2001}' (after escaping)."""
    def repl(match):
        keys = [k.strip().lstrip("@") for k in match.group(1).split(";")]
        return "~\\cite{" + ",".join(keys) + "}"
    return CITE_RE.sub(repl, text)
