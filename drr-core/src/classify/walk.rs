//! One walk over a parsed query, collecting what decides where it may run:
//! locking clauses, data-modifying statements, `SELECT ... INTO`, and the
//! functions it calls.

use std::ops::ControlFlow;

use crate::functions::FunctionName;
use sqlparser::ast::{
    Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, ObjectName, Query,
    Select, Statement, TableFactor, Value, Visit, Visitor,
};

/// What a query contains.
#[derive(Debug, Default)]
pub(crate) struct Facts {
    /// `FOR UPDATE`, `FOR SHARE`, ... somewhere.
    pub(crate) locking: bool,
    /// A statement that is not a query, e.g. in a `WITH` clause.
    pub(crate) data_modifying: bool,
    /// `SELECT ... INTO`: `Some(true)` for a temporary table.
    pub(crate) select_into: Option<bool>,
    /// Every function called, in order of appearance.
    pub(crate) calls: Vec<Call>,
}

/// A function call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Call {
    /// The function, folded as PostgreSQL folds identifiers.
    pub(crate) function: FunctionName,
    /// The call's third argument is the literal `true` (for `set_config`,
    /// whose third argument says whether the setting is local to the
    /// transaction).
    pub(crate) third_argument_true: bool,
}

/// Collects the facts of `statement`.
pub(crate) fn facts(statement: &Statement) -> Facts {
    let mut walker = Walker::default();
    let _ = statement.visit(&mut walker);
    walker.facts
}

#[derive(Default)]
struct Walker {
    facts: Facts,
    /// The top-level statement is the query itself.
    seen_top: bool,
}

impl Visitor for Walker {
    type Break = ();

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<()> {
        if !std::mem::replace(&mut self.seen_top, true) {
            return ControlFlow::Continue(());
        }
        // Nested statements other than queries are data-modifying CTEs and
        // their kin (`WITH x AS (INSERT ...) SELECT ...`).
        if !matches!(statement, Statement::Query(_)) {
            self.facts.data_modifying = true;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if !query.locks.is_empty() || query.for_clause.is_some() {
            self.facts.locking = true;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<()> {
        if let Some(into) = &select.into {
            let earlier = self.facts.select_into.unwrap_or(false);
            self.facts.select_into = Some(earlier || into.temporary);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        if let Expr::Function(function) = expr {
            self.call(&function.name, third_argument_true(function));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        // `FROM nextval('s')` parses as a table with arguments.
        match factor {
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            }
            | TableFactor::Function { name, .. } => self.call(name, false),
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

impl Walker {
    fn call(&mut self, name: &ObjectName, third_argument_true: bool) {
        let parts: Vec<&Ident> = name.0.iter().filter_map(|part| part.as_ident()).collect();
        let Some((last, before)) = parts.split_last() else {
            return;
        };
        let schema = before.last().map(|schema| fold(schema));
        self.facts.calls.push(Call {
            function: FunctionName::new(schema.as_deref(), &fold(last)),
            third_argument_true,
        });
    }
}

/// An identifier as PostgreSQL stores it: unquoted ones in lower case.
fn fold(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    }
}

fn third_argument_true(function: &Function) -> bool {
    let FunctionArguments::List(list) = &function.args else {
        return false;
    };
    matches!(
        list.args.get(2),
        Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(value))))
            if matches!(value.value, Value::Boolean(true))
    )
}
