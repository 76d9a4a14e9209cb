//! The ways of running a statement on a client (`query`, `execute`, ...),
//! so that routing is written once for all of them.

use std::future::Future;

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row};

use crate::error::Result;

/// Statement parameters, as tokio-postgres takes them.
pub(crate) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// One way of running a statement on a client.
pub(crate) trait Op {
    type Out;
    fn run<'a>(
        client: &'a Client,
        sql: &'a str,
        params: Params<'a>,
    ) -> impl Future<Output = Result<Self::Out, tokio_postgres::Error>> + Send + 'a;
}

pub(crate) struct Query;
pub(crate) struct QueryOne;
pub(crate) struct QueryOpt;
pub(crate) struct Execute;
/// Runs `sql` as a simple-protocol batch (for `BEGIN`).
pub(crate) struct Batch;
/// Runs nothing: just the connection.
pub(crate) struct Acquire;

impl Op for Query {
    type Out = Vec<Row>;
    fn run<'a>(
        client: &'a Client,
        sql: &'a str,
        params: Params<'a>,
    ) -> impl Future<Output = Result<Vec<Row>, tokio_postgres::Error>> + Send + 'a {
        client.query(sql, params)
    }
}

impl Op for QueryOne {
    type Out = Row;
    fn run<'a>(
        client: &'a Client,
        sql: &'a str,
        params: Params<'a>,
    ) -> impl Future<Output = Result<Row, tokio_postgres::Error>> + Send + 'a {
        client.query_one(sql, params)
    }
}

impl Op for QueryOpt {
    type Out = Option<Row>;
    fn run<'a>(
        client: &'a Client,
        sql: &'a str,
        params: Params<'a>,
    ) -> impl Future<Output = Result<Option<Row>, tokio_postgres::Error>> + Send + 'a {
        client.query_opt(sql, params)
    }
}

impl Op for Execute {
    type Out = u64;
    fn run<'a>(
        client: &'a Client,
        sql: &'a str,
        params: Params<'a>,
    ) -> impl Future<Output = Result<u64, tokio_postgres::Error>> + Send + 'a {
        client.execute(sql, params)
    }
}

impl Op for Batch {
    type Out = ();
    fn run<'a>(
        client: &'a Client,
        sql: &'a str,
        _: Params<'a>,
    ) -> impl Future<Output = Result<(), tokio_postgres::Error>> + Send + 'a {
        client.batch_execute(sql)
    }
}

impl Op for Acquire {
    type Out = ();
    fn run<'a>(
        _: &'a Client,
        _: &'a str,
        _: Params<'a>,
    ) -> impl Future<Output = Result<(), tokio_postgres::Error>> + Send + 'a {
        std::future::ready(Ok(()))
    }
}
