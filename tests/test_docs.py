"""The docs are a map: every relative link in them leads to a file, and the model card stays short."""

import glob
import os
import re

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))
DOCS = ["README.md", "lab/README.md", "lsn_fast/weights/README.md"] + sorted(
    os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)


def relative_links(path):
    text = FENCE.sub("", open(os.path.join(ROOT, path), encoding="utf-8").read())
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
            continue  # http:, mailto:, in-page anchors
        yield target.split("#", 1)[0]


@pytest.mark.parametrize("doc", DOCS)
def test_relative_links_resolve(doc):
    assert os.path.exists(os.path.join(ROOT, doc)), doc
    base = os.path.dirname(os.path.join(ROOT, doc))
    missing = [t for t in relative_links(doc) if t and not os.path.exists(os.path.normpath(os.path.join(base, t)))]
    assert not missing, f"{doc} links to missing files: {missing}"


def test_model_card_is_short():
    with open(os.path.join(ROOT, "lsn_fast", "weights", "README.md"), encoding="utf-8") as f:
        n = len(f.read().splitlines())
    assert n <= 150, f"the model card has {n} lines (at most 150; history goes to HISTORY.md)"
