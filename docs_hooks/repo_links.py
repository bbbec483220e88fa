"""MkDocs hook: the site's home page is README.md, and links to files outside docs/ become
repository links.

- ``docs/index.md`` is a stub: its content is replaced by the repository's README.md, so the
  README (which GitHub shows) and the site's front page are one text. The README's links to
  ``docs/PAGE.md`` become links to ``PAGE.md`` inside the site.
- A relative link from a page to a file outside ``docs/`` (``../experiments/RESULTS.md``,
  ``../src/...``) works when the Markdown is read in the repository, and in the site it is
  rewritten to ``{repo_url}/blob/{branch}/PATH`` (``/raw/`` for images). A link to a repository
  file that does not exist is an error, so ``mkdocs build --strict`` fails on it as on a broken
  link between pages.

Fenced code blocks are left untouched.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

log = logging.getLogger("mkdocs.hooks.repo_links")

# [text](target) and ![alt](target); target without spaces, optional "title" ignored
_LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)((?:\s+\"[^\"]*\")?)\)")
_FENCE = re.compile(r"^(```|~~~)", re.MULTILINE)
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:|^#|^/")


def _outside_code(markdown: str, rewrite) -> str:
    """Apply ``rewrite`` to the text outside fenced code blocks only."""
    parts, pos, inside = [], 0, False
    for fence in _FENCE.finditer(markdown):
        chunk = markdown[pos:fence.start()]
        parts.append(chunk if inside else rewrite(chunk))
        inside = not inside
        pos = fence.start()
    tail = markdown[pos:]
    parts.append(tail if inside else rewrite(tail))
    return "".join(parts)


def _repo_root(config) -> Path:
    return Path(config["config_file_path"]).resolve().parent


def _branch(config) -> str:
    return config.get("extra", {}).get("repo_branch", "main")


def _rewrite(markdown: str, page_dir: Path, config, where: str, depth: int) -> str:
    """``page_dir``: what the page's relative links start from; ``depth``: how many folders
    below docs/ the page sits in the site."""
    root, docs = _repo_root(config), Path(config["docs_dir"]).resolve()
    base = (config.get("repo_url") or "").rstrip("/")

    def one(match: re.Match) -> str:
        bang, text, target, title = match.groups()
        if _SCHEME.match(target):
            return match.group(0)
        path, _, anchor = target.partition("#")
        resolved = (page_dir / path).resolve()
        try:
            inside_docs = resolved.relative_to(docs)
        except ValueError:
            inside_docs = None
        if inside_docs is not None:   # a page or file of the site: relative to the page
            rel = Path(*[".."] * depth, inside_docs)
            new = rel.as_posix() + (f"#{anchor}" if anchor else "")
            return f"{bang}[{text}]({new}{title})"
        try:
            in_repo = resolved.relative_to(root)
        except ValueError:
            log.error("%s: link %r leaves the repository", where, target)
            return match.group(0)
        if not resolved.exists():
            log.error("%s: link %r names a repository file that does not exist", where, target)
            return match.group(0)
        if not base:
            log.error("%s: link %r leaves docs/ and mkdocs.yml sets no repo_url", where, target)
            return match.group(0)
        kind = "raw" if bang else ("tree" if resolved.is_dir() else "blob")
        new = f"{base}/{kind}/{_branch(config)}/{in_repo.as_posix()}"
        return f"{bang}[{text}]({new}{'#' + anchor if anchor else ''}{title})"

    return _outside_code(markdown, lambda chunk: _LINK.sub(one, chunk))


def on_page_markdown(markdown: str, page, config, files) -> str:
    docs = Path(config["docs_dir"]).resolve()
    if page.file.src_uri == "index.md":
        readme = _repo_root(config) / "README.md"
        text = readme.read_text(encoding="utf-8")
        # the README's own links are relative to the repository root
        return _rewrite(text, readme.parent, config, "README.md", 0)
    page_dir = (docs / page.file.src_uri).parent
    depth = len(Path(page.file.src_uri).parent.parts)
    return _rewrite(markdown, page_dir, config, page.file.src_uri, depth)
