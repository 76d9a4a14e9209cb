//! One link's TCP proxy: accepts on the link's port, connects to its
//! upstream, and pumps both directions through the link's toxics.
//!
//! The toxics live in a `watch` channel, so a change reaches new and
//! existing connections at once: a chunk read after the change gets the
//! new latency, held data flows as soon as a blackhole is healed, and a
//! reset ends every connection of the link.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::admit::Admit;
use super::toxic::{Effect, Jitter, Stream, Toxic};

/// Bytes read at once from either side.
const CHUNK: usize = 16 * 1024;
/// Chunks in flight per direction (read, not yet written): the
/// back-pressure that stops reading from a held or slow side.
const IN_FLIGHT: usize = 256;
/// Bandwidth-limited writes go out in slices of this share of a second.
const SLICE: f64 = 0.05;

/// A link's toxics, shared by its listener and every connection.
pub type Toxics = watch::Receiver<Arc<Vec<Toxic>>>;

/// Serves `listener` until the task is dropped: every accepted connection
/// that `admit` allows is forwarded to `upstream` through `toxics`.
pub async fn serve(
    listener: TcpListener,
    upstream: std::net::SocketAddr,
    toxics: Toxics,
    admit: Admit,
) {
    loop {
        let Ok((client, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        if !admit.allows(peer.ip()) {
            eprintln!(
                "refused {peer}: only this host and its Docker containers may use {}",
                listener
                    .local_addr()
                    .map_or_else(|_| "this link".to_owned(), |a| a.to_string())
            );
            let _ = client.set_zero_linger();
            continue;
        }
        tokio::spawn(connection(client, upstream, toxics.clone()));
    }
}

/// One proxied connection, until either side closes it or a toxic resets it.
async fn connection(client: TcpStream, upstream: std::net::SocketAddr, toxics: Toxics) {
    if Effect::of(&toxics.borrow(), Stream::Upstream).reset == Some(Duration::ZERO)
        || Effect::of(&toxics.borrow(), Stream::Downstream).reset == Some(Duration::ZERO)
    {
        let _ = client.set_zero_linger();
        return;
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        let _ = client.set_zero_linger();
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let mut up = tokio::spawn(direction(
        client_read,
        server_write,
        toxics.clone(),
        Stream::Upstream,
    ));
    let mut down = tokio::spawn(direction(
        server_read,
        client_write,
        toxics,
        Stream::Downstream,
    ));
    // A direction that ends cleanly (its reader saw EOF and passed it on)
    // leaves the other running; a reset or an error ends both.
    let first = tokio::select! {
        ended = &mut up => (ended, &mut down),
        ended = &mut down => (ended, &mut up),
    };
    match first {
        (Ok(End::Closed), other) => {
            let _ = other.await;
        }
        (_, other) => other.abort(),
    }
}

/// How a direction ended.
enum End {
    /// Its reader saw EOF and the writer passed it on.
    Closed,
    /// A toxic reset the connection, or a side failed.
    Broken,
}

/// Pumps one direction: a reader stamps each chunk with when it is due,
/// a writer sends it then, at the rate limit, while nothing holds it. On a
/// reset both sockets close with an RST (zero linger).
async fn direction(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    toxics: Toxics,
    stream: Stream,
) -> End {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(IN_FLIGHT);
    let end = {
        let reader_toxics = toxics.clone();
        let source = &mut from;
        let reader = async move {
            let mut jitter = Jitter::new();
            let mut buf = vec![0u8; CHUNK];
            loop {
                let n = match source.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let effect = Effect::of(&reader_toxics.borrow(), stream);
                let due = Instant::now() + effect.delay(jitter.next_unit());
                if tx.send((due, buf[..n].to_vec())).await.is_err() {
                    return;
                }
            }
        };
        let sink = &mut to;
        let writer = async move {
            let mut toxics = toxics;
            let mut last_due = Instant::now();
            let mut held_since: Option<Instant> = None;
            loop {
                let next = tokio::select! {
                    next = rx.recv() => next,
                    // An idle connection still obeys a reset or a hold's timeout.
                    changed = toxics.changed() => {
                        if changed.is_err()
                            || broken(&Effect::of(&toxics.borrow(), stream), &mut held_since)
                        {
                            return End::Broken;
                        }
                        continue;
                    }
                };
                // The reader stopped (EOF) and everything in flight is out.
                let Some((due, chunk)) = next else {
                    let _ = sink.shutdown().await;
                    return End::Closed;
                };
                last_due = last_due.max(due);
                pause_until(last_due).await;
                loop {
                    let effect = Effect::of(&toxics.borrow(), stream);
                    if broken(&effect, &mut held_since) {
                        return End::Broken;
                    }
                    if effect.hold.is_none() {
                        break;
                    }
                    // Held: wait for a change, or for the hold's timeout.
                    let _ =
                        tokio::time::timeout(Duration::from_millis(100), toxics.changed()).await;
                }
                if send(sink, &chunk, &toxics, stream).await.is_err() {
                    return End::Broken;
                }
            }
        };
        tokio::pin!(reader, writer);
        let mut reading = true;
        loop {
            tokio::select! {
                end = &mut writer => break end,
                () = &mut reader, if reading => reading = false,
            }
        }
    };
    if let End::Broken = end {
        let _ = from.as_ref().set_zero_linger();
        let _ = to.as_ref().set_zero_linger();
    }
    end
}

/// Whether `effect` ends the connection now: a reset, or a hold whose
/// timeout has passed (tracked in `held_since`).
fn broken(effect: &Effect, held_since: &mut Option<Instant>) -> bool {
    if effect.reset.is_some() {
        return true;
    }
    match effect.hold {
        None => {
            *held_since = None;
            false
        }
        Some(after) => {
            let since = *held_since.get_or_insert_with(Instant::now);
            !after.is_zero() && since.elapsed() >= after
        }
    }
}

/// Writes `chunk`, in slices paced to the rate limit when there is one.
async fn send(
    to: &mut OwnedWriteHalf,
    chunk: &[u8],
    toxics: &Toxics,
    stream: Stream,
) -> std::io::Result<()> {
    let mut rest = chunk;
    while !rest.is_empty() {
        let effect = Effect::of(&toxics.borrow(), stream);
        let slice = effect
            .rate
            .map_or(rest.len(), |rate| ((rate as f64 * SLICE) as usize).max(64))
            .min(rest.len());
        let started = Instant::now();
        to.write_all(&rest[..slice]).await?;
        pause_until(started + effect.transfer_time(slice)).await;
        rest = &rest[slice..];
    }
    Ok(())
}

/// Waits until `deadline` unless it has passed. A tokio timer rounds up to
/// the next millisecond and fires late under load, so the timer sleeps to
/// within 2 ms of the deadline and yielding covers the rest: a chunk's delay
/// stays within a fraction of a millisecond of its latency, and a chunk
/// without latency pays nothing.
async fn pause_until(deadline: Instant) {
    let early = deadline.checked_sub(Duration::from_millis(2));
    if let Some(early) = early.filter(|e| *e > Instant::now()) {
        tokio::time::sleep_until(early).await;
    }
    while Instant::now() < deadline {
        tokio::task::yield_now().await;
    }
}
