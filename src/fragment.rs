//! The one analyser of user SQL fragments: check expressions and where clauses, metric expressions
//! and filters, alert conditions, rollup measures. A fragment is parsed and analysed by PostgreSQL
//! against its one relation (with the path pinned), and then the *analysed* tree is walked:
//!
//! * no subqueries, parameters, sequences, XML, window or set-returning functions, no other
//!   relation, the right shape (one boolean condition, or one aggregate) and result type;
//! * no volatile function anywhere (they may have side effects);
//! * for a fragment that runs as whoever calls (a metric read by `metric_values`, an alert condition
//!   evaluated as the writer), only built-in, non-volatile, parallel-safe functions and operators of
//!   `pg_catalog` (OID below 16384), no cast to a user domain, and none of a few built-ins that read
//!   the caller's session (`current_setting`, privilege oracles, files).
//!
//! What is stored is PostgreSQL's own deparse of the analysed tree (made under the pinned path,
//! so every function outside `pg_catalog` is schema-qualified). Fragments are analysed again,
//! from that text, every time they run: a helper function changed to VOLATILE since, or a new
//! overload, is caught then.

use crate::error::PgMartError;
use crate::sql;
use pgrx::pg_sys::{self, Node, NodeTag, Oid};
use pgrx::prelude::*;
use pgrx::{PgList, PgSqlErrorCode};
use std::ffi::{c_void, CStr, CString};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One boolean expression over the relation's columns (no aggregates).
    Condition,
    /// One expression whose columns all sit inside aggregates.
    Aggregate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runs {
    /// Evaluated with the privileges of the role that registered it (checks, rollups).
    AsRegistrant,
    /// Evaluated as whoever reads or writes (metrics, alert conditions): built-ins only.
    AsCaller,
}

/// An analysed fragment.
#[derive(Debug, Clone)]
pub struct Fragment {
    /// PostgreSQL's deparse of the analysed expression, columns unqualified.
    pub text: String,
    /// The same with every column prefixed by each alias asked for (`new.amount`).
    pub prefixed: Vec<String>,
    /// Its result type.
    pub type_oid: Oid,
    /// The relation's columns it reads, in first-use order.
    pub columns: Vec<String>,
    /// For an aggregate of the form `a / b` (each side holding an aggregate, `b` possibly inside
    /// `nullif(b, 0)`, either side possibly cast): the deparsed `a` and `b`.
    pub ratio: Option<(String, String)>,
}

/// Built-ins a fragment run as someone else may not call even though they are harmless to the
/// database: they read that someone's session or privileges, or files.
const CALLER_DENYLIST: &[&str] = &[
    "current_setting",
    "pg_show_all_settings",
    "pg_has_role",
    "row_security_active",
    "pg_read_file",
    "pg_read_binary_file",
    "pg_ls_dir",
    "pg_stat_file",
    "inet_client_addr",
    "inet_client_port",
    "pg_backend_pid",
];

struct Walk {
    runs: Runs,
    /// Apply CALLER_DENYLIST (not for a source's own view definitions and policies).
    denylist: bool,
    relid: Oid,
    problem: Option<String>,
    attnos: Vec<i16>,
}

unsafe fn func_name(oid: Oid) -> String {
    let n = pg_sys::get_func_name(oid);
    if n.is_null() {
        format!("function {}", u32::from(oid))
    } else {
        CStr::from_ptr(n).to_string_lossy().into_owned()
    }
}

/// Whether a function may appear in the fragment; the reason when not.
unsafe fn function_problem(oid: Oid, w: &Walk) -> Option<String> {
    let volatile = pg_sys::func_volatile(oid) as u8 == pg_sys::PROVOLATILE_VOLATILE;
    if volatile {
        return Some(format!("calls volatile function {} (it may have side effects)", func_name(oid)));
    }
    if w.runs == Runs::AsCaller {
        let builtin = u32::from(oid) < pg_sys::FirstNormalObjectId
            && u32::from(pg_sys::get_func_namespace(oid)) == pg_sys::PG_CATALOG_NAMESPACE;
        if !builtin {
            return Some(format!(
                "calls {}, which is not a built-in function of pg_catalog (this fragment runs with the privileges of whoever reads it)",
                func_name(oid)
            ));
        }
        if pg_sys::func_parallel(oid) as u8 != pg_sys::PROPARALLEL_SAFE || pg_sys::get_func_retset(oid) {
            return Some(format!("calls {}, which reads session state", func_name(oid)));
        }
        let name = func_name(oid);
        if w.denylist && (CALLER_DENYLIST.contains(&name.as_str()) || name.starts_with("has_") || name.starts_with("lo_")) {
            return Some(format!("calls {name}, which reads the caller's session, privileges or files"));
        }
    }
    None
}

#[pg_guard]
unsafe extern "C-unwind" fn check_function(oid: Oid, context: *mut c_void) -> bool {
    let w = &mut *(context as *mut Walk);
    match function_problem(oid, w) {
        Some(p) => {
            w.problem.get_or_insert(p);
            true
        }
        None => false,
    }
}

unsafe fn builtin_type(t: Oid) -> bool {
    u32::from(t) < pg_sys::FirstNormalObjectId
}

#[pg_guard]
unsafe extern "C-unwind" fn walker(node: *mut Node, context: *mut c_void) -> bool {
    if node.is_null() {
        return false;
    }
    let w = &mut *(context as *mut Walk);
    let tag = (*node).type_;
    let reject = |w: &mut Walk, what: &str| {
        w.problem.get_or_insert(what.to_string());
        true
    };
    match tag {
        NodeTag::T_Query => {
            return pg_sys::query_tree_walker(node as *mut pg_sys::Query, Some(walker), context, 0);
        }
        NodeTag::T_SubLink | NodeTag::T_SubPlan | NodeTag::T_AlternativeSubPlan => {
            return reject(w, "contains a subquery");
        }
        NodeTag::T_Param => return reject(w, "contains a parameter"),
        NodeTag::T_NextValueExpr => return reject(w, "reads a sequence"),
        NodeTag::T_XmlExpr => return reject(w, "uses an XML function"),
        NodeTag::T_WindowFunc => return reject(w, "uses a window function"),
        NodeTag::T_Var => {
            let v = &*(node as *mut pg_sys::Var);
            if v.varlevelsup == 0 && v.varno == 1 && v.varattno > 0 && !w.attnos.contains(&v.varattno) {
                w.attnos.push(v.varattno);
            }
        }
        NodeTag::T_CoerceToDomain if w.runs == Runs::AsCaller => {
            let d = &*(node as *mut pg_sys::CoerceToDomain);
            if !builtin_type(d.resulttype) {
                return reject(w, "casts to a user-defined domain (its CHECK constraints are code)");
            }
        }
        NodeTag::T_MinMaxExpr if w.runs == Runs::AsCaller => {
            let m = &*(node as *mut pg_sys::MinMaxExpr);
            if !builtin_type(m.minmaxtype) {
                return reject(w, "compares values of a user-defined type with GREATEST or LEAST");
            }
        }
        NodeTag::T_SortGroupClause if w.runs == Runs::AsCaller => {
            let s = &*(node as *mut pg_sys::SortGroupClause);
            for op in [s.eqop, s.sortop] {
                if op != pg_sys::InvalidOid {
                    let f = pg_sys::get_opcode(op);
                    if let Some(p) = function_problem(f, w) {
                        return reject(w, &p);
                    }
                }
            }
        }
        _ => {}
    }
    if pg_sys::check_functions_in_node(node, Some(check_function), context) {
        return true;
    }
    pg_sys::expression_tree_walker(node, Some(walker), context)
}

#[pg_guard]
unsafe extern "C-unwind" fn raw_sublink(node: *mut Node, context: *mut c_void) -> bool {
    if node.is_null() {
        return false;
    }
    if (*node).type_ == NodeTag::T_SubLink {
        *(context as *mut bool) = true;
        return true;
    }
    pg_sys::raw_expression_tree_walker(node, Some(raw_sublink), context)
}

fn relation_name(relid: Oid) -> Option<(String, String)> {
    #[derive(serde::Deserialize)]
    struct R {
        qualified: String,
        relname: String,
    }
    sql::row::<R>(
        "SELECT pg_catalog.quote_ident(n.nspname::pg_catalog.text) OPERATOR(pg_catalog.||) '.' \
                OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.relname::pg_catalog.text) AS qualified, \
                c.relname::pg_catalog.text AS relname \
           FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
          WHERE c.oid OPERATOR(pg_catalog.=) $1",
        &[relid.into()],
    )
    .map(|r| (r.qualified, r.relname))
}

fn bad(what: &str, text: &str, why: &str, shape: Shape) -> PgMartError {
    let hint = match shape {
        Shape::Condition => "Write one boolean expression over the table's own columns, e.g. amount > 0 AND status <> 'void'.",
        Shape::Aggregate => "Write one aggregate over the source's columns, e.g. sum(amount), count(*), count(DISTINCT customer_id).",
    };
    PgMartError::invalid(format!("invalid {what}: it {why}")).detail(format!("{what}: {text}")).hint(hint)
}

/// The SQLSTATE a parse or analysis error keeps (undefined column, function, syntax...), as a
/// pgmart error naming the fragment.
fn analysis_error(what: &str, text: &str, c: &sql::Caught, shape: Shape) -> PgMartError {
    let code = match c.sqlstate.as_str() {
        "42803" if shape == Shape::Aggregate => {
            return bad(what, text, "is not an aggregate (every column must be inside an aggregate)", shape)
        }
        "42803" => return bad(what, text, "uses an aggregate", shape),
        // A syntax error is an invalid value of this parameter (22023), like the other refusals.
        "42601" => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        s if s.starts_with("42") || s.starts_with("22") => crate::error::sqlstate_code(s),
        _ => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
    };
    let mut e = PgMartError::new(code, format!("invalid {what}: {}", c.message)).detail(format!("{what}: {text}"));
    if let Some(h) = &c.hint {
        e = e.hint(h.clone());
    }
    e
}

/// Analyse `text` as a fragment of `shape` over relation `relid`, as the current user (the
/// registrant at registration; the owner or the caller again at run time). `what` names it in
/// errors ("check expression", "metric filter"); `aliases` asks for prefixed deparses too.
pub fn analyse(relid: Oid, text: &str, shape: Shape, runs: Runs, what: &str, aliases: &[&str]) -> Result<Fragment, PgMartError> {
    if text.trim().is_empty() {
        return Err(PgMartError::invalid(format!("{what} must not be empty")));
    }
    if text.contains('\0') {
        return Err(PgMartError::invalid(format!("{what} must not contain NUL bytes")));
    }
    let (qualified, relname) =
        relation_name(relid).ok_or_else(|| PgMartError::undefined_table(format!("the relation of this {what} does not exist")))?;
    // New lines around the fragment: a trailing "--" comment cannot swallow what follows.
    let query = format!("SELECT (\n{text}\n) FROM {qualified}");
    let cquery = CString::new(query).expect("no NUL");
    let analysed = sql::subtransaction(|| {
        sql::pinned(|| unsafe { analyse_query(&cquery, relid, shape, runs, &relname, aliases) })
    });
    match analysed {
        Err(c) => Err(analysis_error(what, text, &c, shape)),
        Ok(Err(why)) => Err(bad(what, text, &why, shape)),
        Ok(Ok(f)) => Ok(f),
    }
}

unsafe fn analyse_query(
    cquery: &CStr,
    relid: Oid,
    shape: Shape,
    runs: Runs,
    relname: &str,
    aliases: &[&str],
) -> Result<Fragment, String> {
    let raw = PgList::<pg_sys::RawStmt>::from_pg(pg_sys::raw_parser(cquery.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT));
    if raw.len() != 1 {
        return Err("is not a single expression".into());
    }
    let stmt = raw.get_ptr(0).expect("one statement");
    let sel = (*stmt).stmt as *mut pg_sys::SelectStmt;
    if (*sel.cast::<Node>()).type_ != NodeTag::T_SelectStmt {
        return Err("is not an expression".into());
    }
    let s = &*sel;
    let single = PgList::<Node>::from_pg(s.targetList).len() == 1
        && PgList::<Node>::from_pg(s.fromClause).len() == 1
        && s.whereClause.is_null()
        && s.groupClause.is_null()
        && s.havingClause.is_null()
        && s.windowClause.is_null()
        && s.sortClause.is_null()
        && s.limitCount.is_null()
        && s.limitOffset.is_null()
        && s.withClause.is_null()
        && s.distinctClause.is_null()
        && s.intoClause.is_null()
        && s.lockingClause.is_null()
        && s.valuesLists.is_null()
        && s.op == pg_sys::SetOperation::SETOP_NONE;
    if !single {
        return Err("is not a single expression over the table's own columns".into());
    }
    // Before analysis (which would look up the relations a subquery names).
    let mut sub = false;
    raw_sublink(s.targetList as *mut Node, &mut sub as *mut bool as *mut c_void);
    if sub {
        return Err("contains a subquery".into());
    }
    let q = &*pg_sys::parse_analyze_fixedparams(stmt, cquery.as_ptr(), std::ptr::null(), 0, std::ptr::null_mut());
    let rtable = PgList::<pg_sys::RangeTblEntry>::from_pg(q.rtable);
    let only_relation = rtable.len() == 1
        && rtable.get_ptr(0).map(|r| (*r).rtekind == pg_sys::RTEKind::RTE_RELATION && (*r).relid == relid).unwrap_or(false);
    if q.commandType != pg_sys::CmdType::CMD_SELECT || !q.utilityStmt.is_null() || !only_relation {
        return Err("reads something other than its own table".into());
    }
    if q.hasSubLinks {
        return Err("contains a subquery".into());
    }
    if q.hasWindowFuncs || q.hasTargetSRFs || !q.cteList.is_null() || !q.groupClause.is_null() || !q.havingQual.is_null() {
        return Err("uses a window or set-returning function".into());
    }
    match shape {
        Shape::Condition if q.hasAggs => return Err("uses an aggregate".into()),
        Shape::Aggregate if !q.hasAggs => return Err("is not an aggregate".into()),
        _ => {}
    }
    let targets = PgList::<pg_sys::TargetEntry>::from_pg(q.targetList);
    let expr = (*targets.get_ptr(0).expect("one target")).expr as *mut Node;
    let type_oid = pg_sys::exprType(expr);
    if shape == Shape::Condition && type_oid != pg_sys::BOOLOID {
        return Err("is not a boolean expression".into());
    }
    let mut w = Walk { runs, denylist: true, relid, problem: None, attnos: vec![] };
    walker(expr, &mut w as *mut Walk as *mut c_void);
    if let Some(p) = w.problem {
        return Err(p);
    }
    let rel = CString::new(relname).expect("no NUL");
    let deparse = |prefix: bool, alias: &CStr| {
        let ctx = pg_sys::deparse_context_for(alias.as_ptr(), relid);
        CStr::from_ptr(pg_sys::deparse_expression(expr, ctx, prefix, false)).to_string_lossy().into_owned()
    };
    let text = deparse(false, &rel);
    let deparse_node = |node: *mut Node| {
        let ctx = pg_sys::deparse_context_for(rel.as_ptr(), relid);
        CStr::from_ptr(pg_sys::deparse_expression(node, ctx, false, false)).to_string_lossy().into_owned()
    };
    let prefixed = aliases
        .iter()
        .map(|a| deparse(true, &CString::new(*a).expect("alias")))
        .collect();
    let columns = w
        .attnos
        .iter()
        .map(|&a| CStr::from_ptr(pg_sys::get_attname(w.relid, a, false)).to_string_lossy().into_owned())
        .collect();
    let ratio = if shape == Shape::Aggregate {
        ratio_parts(expr).map(|(a, b)| (deparse_node(a), deparse_node(b)))
    } else {
        None
    };
    Ok(Fragment { text, prefixed, type_oid, columns, ratio })
}

/// A node without the casts and relabelings around it.
unsafe fn uncast(mut node: *mut Node) -> *mut Node {
    loop {
        match (*node).type_ {
            NodeTag::T_RelabelType => node = (*(node as *mut pg_sys::RelabelType)).arg as *mut Node,
            NodeTag::T_CoerceViaIO => node = (*(node as *mut pg_sys::CoerceViaIO)).arg as *mut Node,
            NodeTag::T_FuncExpr => {
                let f = &*(node as *mut pg_sys::FuncExpr);
                let args = PgList::<Node>::from_pg(f.args);
                let cast = matches!(f.funcformat, pg_sys::CoercionForm::COERCE_EXPLICIT_CAST | pg_sys::CoercionForm::COERCE_IMPLICIT_CAST);
                if cast && args.len() == 1 {
                    node = args.get_ptr(0).expect("one argument");
                } else {
                    return node;
                }
            }
            _ => return node,
        }
    }
}

/// `a / b` at the top of an aggregate expression, both sides aggregates; `nullif(b, 0)` gives `b`.
unsafe fn ratio_parts(expr: *mut Node) -> Option<(*mut Node, *mut Node)> {
    let top = uncast(expr);
    if (*top).type_ != NodeTag::T_OpExpr {
        return None;
    }
    let op = &*(top as *mut pg_sys::OpExpr);
    let args = PgList::<Node>::from_pg(op.args);
    let name = pg_sys::get_opname(op.opno);
    if args.len() != 2 || name.is_null() || CStr::from_ptr(name).to_bytes() != b"/" {
        return None;
    }
    let a = args.get_ptr(0)?;
    let mut b = uncast(args.get_ptr(1)?);
    if (*b).type_ == NodeTag::T_NullIfExpr {
        let n = &*(b as *mut pg_sys::NullIfExpr);
        b = PgList::<Node>::from_pg(n.args).get_ptr(0)?;
    }
    (pg_sys::contain_agg_clause(a) && pg_sys::contain_agg_clause(b)).then_some((a, b))
}

/// For sources read as the caller (metrics): every function the relation itself runs when read —
/// a view's definition, row-level security policies that apply to the current user — must be a
/// built-in of pg_catalog too, so that reading a metric can never run another role's code as you.
pub fn check_source_for_caller(relid: Oid, what: &str) -> Result<(), PgMartError> {
    let (qualified, _) = relation_name(relid).ok_or_else(|| PgMartError::undefined_table(format!("the source of {what} does not exist")))?;
    let cquery = CString::new(format!("SELECT 1 FROM {qualified}")).expect("no NUL");
    let r = sql::subtransaction(|| {
        sql::pinned(|| unsafe {
            let raw = PgList::<pg_sys::RawStmt>::from_pg(pg_sys::raw_parser(cquery.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT));
            let stmt = raw.get_ptr(0).expect("one statement");
            let queries = PgList::<pg_sys::Query>::from_pg(pg_sys::pg_analyze_and_rewrite_fixedparams(
                stmt,
                cquery.as_ptr(),
                std::ptr::null(),
                0,
                std::ptr::null_mut(),
            ));
            let mut w = Walk { runs: Runs::AsCaller, denylist: false, relid, problem: None, attnos: vec![] };
            for q in queries.iter_ptr() {
                pg_sys::query_tree_walker(q, Some(walker), &mut w as *mut Walk as *mut c_void, 0);
            }
            w.problem
        })
    });
    match r {
        Err(c) => Err(PgMartError::new(crate::error::sqlstate_code(&c.sqlstate), format!("cannot read the source of {what}: {}", c.message))),
        Ok(Some(p)) => Err(PgMartError::privilege(format!("the source of {what} {p} when read"))
            .detail("A metric is read with the privileges of whoever reads it, so its source's view definition and row-level security policies may only use built-in functions.")
            .hint("Register the metric on a table or materialized view, or on a view that uses only built-in functions.")),
        Ok(None) => Ok(()),
    }
}
