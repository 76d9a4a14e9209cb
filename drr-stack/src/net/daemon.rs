//! The fault proxy process (`net-proxy --dir <state>/net`): binds every
//! link of its configuration, applies the toxics file, re-reads it on
//! SIGHUP (what `cargo xtask net`/`partition`/`heal` send), serves the
//! Toxiproxy API when configured, and exits on SIGTERM or SIGINT.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use super::files::{LinkToxics, NetDir};
use super::proxy;
use super::toxic::Toxic;

/// Every link's toxics, as the proxy applies them now.
pub type Senders = Arc<BTreeMap<String, watch::Sender<Arc<Vec<Toxic>>>>>;

/// Runs the proxy of the directory `dir` until it is told to stop.
pub fn run(dir: &Path) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the proxy's runtime")?;
    runtime.block_on(serve(NetDir::at(dir)))
}

async fn serve(net: NetDir) -> Result<()> {
    let config = net.config()?.with_context(|| {
        format!(
            "{} is missing; `cargo xtask up` writes it",
            net.config_file().display()
        )
    })?;
    let toxics = net.toxics()?;
    let mut senders = BTreeMap::new();
    for link in &config.links {
        let listen = link.listen_addr(&config);
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("link `{}` cannot listen on {listen}", link.name))?;
        let (tx, rx) = watch::channel(Arc::new(
            toxics.get(&link.name).cloned().unwrap_or_default(),
        ));
        tokio::spawn(proxy::serve(
            listener,
            SocketAddr::new(config.host, link.upstream),
            rx,
            link.admit(),
        ));
        senders.insert(link.name.clone(), tx);
    }
    let senders: Senders = Arc::new(senders);
    net.write_applied(&toxics)?;
    if let Some(port) = config.api {
        let listen = SocketAddr::new(config.host, port);
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("the Toxiproxy API cannot listen on {listen}"))?;
        tokio::spawn(super::api::serve(
            listener,
            config,
            senders.clone(),
            net.clone(),
        ));
    }
    let mut hangup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let ready = net.ready_file();
    std::fs::write(&ready, std::process::id().to_string())
        .with_context(|| format!("cannot write {}", ready.display()))?;
    eprintln!("drr net proxy {} ready", std::process::id());
    loop {
        tokio::select! {
            _ = hangup.recv() => match net.toxics() {
                Ok(toxics) => {
                    apply(&senders, &toxics);
                    if let Err(e) = net.write_applied(&toxics) {
                        eprintln!("{e:#}");
                    }
                }
                Err(e) => eprintln!("keeping the toxics in force: {e:#}"),
            },
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    let _ = std::fs::remove_file(&ready);
    Ok(())
}

/// Makes `toxics` the toxics in force (a link missing from it has none).
pub fn apply(senders: &Senders, toxics: &LinkToxics) {
    for (name, sender) in senders.iter() {
        let new = toxics.get(name).cloned().unwrap_or_default();
        sender.send_if_modified(|current| {
            if **current == new {
                return false;
            }
            *current = Arc::new(new);
            true
        });
    }
}
