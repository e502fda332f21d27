#!/usr/bin/env python3
"""Check that every SQL block the documentation says is run by the tests is.

A block is marked in README.md or docs/*.md by an HTML comment naming the
tested file before it and the same name with a slash after it:

    <!-- sql/flows.sql -->
    ```sql
    ...
    ```
    <!-- /sql/flows.sql -->

The block's text (without the fences) must appear, line for line and in
one piece, in that file, which pg_regress runs (and whose expected output
the suite compares).  Prints "test doc_sql_<file> ... ok" or FAILED per
block, and exits 1 if any block is not in its file.

Usage: check_doc_sql.py <source tree>
"""
import pathlib
import re
import sys

MARK = re.compile(r'^<!-- (sql/[A-Za-z0-9_./-]+\.sql) -->$')


def blocks(path):
    """(tested file, block text, line) for each marked block of path."""
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = MARK.match(lines[i])
        if not m:
            i += 1
            continue
        name, start = m.group(1), i + 1
        end = lines.index('<!-- /%s -->' % name, start)
        body = lines[start:end]
        if body and body[0].startswith('```'):
            body = body[1:]
        if body and body[-1].startswith('```'):
            body = body[:-1]
        yield name, body, start
        i = end + 1


def main():
    tree = pathlib.Path(sys.argv[1])
    docs = [tree / 'README.md'] + sorted((tree / 'docs').glob('*.md'))
    failed = 0
    for doc in docs:
        for name, body, line in blocks(doc):
            tested = (tree / name).read_text().splitlines()
            n = len(body)
            found = any(tested[k:k + n] == body for k in range(len(tested) - n + 1))
            label = 'doc_sql_%s_%d' % (pathlib.Path(name).stem, line)
            if found:
                print('test %s ... ok' % label)
            else:
                failed += 1
                print('test %s ... FAILED (%s line %d: the block is not the text of %s)'
                      % (label, doc.relative_to(tree), line, name))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
