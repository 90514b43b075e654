#!/usr/bin/env python3
"""Write the upgrade script from the last released pgmart to this one, sql/pgmart--OLD--NEW.sql.

    make_upgrade.py NEW_SCHEMA.sql            write it
    make_upgrade.py NEW_SCHEMA.sql --check    fail when the committed script differs (make test)

NEW_SCHEMA.sql is the install script of this version (`cargo pgrx schema`); OLD is the newest
released install script kept as shipped, sql/pgmart--OLD.sql. The upgrade script is three parts:

  1. sql/upgrade/OLD--NEW.head.sql, written by hand: everything about tables (renames, new columns,
     data carried over, constraints, indexes, new schemas). Tables are never rebuilt here.
  2. generated from the two install scripts, statement by statement (PostgreSQL's own parser,
     pglast, tells what each statement is): routines that are gone, or whose arguments, defaults or
     result changed, are dropped; every function, procedure, aggregate, view and trigger of NEW is
     created OR REPLACEd (so a user's view over a pgmart view keeps working); comments, grants,
     revokes and DO blocks are replayed; tables, indexes, sequences and schemas are left to part 1.
  3. sql/upgrade/OLD--NEW.tail.sql, by hand: what can only go once nothing uses it (old columns).

The upgrade test (pg_test/test_upgrade.py) proves the result: an updated catalog equals a fresh one.
"""

import json
import re
import sys
from pathlib import Path

import pglast
import pglast.enums
import pglast.parser
from pglast import ast
from pglast.stream import RawStream

ROOT = Path(__file__).resolve().parent.parent
SQL = ROOT / "sql"


def version_key(v):
    return tuple(int(x) for x in v.split("."))


def current_version():
    m = re.search(r'(?m)^version\s*=\s*"([^"]+)"', (ROOT / "Cargo.toml").read_text())
    return m.group(1)


def last_release(new):
    olds = [p.name[len("pgmart--"):-len(".sql")] for p in SQL.glob("pgmart--*.sql") if p.name.count("--") == 1]
    olds = [v for v in olds if v != new and version_key(v) < version_key(new)]
    if not olds:
        sys.exit("make_upgrade: no released install script sql/pgmart--X.sql older than " + new)
    return max(olds, key=version_key)


def statements(path):
    """(text, parsed statement) for each statement of an SQL script."""
    out = []
    for text in pglast.split(Path(path).read_text()):
        out.append((text, pglast.parse_sql(text)[0].stmt))
    return out


# Spellings of one type (the parser keeps what was written: `float8` and `double precision`).
SYNONYMS = {
    "double precision": "float8", "real": "float4", "boolean": "bool", "integer": "int4", "int": "int4",
    "bigint": "int8", "smallint": "int2", "timestamp with time zone": "timestamptz",
    "timestamp without time zone": "timestamp", "character varying": "varchar",
}


def type_name(t):
    name = re.sub(r"\bpg_catalog\.", "", RawStream()(t)).replace('"', "")
    base, arr = re.match(r"^(.*?)((?:\[\])*)$", name).groups()
    return SYNONYMS.get(base.lower(), base.lower()) + arr


def qualified(names):
    return ".".join(n.sval for n in names)


IN_MODES = ("FUNC_PARAM_IN", "FUNC_PARAM_INOUT", "FUNC_PARAM_VARIADIC", "FUNC_PARAM_DEFAULT")


def mode(p):
    return p.mode.name


def routine_key(s):
    """A routine's identity as PostgreSQL knows it: name and input argument types."""
    if isinstance(s, ast.CreateFunctionStmt):
        args = [type_name(p.argType) for p in (s.parameters or []) if mode(p) in IN_MODES]
        return ("procedure" if s.is_procedure else "function", qualified(s.funcname), tuple(args))
    if isinstance(s, ast.DefineStmt) and s.kind == pglast.enums.ObjectType.OBJECT_AGGREGATE:
        args = [type_name(p.argType) for p in (s.args[0] or [])] if s.args and s.args[0] else []
        return ("aggregate", qualified(s.defnames), tuple(args))
    return None


def routine_header(s):
    """What CREATE OR REPLACE cannot change: argument names and modes, defaults, the result."""
    if not isinstance(s, ast.CreateFunctionStmt):
        return None
    params = [(p.name, mode(p), type_name(p.argType), p.defexpr is not None) for p in (s.parameters or [])]
    ret = type_name(s.returnType) if s.returnType else None
    return (params, ret)


def view_columns(s):
    cols = []
    for t in s.query.targetList or []:
        if t.name:
            cols.append(t.name)
        elif isinstance(t.val, ast.ColumnRef) and isinstance(t.val.fields[-1], ast.String):
            cols.append(t.val.fields[-1].sval)
        else:
            cols.append(None)  # unknown: replace by drop and create
    return cols


def or_replace(text):
    return re.sub(r"^((?:\s|--[^\n]*\n|/\*.*?\*/)*)CREATE\s+", r"\1CREATE OR REPLACE ", text, count=1, flags=re.S)


def generate(old_path, new_path):
    old, new = statements(old_path), statements(new_path)
    old_routines = {routine_key(s): s for _, s in old if routine_key(s)}
    new_routines = {routine_key(s): s for _, s in new if routine_key(s)}
    old_views = {f"{s.view.schemaname}.{s.view.relname}": s for _, s in old if isinstance(s, ast.ViewStmt)}
    old_event_triggers = {s.trigname for _, s in old if isinstance(s, ast.CreateEventTrigStmt)}

    drops, dropped = [], set()
    for key, s in old_routines.items():
        gone = key not in new_routines
        changed = not gone and routine_header(s) != routine_header(new_routines[key])
        if gone or changed:
            kind, name, args = key
            drops.append(f"DROP {kind.upper()} {name}({', '.join(args)});")
            dropped.add(key)

    body = []
    for text, s in new:
        if isinstance(s, (ast.CreateStmt, ast.IndexStmt, ast.CreateSeqStmt, ast.CreateSchemaStmt)):
            continue  # tables and schemas: the hand-written first part
        if isinstance(s, ast.CreateFunctionStmt) or routine_key(s):
            key = routine_key(s)
            if key in old_routines and key not in dropped:
                text = or_replace(text)
        elif isinstance(s, ast.ViewStmt):
            name = f"{s.view.schemaname}.{s.view.relname}"
            if name in old_views:
                before, after = view_columns(old_views[name]), view_columns(s)
                if None in before or None in after or after[: len(before)] != before:
                    drops.append(f"DROP VIEW {name};")
                else:
                    text = or_replace(text)
        elif isinstance(s, ast.CreateTrigStmt):
            text = or_replace(text)
        elif isinstance(s, ast.CreateEventTrigStmt) and s.trigname in old_event_triggers:
            body.append(f"DROP EVENT TRIGGER {s.trigname};")
        body.append(text.strip() + ";")
    return drops, body


def statement_set(text):
    """The statements of a script, as parse trees without positions, in a canonical order:
    `cargo pgrx schema` does not always order independent blocks the same way."""
    out = []
    text = re.sub(r"(?m)^\\.*$", "", text)  # psql meta-commands (\echo ... \quit)
    for stmt in pglast.split(text):
        tree = json.loads(pglast.parser.parse_sql_json(stmt))
        out.append(json.dumps(strip_locations(tree), sort_keys=True))
    return sorted(out)


def strip_locations(node):
    if isinstance(node, dict):
        return {k: strip_locations(v) for k, v in node.items() if not k.endswith("location") and k != "stmt_len"}
    if isinstance(node, list):
        return [strip_locations(v) for v in node]
    return node


def same_statements(a, b):
    return a == b or statement_set(a) == statement_set(b)


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    check = "--check" in sys.argv
    if len(args) != 1:
        sys.exit(__doc__)
    new = current_version()
    old = last_release(new)
    head = SQL / "upgrade" / f"{old}--{new}.head.sql"
    tail = SQL / "upgrade" / f"{old}--{new}.tail.sql"
    target = SQL / f"pgmart--{old}--{new}.sql"
    drops, body = generate(SQL / f"pgmart--{old}.sql", args[0])
    parts = [
        f"-- pgmart {old} -> {new}: ALTER EXTENSION pgmart UPDATE runs this file.\n"
        f"-- Generated by scripts/make_upgrade.py from {head.relative_to(ROOT)}, the install scripts of both\n"
        f"-- versions and {tail.relative_to(ROOT)}: edit those, not this file.\n"
        f'\\echo Use "ALTER EXTENSION pgmart UPDATE" to load this file. \\quit\n',
        head.read_text().strip() + "\n",
        "-- Routines and views that cannot be replaced in place.\n" + "\n".join(drops) + "\n" if drops else "",
        "-- Every function, view, trigger, comment and grant of this version.\n" + "\n\n".join(body) + "\n",
        tail.read_text().strip() + "\n",
    ]
    text = "\n".join(p for p in parts if p)
    if check:
        if not target.exists() or not same_statements(target.read_text(), text):
            sys.exit(f"{target.relative_to(ROOT)} is not what scripts/make_upgrade.py makes: run "
                     f"`scripts/make_upgrade.py <schema>` (make upgrade-script) and commit the result")
        print(f"{target.relative_to(ROOT)} is up to date")
    else:
        target.write_text(text)
        print(f"wrote {target.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
