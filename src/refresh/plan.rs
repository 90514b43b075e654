//! Pure planning for materialized-view refresh: dependency order, method choice, staleness, SQL
//! text. No PostgreSQL needed; unit tested below.
//!
//! Views are identified by an id (their OID as i64). An edge `(upstream, downstream)` means the
//! downstream materialized view reads the upstream one (directly or through plain views).

use crate::error::{PgMartError, Result};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

pub type Id = i64;

/// Every view reachable downstream of `from` (not including `from` itself unless a cycle leads back).
pub fn descendants(edges: &[(Id, Id)], from: &[Id]) -> BTreeSet<Id> {
    let mut out = BTreeSet::new();
    let mut queue: VecDeque<Id> = from.iter().copied().collect();
    while let Some(v) = queue.pop_front() {
        for &(u, d) in edges {
            if u == v && out.insert(d) {
                queue.push_back(d);
            }
        }
    }
    out
}

/// Every view reachable upstream of `of` (the views it reads, transitively).
pub fn ancestors(edges: &[(Id, Id)], of: Id) -> BTreeSet<Id> {
    let reversed: Vec<(Id, Id)> = edges.iter().map(|&(u, d)| (d, u)).collect();
    descendants(&reversed, &[of])
}

/// Topological order of `nodes` (upstream first), following every edge among all views so that an
/// order through views outside `nodes` is respected too. Each node appears once; ties go by id.
/// A cycle (impossible in PostgreSQL) cannot loop: whatever is left is appended by id.
pub fn topo_order(edges: &[(Id, Id)], nodes: &BTreeSet<Id>) -> Vec<Id> {
    // Work on the subgraph of everything between the nodes: the nodes plus all their ancestors
    // that are also descendants of some node are enough, but using all ancestors is simpler.
    let mut universe: BTreeSet<Id> = nodes.clone();
    for &n in nodes {
        universe.extend(ancestors(edges, n));
    }
    let sub: BTreeSet<(Id, Id)> =
        edges.iter().copied().filter(|(u, d)| u != d && universe.contains(u) && universe.contains(d)).collect();
    let mut indeg: BTreeMap<Id, usize> = universe.iter().map(|&n| (n, 0)).collect();
    for &(_, d) in &sub {
        *indeg.get_mut(&d).expect("in universe") += 1;
    }
    let mut ready: BTreeSet<Id> = indeg.iter().filter(|(_, &k)| k == 0).map(|(&n, _)| n).collect();
    let mut order = vec![];
    let mut placed = BTreeSet::new();
    while let Some(&n) = ready.iter().next() {
        ready.remove(&n);
        placed.insert(n);
        if nodes.contains(&n) {
            order.push(n);
        }
        for &(u, d) in &sub {
            if u == n {
                let k = indeg.get_mut(&d).expect("in universe");
                *k -= 1;
                if *k == 0 {
                    ready.insert(d);
                }
            }
        }
    }
    for &n in nodes {
        if !placed.contains(&n) {
            order.push(n);
        }
    }
    order
}

/// What to refresh when `due` views are refreshed: the due views, then every scheduled view
/// downstream of them, in dependency order (upstream first), each once.
pub fn refresh_order(edges: &[(Id, Id)], due: &[Id], scheduled: &BTreeSet<Id>) -> Vec<Id> {
    let mut nodes: BTreeSet<Id> = due.iter().copied().collect();
    nodes.extend(descendants(edges, due).into_iter().filter(|d| scheduled.contains(d)));
    topo_order(edges, &nodes)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Concurrent,
    Plain,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Concurrent => "concurrent",
            Method::Plain => "plain",
        }
    }
}

/// Choose how to refresh: `requested` NULL picks CONCURRENTLY when it can work (the view is
/// populated and has a usable unique index); true when it cannot work is an error (55000).
pub fn choose_method(requested: Option<bool>, populated: bool, has_unique_index: bool, view: &str) -> Result<Method> {
    let possible = populated && has_unique_index;
    match requested {
        Some(false) => Ok(Method::Plain),
        None => Ok(if possible { Method::Concurrent } else { Method::Plain }),
        Some(true) if possible => Ok(Method::Concurrent),
        Some(true) => {
            let why = if !has_unique_index {
                "it has no usable unique index (unique, valid, on plain columns, without a WHERE clause)"
            } else {
                "it is not populated (created WITH NO DATA); the first refresh cannot be concurrent"
            };
            Err(PgMartError::state(format!("materialized view {view} cannot be refreshed concurrently: {why}"))
                .hint(if !has_unique_index {
                    "Create a unique index with no WHERE clause on one or more columns of the materialized view, or pass concurrently => NULL."
                } else {
                    "Refresh it once with pgmart.refresh_now() or REFRESH MATERIALIZED VIEW, or pass concurrently => NULL."
                }))
        }
    }
}

/// The REFRESH statement for an already-quoted qualified name.
pub fn refresh_sql(quoted_name: &str, method: Method) -> String {
    match method {
        Method::Concurrent => format!("REFRESH MATERIALIZED VIEW CONCURRENTLY {quoted_name}"),
        Method::Plain => format!("REFRESH MATERIALIZED VIEW {quoted_name}"),
    }
}

/// A view is stale when its age exceeds the SLO, or two schedule periods when there is no SLO.
pub fn is_stale(age_s: f64, slo_s: Option<f64>, period_s: f64) -> bool {
    age_s > slo_s.unwrap_or(2.0 * period_s)
}

/// How soon an upstream job must be due for a downstream job to leave its refresh to it: jobs
/// registered together fall due milliseconds apart, and should still run as one chain.
pub fn defer_window_s(period_s: f64) -> f64 {
    (period_s / 2.0).min(2.0)
}

/// The job name for a view's refresh job.
pub fn job_name(qualified: &str) -> String {
    format!("refresh {qualified}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[Id]) -> BTreeSet<Id> {
        v.iter().copied().collect()
    }

    #[test]
    fn chain_refreshes_upstream_first() {
        // 1 -> 2 -> 3
        let e = [(2, 3), (1, 2)];
        assert_eq!(refresh_order(&e, &[1], &set(&[1, 2, 3])), vec![1, 2, 3]);
        assert_eq!(refresh_order(&e, &[3, 1, 2], &set(&[1, 2, 3])), vec![1, 2, 3]);
        assert_eq!(refresh_order(&e, &[2], &set(&[1, 2, 3])), vec![2, 3]);
        assert_eq!(refresh_order(&e, &[3], &set(&[1, 2, 3])), vec![3]);
    }

    #[test]
    fn diamond_refreshes_each_once() {
        // 10 -> 20, 10 -> 30, 20 -> 40, 30 -> 40
        let e = [(10, 20), (10, 30), (20, 40), (30, 40)];
        let o = refresh_order(&e, &[10, 40], &set(&[10, 20, 30, 40]));
        assert_eq!(o, vec![10, 20, 30, 40]);
    }

    #[test]
    fn unscheduled_views_are_not_refreshed_but_order_through_them_holds() {
        // 1 -> 2 (unscheduled) -> 3; and 3 -> 4 via nothing else
        let e = [(1, 2), (2, 3), (3, 4)];
        assert_eq!(refresh_order(&e, &[1], &set(&[1, 3, 4])), vec![1, 3, 4]);
        // Due 4 and 1 together: 1 first, 3 pulled in, 4 last.
        assert_eq!(refresh_order(&e, &[4, 1], &set(&[1, 3, 4])), vec![1, 3, 4]);
        // Order between due views connected only through an unscheduled one.
        let e2 = [(5, 6), (6, 7)];
        assert_eq!(topo_order(&e2, &set(&[7, 5])), vec![5, 7]);
    }

    #[test]
    fn independent_views_go_by_id_and_a_cycle_cannot_loop() {
        assert_eq!(refresh_order(&[], &[9, 3, 5], &set(&[])), vec![3, 5, 9]);
        let cyc = [(1, 2), (2, 1), (0, 1)];
        let o = refresh_order(&cyc, &[0], &set(&[0, 1, 2]));
        assert_eq!(o.len(), 3);
        assert_eq!(o[0], 0);
    }

    #[test]
    fn ancestors_and_descendants() {
        let e = [(1, 2), (2, 3), (4, 3)];
        assert_eq!(ancestors(&e, 3), set(&[1, 2, 4]));
        assert_eq!(descendants(&e, &[1]), set(&[2, 3]));
        assert_eq!(ancestors(&e, 1), set(&[]));
    }

    #[test]
    fn method_choice() {
        assert_eq!(choose_method(None, true, true, "v").unwrap(), Method::Concurrent);
        assert_eq!(choose_method(None, false, true, "v").unwrap(), Method::Plain);
        assert_eq!(choose_method(None, true, false, "v").unwrap(), Method::Plain);
        assert_eq!(choose_method(Some(false), true, true, "v").unwrap(), Method::Plain);
        assert_eq!(choose_method(Some(true), true, true, "v").unwrap(), Method::Concurrent);
        let e = choose_method(Some(true), true, false, "v").unwrap_err();
        assert_eq!(e.code, pgrx::PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE);
        assert!(choose_method(Some(true), false, true, "v").is_err());
    }

    #[test]
    fn staleness_and_sql() {
        assert!(is_stale(601.0, Some(600.0), 60.0));
        assert!(!is_stale(599.0, Some(600.0), 60.0));
        assert!(is_stale(121.0, None, 60.0));
        assert!(!is_stale(119.0, None, 60.0));
        assert_eq!(refresh_sql("\"s\".\"v\"", Method::Concurrent), "REFRESH MATERIALIZED VIEW CONCURRENTLY \"s\".\"v\"");
        assert_eq!(refresh_sql("s.v", Method::Plain), "REFRESH MATERIALIZED VIEW s.v");
        assert_eq!(job_name("public.v"), "refresh public.v");
        assert_eq!(defer_window_s(3600.0), 2.0);
        assert_eq!(defer_window_s(1.0), 0.5);
    }
}
