"""Reading D programs in tests: their clauses, probe by probe."""

import re


def d_clauses(source):
    """``[(probes, predicate or None, action)]`` of a D program's clauses
    (comments stripped; our scripts have no nested braces)."""
    body = re.sub(r"/\*.*?\*/", "", source, flags=re.S)
    body = re.sub(r"//[^\n]*", "", body)
    clauses = []
    for m in re.finditer(r"([^{}]*?)\{(.*?)\}", body, re.S):
        head, predicate = m.group(1).strip(), None
        pm = re.match(r"(.*?)\s*/(.*)/\Z", head, re.S)
        if pm:
            head, predicate = pm.group(1), " ".join(pm.group(2).split())
        probes = [p.strip() for p in head.split(",") if p.strip()]
        clauses.append((probes, predicate, m.group(2)))
    return clauses
