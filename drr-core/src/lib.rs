//! Read/write routing for PostgreSQL read replicas.
