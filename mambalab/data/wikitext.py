"""WikiText comes one line per row (HF) or per line (the raw release); rebuild its articles.

An article starts at a title line ` = Title = `; section headings ` = = Section = = ` (and deeper)
are not starts. Blank lines are normalised to "\n" whether they come as " \n" (raw files) or as ""
(HF rows), so both sources give the same documents and hence the same tokens.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

# " = Title = " but not " = = Section = = ": a single '=' on each side of a non-'=' title.
_TITLE = re.compile(r"^ = (?!=)(.*[^=])? = $")


def is_article_title(line: str) -> bool:
    return bool(_TITLE.match(line.rstrip("\n")))


def rebuild_articles(lines: Iterable[str]) -> Iterator[str]:
    """Group WikiText lines into articles; yields each article's text.

    Leading and trailing blank lines of each article are dropped; text before the first title
    (not present in the real splits) becomes a document of its own.
    """
    article: list[str] = []
    for raw in lines:
        line = raw if raw.endswith("\n") else raw + "\n"
        if not line.strip():
            line = "\n"
        if is_article_title(line) and _has_content(article):
            yield _join(article)
            article = []
        article.append(line)
    if _has_content(article):
        yield _join(article)


def _has_content(lines: list[str]) -> bool:
    return any(line.strip() for line in lines)


def _join(lines: list[str]) -> str:
    start, end = 0, len(lines)
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return "".join(lines[start:end])


def wikitext_detokenize(text: str) -> str:
    """Undo WikiText's tokenization (" @-@ ", " , " ...), as lm-evaluation-harness does for its
    wikitext task, so word and byte counts match that harness when `detokenize` is on."""
    s = text.replace("s '", "s'")
    s = re.sub(r"/' [0-9]/", r"/'[0-9]/", s)
    s = s.replace(" @-@ ", "-").replace(" @,@ ", ",").replace(" @.@ ", ".")
    s = s.replace(" : ", ": ").replace(" ; ", "; ").replace(" . ", ". ").replace(" ! ", "! ")
    s = s.replace(" ? ", "? ").replace(" , ", ", ")
    s = re.sub(r"\(\s*([^\)]*?)\s*\)", r"(\1)", s)
    s = re.sub(r"\[\s*([^\]]*?)\s*\]", r"[\1]", s)
    s = re.sub(r"{\s*([^}]*?)\s*}", r"{\1}", s)
    s = re.sub(r"\"\s*([^\"]*?)\s*\"", r'"\1"', s)
    s = re.sub(r"'\s*([^']*?)\s*'", r"'\1'", s)
    s = s.replace("= = = =", "====").replace("= = =", "===").replace("= =", "==")
    s = s.replace(" " + chr(176) + " ", chr(176)).replace(" \n", "\n").replace("\n ", "\n")
    s = s.replace(" N ", " 1 ").replace(" 's", "'s")
    return s
