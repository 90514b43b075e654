"""Every ```sql example in docs/*.md runs, in order, in a fresh database with pgmart: the docs
cannot drift from what the extension does. A block fenced as ```sql is run; other fences are not."""

import glob
import os
import re

import pytest

DOCS = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "docs", "*.md")))
BLOCK = re.compile(r"^```sql\n(.*?)^```", re.S | re.M)


@pytest.mark.parametrize("path", DOCS, ids=[os.path.basename(p) for p in DOCS])
def test_doc_examples_run(cluster, path):
    text = open(path).read()
    blocks = BLOCK.findall(text)
    assert blocks, f"{path} has no ```sql example"
    db = "doc_" + re.sub(r"\W", "_", os.path.basename(path)[:-3])
    cluster.createdb(db)
    with cluster.connect(db) as conn:
        for i, block in enumerate(blocks, 1):
            try:
                conn.execute(block)
            except Exception as e:  # report which example failed
                raise AssertionError(f"{os.path.basename(path)} example {i} failed: {e}\n{block}") from e
