"""Thesis kit: LaTeX tables (booktabs) with CSV twins, figures.tex, methods.tex/.md, BibTeX.

Every piece of text that goes into a .tex file passes through `escape`, so data-derived text
(class folder names, experiment and arm names) can hold LaTeX's special characters safely.
"""

from __future__ import annotations

import re
from pathlib import Path

from valstat.report.text import HERE, cite_keys, cite_latex, cite_plain

_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "<": r"\textless{}", ">": r"\textgreater{}", '"': r"\textquotedbl{}", "|": r"\textbar{}",
}
_UNICODE = {
    "−": r"\ensuremath{-}", "±": r"\ensuremath{\pm}", "×": r"\ensuremath{\times}",
    "·": r"\ensuremath{\cdot}", "≥": r"\ensuremath{\geq}", "≤": r"\ensuremath{\leq}",
    "α": r"\ensuremath{\alpha}", "β": r"\ensuremath{\beta}", "γ": r"\ensuremath{\gamma}",
    "σ": r"\ensuremath{\sigma}", "χ": r"\ensuremath{\chi}", "½": r"\ensuremath{1/2}",
    "→": r"\ensuremath{\rightarrow}", "↓": r"\ensuremath{\downarrow}",
    "↑": r"\ensuremath{\uparrow}", "²": r"\ensuremath{^{2}}", "…": r"\ldots{}",
    "–": "--", "—": "---", "\u00a0": "~",
}
_QUOTES = {"“": "``", "”": "''", "‘": "`", "’": "'"}


def escape(text, lang: str = "en") -> str:
    """Escape `text` for LaTeX body text (specials, and math-like Unicode symbols).

    Chinese text is left as it is (compile with XeLaTeX and ctex); in English, curly quotes
    become TeX quotes so pdfLaTeX handles them too.
    """
    text = "" if text is None else str(text)
    table = dict(_SPECIAL)
    table.update(_UNICODE)
    if lang != "zh":
        table.update(_QUOTES)
    return "".join(table.get(ch, ch) for ch in text)


def escape_with_cites(text: str, lang: str = "en") -> str:
    """Escape text that holds [@key] citations, then turn those into \\cite{...}."""
    pieces, last = [], 0
    for match in re.finditer(r"\[@[^\]]*\]", text):
        pieces.append(escape(text[last:match.start()], lang))
        pieces.append(cite_latex(match.group(0)))
        last = match.end()
    pieces.append(escape(text[last:], lang))
    return "".join(pieces).replace(" ~\\cite", "~\\cite")


# --------------------------------------------------------------------------- tables

def table_tex(table, lang: str) -> str:
    columns = len(table.columns)
    align = table.align or ("l" + "r" * (columns - 1))
    head = " & ".join(escape(c, lang) for c in table.columns) + r" \\"
    body = "\n".join("    " + " & ".join(escape(v, lang) for v in row) + r" \\"
                     for row in table.rows)
    tabular = (f"  \\begin{{tabular}}{{{align}}}\n    \\toprule\n    {head}\n    \\midrule\n"
               f"{body}\n    \\bottomrule\n  \\end{{tabular}}")
    if columns > 6:
        tabular = f"  \\resizebox{{\\linewidth}}{{!}}{{%\n{tabular}%\n  }}"
    return ("% Written by valstat. Needs \\usepackage{booktabs,graphicx}.\n"
            "\\begin{table}[tbp]\n  \\centering\n  \\small\n"
            f"  \\caption{{{escape(table.caption, lang)}}}\n"
            f"  \\label{{tab:valstat-{table.name}}}\n{tabular}\n\\end{{table}}\n")


def write_tables(tables: list, dest: Path, lang: str) -> list:
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for table in tables:
        tex = dest / f"{table.name}.tex"
        tex.write_text(table_tex(table, lang), encoding="utf-8")
        csv = dest / f"{table.name}.csv"
        table.frame.to_csv(csv, index=False)
        written += [tex, csv]
    return written


# --------------------------------------------------------------------------- figures, methods

def figures_tex(figures: list, lang: str, folder: str = "figures") -> str:
    lines = ["% Written by valstat: one figure environment per figure.",
             "% Needs \\usepackage{graphicx}; paths are relative to the report folder",
             "% (\\graphicspath{{report/}} or \\input this file from there).", ""]
    for fig in figures:
        width = "0.62\\linewidth" if fig.stem == "selection" else "\\linewidth"
        lines += ["\\begin{figure}[tbp]", "  \\centering",
                  f"  \\includegraphics[width={width}]{{{folder}/{fig.stem}.pdf}}",
                  f"  \\caption{{{escape(fig.caption, lang)}}}",
                  f"  \\label{{{fig.label}}}", "\\end{figure}", ""]
    return "\n".join(lines)


def methods_tex(text: str, lang: str) -> str:
    return ("% Written by valstat: the methods paragraph; cites keys of references.bib.\n"
            + escape_with_cites(text, lang) + "\n")


def methods_md(text: str, title: str, references_title: str) -> str:
    keys = list(dict.fromkeys(cite_keys(text)))
    entries = parse_bib(bib_text())
    refs = [f"- {format_reference(entries[k])}" for k in keys if k in entries]
    return (f"## {title}\n\n{cite_plain(text)}\n\n### {references_title}\n\n"
            + "\n".join(refs) + "\n")


# --------------------------------------------------------------------------- BibTeX

def valstat_bib() -> str:
    """The BibTeX entry for valstat itself, at the installed version (as in CITATION.cff)."""
    from valstat import __version__

    return ("@software{valstat,\n"
            "  author  = {{The valstat maintainers}},\n"
            "  title   = {valstat: measuring why small-validation-set {CNN} training curves "
            "look the way they do},\n"
            f"  version = {{{__version__}}},\n"
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


def write_bib(keys, dest: Path) -> Path:
    """references.bib holding the entries for `keys` (in citation order)."""
    entries = parse_bib(bib_text())
    chosen = [entries[k]["raw"] for k in dict.fromkeys(keys) if k in entries]
    dest.write_text("% References for the methods this report used (written by valstat).\n\n"
                    + "\n\n".join(chosen) + "\n", encoding="utf-8")
    return dest
