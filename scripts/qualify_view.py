"""Qualify a hand-written view for pgspot: operators, built-in functions, catalog relations, types."""
import re, sys
src = open(sys.argv[1]).read()
FUNCS = set("""count sum max min bool_or array_agg string_agg first_value current_setting current_database pg_has_role
has_table_privilege has_column_privilege row_security_active pg_stat_get_live_tuples pg_stat_get_dead_tuples
pg_stat_get_mod_since_analyze pg_stat_get_last_vacuum_time pg_stat_get_last_autovacuum_time pg_stat_get_last_analyze_time
pg_stat_get_last_autoanalyze_time pg_stat_get_numscans pg_stat_get_db_stat_reset_time pg_options_to_table quote_ident
array_remove array_to_string string_to_array replace round ceil floor cardinality pg_get_expr pg_get_userbyid
pg_size_pretty generate_series substring""".split())
RELS = set("pg_class pg_namespace pg_attribute pg_statistic pg_index pg_inherits pg_constraint pg_database pg_stat_progress_create_index".split())
TYPES = {"text", "regclass", "oid", "regtype", "name"}
OPS = ["<>", "<=", ">=", "<@", "!~", "||", "=", "<", ">", "+", "-", "*", "/", "%", "~"]
out = []
# split into literals/comments and code
tok = re.compile(r"(E?'(?:[^']|'')*'|--[^\n]*)")
for i, part in enumerate(tok.split(src)):
    if i % 2 == 1:
        out.append(part); continue
    code = part
    for op in OPS:
        code = re.sub(r"(?<=\s)" + re.escape(op) + r"(?=\s)", "OPERATOR(pg_catalog." + op + ")", code)
    code = re.sub(r"(?<![\w.])(" + "|".join(sorted(FUNCS, key=len, reverse=True)) + r")\(", r"pg_catalog.\1(", code)
    code = re.sub(r"(?<![\w.])(" + "|".join(RELS) + r")\b(?!\()", r"pg_catalog.\1", code)
    code = re.sub(r"::(" + "|".join(TYPES) + r")\b", r"::pg_catalog.\1", code)
    code = code.replace('::"char"[]', '::pg_catalog."char"[]').replace("::name[]", "::pg_catalog.name[]")
    out.append(code)
print("".join(out), end="")
