"""The one rule for showing a captured value to a human.

Every byte tlssniff reads from a capture was chosen by whoever sent it: an SNI, an ALPN name, a
file name, anything that ends up in a verdict. Shown raw, such a value drives the terminal
(``ESC]0;title BEL`` sets the window title, ``ESC[2J`` clears the screen, OSC 8 makes links),
is interpreted as rich markup (``[link=file:///etc/passwd]``, ``evil[/]`` even raises) or emoji
(``:warning:``), becomes markdown or HTML in the report people paste into tickets, a formula
in a spreadsheet, or overflows a 16-bit length. The functions here make it data again, one
per channel, all on top of one escape:

* :func:`escape`: every character that is not printable (C0/C1 controls, DEL, format
  characters such as the bidi overrides U+202A-U+202E and U+2066-U+2069, line and paragraph
  separators, non-ASCII spaces, lone surrogates, unassigned code points) is written as a
  visible escape, ``\\x1b``, ``\\u202e``, ``\\U000e0001``, as tshark writes control bytes in
  its field output; a backslash itself becomes ``\\\\`` so that an escape always means an
  escape. "Printable" is :meth:`str.isprintable`: letters, marks, digits, punctuation,
  symbols and the ASCII space.
* :func:`shorten`: a display has no room for a 65 KB name; the first characters are kept
  and the full length is said (``aaaa…(65000 characters)``), never silently cut.

Machine outputs (JSON, JSONL, ECS, Parquet) keep the exact values and do not use this module:
JSON escapes what it must itself and stays valid whatever a value holds.

The value functions are small, pure and total: they take any ``str`` (or ``None``, or anything
``str()`` accepts) and never raise. :func:`console` makes the rich consoles they print on.
"""

from __future__ import annotations

import html
import re

from rich.text import Text

# Longest shown value (in characters, after escaping) per channel. The table folds long
# values over several lines; these bounds keep one hostile value from filling the screen.
TERMINAL_LIMIT = 256  # any DNS name (at most 253 characters) is shown whole
DOCUMENT_LIMIT = 512  # summary.md, report.html
LABEL_LIMIT = 60  # chart labels
CSV_LIMIT = 0  # 0: CSV cells are not shortened (a spreadsheet has room; the value stays whole)
COMMENT_LIMIT = 16384  # bytes of one pcapng packet comment (the option length is 16 bits)

_ELLIPSIS = "…"


def _escape_char(c: str) -> str:
    n = ord(c)
    if c == "\\":
        return "\\\\"
    if n < 0x100:
        return f"\\x{n:02x}"
    if n < 0x10000:
        return f"\\u{n:04x}"
    return f"\\U{n:08x}"


def _is_plain(s: str) -> bool:
    return s.isprintable() and "\\" not in s


def escape(value: object) -> str:
    """``value`` with every non-printable character (and the backslash) as a visible escape.

    The result holds no control character at all (no ESC, BEL, NUL, CR, LF, DEL, C1, bidi
    override): what a terminal, a markdown renderer or tshark shows is what was captured.
    ``None`` becomes the empty string.
    """
    if value is None:
        return ""
    s = value if isinstance(value, str) else str(value)
    if _is_plain(s):
        return s
    return "".join(c if c.isprintable() and c != "\\" else _escape_char(c) for c in s)


def _cut(s: str, budget: int, size=len) -> tuple[str, bool]:
    """The escaped form of ``s``, cut between escapes so that ``size`` of it is at most
    ``budget``; and whether anything was left out."""
    out: list[str] = []
    used = 0
    for c in s:
        piece = c if c.isprintable() and c != "\\" else _escape_char(c)
        n = size(piece)
        if used + n > budget:
            return "".join(out), True
        out.append(piece)
        used += n
    return "".join(out), False


def shorten(value: object, limit: int = TERMINAL_LIMIT) -> str:
    """:func:`escape` of ``value``, at most about ``limit`` characters: a longer value keeps its
    first characters and says its full length, ``aaaa…(65000 characters)``. The length is that
    of the captured value (for SNI and ALPN, decoded one character per byte, its length on the
    wire). ``limit`` <= 0: no shortening."""
    if value is None:
        return ""
    s = value if isinstance(value, str) else str(value)
    if limit <= 0 or (len(s) <= limit and _is_plain(s)):
        return escape(s)
    head, cut = _cut(s, limit)
    if not cut:
        return head
    return f"{head}{_ELLIPSIS}({len(s)} characters)"


def clip(value: object, limit: int) -> str:
    """The raw value cut to ``limit`` characters with its full length said, *not* escaped: for
    a captured value inside a longer text that a channel function (:func:`for_comment`...)
    escapes as a whole afterwards (escaping twice would double the backslashes)."""
    if value is None:
        return ""
    s = value if isinstance(value, str) else str(value)
    if limit <= 0 or len(s) <= limit:
        return s
    return f"{s[:limit]}{_ELLIPSIS}({len(s)} characters)"


def for_terminal(value: object, limit: int = TERMINAL_LIMIT) -> str:
    """A value for a terminal line written as plain text (``print``, or a rich print with
    ``markup=False`` and ``emoji=False``): escaped and shortened. Inside rich markup, use
    :func:`terminal_text` or :func:`for_markup` instead."""
    return shorten(value, limit)


def for_markup(value: object, limit: int = TERMINAL_LIMIT) -> str:
    """A value to paste into a rich markup string: :func:`for_terminal` with ``[`` escaped
    for the markup parser (rich reads ``\\[`` as a literal ``[``). Emoji codes
    (``:warning:``) are not markup: the console must be made with ``emoji=False``, as every
    Console of tlssniff is. Prefer :func:`terminal_text`, which needs no markup at all."""
    from rich.markup import escape as markup_escape

    return markup_escape(shorten(value, limit))


def terminal_text(value: object, style: str | None = None, limit: int = TERMINAL_LIMIT) -> Text:
    """A value as a rich :class:`~rich.text.Text`: never parsed as markup nor emoji, escaped
    and shortened as :func:`for_terminal`. The way to put captured values in a rich table."""
    return Text(shorten(value, limit), style=style or "")


# -- documents -------------------------------------------------------------------------------

# Characters with a meaning in CommonMark or GitHub markdown in the middle of a line (links,
# images and footnotes all need "[", HTML and autolinks "<", entities "&", emphasis, code,
# table cells, strikethrough, math, a heading's closing #s); each is written with a backslash,
# which CommonMark defines as "this character, literally". Values never start a line in
# tlssniff's markdown (and CR/LF are escapes), so the line-start markers (-, +, =, 1.) need
# nothing.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>#|~&$])")


def for_markdown(value: object, limit: int = DOCUMENT_LIMIT) -> str:
    """A value for summary.md (a heading, a bullet, a table cell): escaped, shortened, and
    every markdown metacharacter backslash-escaped, so that no link, image, HTML tag,
    heading, emphasis, table cell break or autolink can come out of it. CR and LF are
    already escapes (``\\x0d``), so a value never starts a new block."""
    s = shorten(value, limit)
    # The escape's own backslashes are escaped too: "\\x1b" shows as "\x1b" once rendered.
    return _MD_SPECIAL.sub(r"\\\1", s)


def for_markdown_code(value: object, limit: int = DOCUMENT_LIMIT) -> str:
    """A value as a markdown code span: the fence is one backtick longer than the longest
    run of backticks in the value (CommonMark), padded with spaces when it touches one."""
    s = shorten(value, limit)
    longest = max((len(m) for m in re.findall(r"`+", s)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if s.startswith("`") or s.endswith("`") or not s.strip() else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def for_html(value: object, limit: int = DOCUMENT_LIMIT) -> str:
    """A value for report.html text or an attribute: escaped, shortened, and HTML-escaped
    with quotes (``html.escape(quote=True)``)."""
    return html.escape(shorten(value, limit), quote=True)


def for_label(value: object, limit: int = LABEL_LIMIT) -> str:
    """A chart label (matplotlib): escaped, shortened, and ``$`` escaped so that the label is
    never parsed as mathtext (an unbalanced ``$`` would raise; a balanced one renders TeX).
    The SVG writer escapes XML itself."""
    return shorten(value, limit).replace("$", r"\$")


# -- CSV -------------------------------------------------------------------------------------

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def for_csv(value: object, limit: int = CSV_LIMIT) -> str:
    """A CSV cell: escaped (no raw control byte, so no NUL, CR or LF inside a cell), and a
    cell a spreadsheet would read as a formula (OWASP: it starts with ``=``, ``+``, ``-``,
    ``@``, TAB or CR) gets a leading ``'``. The escape already turns TAB and CR into text, so
    the check is on the first visible character. Numbers written by tlssniff itself (a
    negative one never occurs) are passed as ``int``/``float`` and left alone by the caller."""
    if isinstance(value, str) and limit <= 0 and value.isprintable() and "\\" not in value:
        s = value  # the common case, one C call: nothing to escape, nothing to shorten
    else:
        s = shorten(value, limit)
    if s.startswith(_FORMULA_START):
        return "'" + s
    return s


# -- pcapng comments -------------------------------------------------------------------------


def for_comment(value: object, limit: int = COMMENT_LIMIT) -> str:
    """A pcapng packet comment: escaped (a NUL would end it for readers that take it as a C
    string; tshark would print the other controls raw) and at most ``limit`` bytes of UTF-8,
    said when shortened. The option length field is 16 bits: ``limit`` must stay below
    65535."""
    if value is None:
        return ""
    s = value if isinstance(value, str) else str(value)
    out = escape(s)
    if len(out.encode("utf-8")) <= limit:
        return out
    tail = f"{_ELLIPSIS}({len(s)} characters)"
    head, _ = _cut(s, limit - len(tail.encode("utf-8")), lambda p: len(p.encode("utf-8")))
    return head + tail


# -- consoles --------------------------------------------------------------------------------


def console(**kwargs):
    """A rich Console for output that may hold captured values: no emoji codes (``:warning:``
    stays text), no highlighting (no colour guessed from a value's look). Markup stays on for
    tlssniff's own strings; captured values go in as :class:`~rich.text.Text`
    (:func:`terminal_text`) or through :func:`for_markup`."""
    from tlssniff.output.terminal import OutputConsole

    kwargs.setdefault("highlight", False)
    kwargs.setdefault("emoji", False)
    return OutputConsole(**kwargs)
