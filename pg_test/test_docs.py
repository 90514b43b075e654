"""Every ```sql example in docs/*.md runs, in order, the way a newcomer runs it: with psql
(autocommit, one statement at a time, stopping at the first error) in a fresh database with
pgmart, on a cluster where the background worker runs. The docs cannot drift from what the
extension does. A block fenced as ```sql is run; other fences are not."""

import glob
import os
import re
import subprocess

import pytest

from conftest import pg_bin

DOCS = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "docs", "*.md")))
BLOCK = re.compile(r"^```sql\n(.*?)^```", re.S | re.M)


@pytest.mark.parametrize("path", DOCS, ids=[os.path.basename(p) for p in DOCS])
def test_doc_examples_run(cluster, path):
    text = open(path).read()
    blocks = BLOCK.findall(text)
    assert blocks, f"{path} has no ```sql example"
    db = "doc_" + re.sub(r"\W", "_", os.path.basename(path)[:-3])
    cluster.createdb(db)
    for i, block in enumerate(blocks, 1):
        r = subprocess.run([pg_bin("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", cluster.dir,
                            "-p", str(cluster.port), "-U", "postgres", "-d", db],
                           input=block, capture_output=True, text=True)
        assert r.returncode == 0, f"{os.path.basename(path)} example {i} failed:\n{r.stderr}\n{block}"
