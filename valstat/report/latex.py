"""Thesis kit: LaTeX tables (booktabs) with CSV twins, figures.tex, methods.tex/.md, BibTeX.

Every piece of text that goes into a .tex file passes through `escape`, so data-derived text
(class folder names, experiment and arm names) can hold LaTeX's special characters safely.
"""

from __future__ import annotations

import re
from pathlib import Path

from valstat.report.bib import bib_entries, cite_keys, cite_latex, cite_plain, format_reference

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
    # Every table is set in a box first and shrunk to the text width only when wider (never
    # enlarged): the widths depend on the data (arm names, long method names), so no table
    # can be known to fit. Box 0 is TeX's scratch box, local to the table environment.
    fitted = (f"  \\sbox0{{%\n{tabular}%\n  }}%\n"
              "  \\ifdim\\wd0>\\linewidth\\resizebox{\\linewidth}{!}{\\usebox0}"
              "\\else\\usebox0\\fi\n")
    return ("% Written by valstat. Needs \\usepackage{booktabs,graphicx}.\n"
            "\\begin{table}[tbp]\n  \\centering\n  \\small\n"
            f"  \\caption{{{escape(table.caption, lang)}}}\n"
            f"  \\label{{tab:valstat-{table.name}}}\n{fitted}\\end{{table}}\n")


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
    entries = bib_entries()
    refs = [f"- {format_reference(entries[k])}" for k in keys if k in entries]
    return (f"## {title}\n\n{cite_plain(text)}\n\n### {references_title}\n\n"
            + "\n".join(refs) + "\n")


# --------------------------------------------------------------------------- BibTeX

def write_bib(keys, dest: Path) -> Path:
    """references.bib holding the entries for `keys` (in citation order)."""
    entries = bib_entries()
    chosen = [entries[k]["raw"] for k in dict.fromkeys(keys) if k in entries]
    dest.write_text("% References for the methods this report used (written by valstat).\n\n"
                    + "\n\n".join(chosen) + "\n", encoding="utf-8")
    return dest
