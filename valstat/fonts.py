"""Fonts for figures and pages: a real CJK font that valstat's own install provides.

Chinese text (`--lang zh`) is drawn with WenQuanYi Micro Hei, shipped inside the `mpl-font`
wheel (a pip dependency of valstat). It is chosen because its glyphs are TrueType outlines
(`glyf`), so matplotlib embeds it in PDFs as a CID TrueType font (pdf.fonttype 42, no Type 3),
it covers Simplified Chinese, and it is a static font at regular weight. (The Noto Sans CJK .otf
files on PyPI are CFF outlines, which matplotlib embeds as "CID Type 0C", not TrueType; the
Noto Sans SC variable .ttf draws at its default instance, Thin.)

Nothing is downloaded and no system font is needed: the file is found through the installed
package without importing it (its __init__ would import pyplot and change rcParams).
"""

from __future__ import annotations

import base64
import functools
import importlib.util
import io
from pathlib import Path

from valstat.errors import ValstatError

CJK_FAMILY = "WenQuanYi Micro Hei"
LATIN_FAMILY = "DejaVu Sans"   # ships with matplotlib
_CJK_PACKAGE = "mpl_font"
_CJK_RELATIVE = Path("fonts") / "wqy" / "wqy-microhei.ttc"


def find_cjk_font() -> Path | None:
    """Path of the CJK TrueType collection shipped by the `mpl-font` package, or None."""
    spec = importlib.util.find_spec(_CJK_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / _CJK_RELATIVE
        if path.is_file():
            return path
    return None


def cjk_font_path() -> Path:
    """find_cjk_font, or ValstatError when the package is missing (valstat's install pulls it in)."""
    path = find_cjk_font()
    if path is None:
        raise ValstatError("the Chinese font is missing: reinstall valstat (it depends on the "
                        "'mpl-font' package, which ships WenQuanYi Micro Hei), or use --lang en")
    return path


@functools.lru_cache(maxsize=None)
def register_cjk_font() -> str:
    """Add the CJK font to matplotlib's font manager (once per process); return its family."""
    from matplotlib import font_manager

    path = str(cjk_font_path())
    if not any(entry.fname == path for entry in font_manager.fontManager.ttflist):
        font_manager.fontManager.addfont(path)
    return font_manager.FontProperties(fname=path).get_name()


def font_family(lang: str) -> list[str]:
    """matplotlib `font.family` list for a report language.

    DejaVu Sans for Latin text and digits, with the CJK font as fallback for every glyph DejaVu
    lacks (matplotlib >= 3.6 falls back glyph by glyph; a PDF embeds only fonts it uses).
    Chinese requires the CJK font (ValstatError without it); English uses it when it is installed,
    so Chinese class folder names in an English report are not drawn as boxes either.
    """
    if lang == "zh" or find_cjk_font() is not None:
        return [LATIN_FAMILY, register_cjk_font()]
    return [LATIN_FAMILY]


def css_font_face(text: str, family: str = "valstat-cjk") -> str:
    """An inline `@font-face` rule with the CJK font subset to the characters of `text`.

    The page stays one self-contained file and shows real glyphs even on a machine without any
    CJK font. Put the family FIRST in the page's font-family list: Chromium lays text out before
    a data-URI font has decoded and re-lays out only text whose first family is the new font,
    so as a later fallback it left tofu boxes in some headings. `unicode-range` lists exactly
    the subset's characters, so Latin text goes straight to the next family. Only the non-ASCII characters are kept (Latin text uses the page's own font), as a
    zlib-compressed WOFF in a data URI; a page of Chinese report text is about 100 kB.
    Returns "" when `text` has no non-ASCII character.
    """
    from fontTools import subset
    from fontTools.ttLib import TTFont

    characters = sorted({ch for ch in text if ord(ch) > 0x7F})
    if not characters:
        return ""
    font = TTFont(str(cjk_font_path()), fontNumber=0, lazy=True)
    options = subset.Options()
    options.flavor = "woff"
    options.hinting = False
    options.layout_features = ["*"]
    options.drop_tables += ["FFTM"]
    options.name_IDs = [0, 1, 2, 3, 4, 5, 6]
    subsetter = subset.Subsetter(options)
    subsetter.populate(text="".join(characters))
    subsetter.subset(font)
    buffer = io.BytesIO()
    font.flavor = "woff"
    font.save(buffer)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    ranges = ",".join(f"U+{ord(ch):X}" for ch in characters)
    return ("@font-face{font-family:'%s';font-style:normal;font-weight:400;font-display:block;"
            "unicode-range:%s;src:url(data:font/woff;base64,%s) format('woff');}"
            % (family, ranges, data))
