//! A TCP proxy in front of a real server: network fault injection without
//! touching the server (so it works on the shared stack) and without a
//! mocked database. It can cut every connection and refuse new ones, heal,
//! and record what clients sent.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A proxy on a free loopback port, forwarding to one server.
pub struct Proxy {
    /// A URL like the target's, through the proxy.
    pub url: String,
    up: watch::Sender<bool>,
    sent: Arc<Mutex<Vec<u8>>>,
}

impl Proxy {
    /// Starts forwarding to the server of `target_url`.
    pub async fn start(target_url: &str) -> Proxy {
        let config: tokio_postgres::Config = target_url.parse().expect("url");
        let target_port = config.get_ports().first().copied().unwrap_or(5432);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (up, state) = watch::channel(true);
        let sent = Arc::new(Mutex::new(Vec::new()));
        let recorder = sent.clone();
        tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    return;
                };
                if !*state.borrow() {
                    // Cut: the client sees its connection closed at once.
                    drop(inbound);
                    continue;
                }
                tokio::spawn(forward(
                    inbound,
                    target_port,
                    state.clone(),
                    recorder.clone(),
                ));
            }
        });
        Proxy {
            url: with_port(target_url, port),
            up,
            sent,
        }
    }

    /// Closes every connection through the proxy and refuses new ones, as a
    /// dead server would.
    pub fn cut(&self) {
        let _ = self.up.send(false);
    }

    /// Forwards new connections again.
    pub fn heal(&self) {
        let _ = self.up.send(true);
    }

    /// Everything clients have sent so far, as text (the protocol's bytes,
    /// lossily decoded).
    pub fn sent(&self) -> String {
        let bytes = self.sent.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

async fn forward(
    mut inbound: TcpStream,
    target_port: u16,
    mut state: watch::Receiver<bool>,
    sent: Arc<Mutex<Vec<u8>>>,
) {
    let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", target_port)).await else {
        return;
    };
    let (mut client_read, mut client_write) = inbound.split();
    let (mut server_read, mut server_write) = outbound.split();
    let upstream = async {
        let mut buffer = [0_u8; 8192];
        loop {
            let n = client_read.read(&mut buffer).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            if let Ok(mut sent) = sent.lock() {
                sent.extend_from_slice(&buffer[..n]);
            }
            if server_write.write_all(&buffer[..n]).await.is_err() {
                return;
            }
        }
    };
    let downstream = tokio::io::copy(&mut server_read, &mut client_write);
    tokio::select! {
        _ = upstream => {}
        _ = downstream => {}
        _ = state.wait_for(|up| !*up) => {}
    }
}

/// A `key=value` URL for the server of `url`, on `port`.
pub fn with_port(url: &str, port: u16) -> String {
    let config: tokio_postgres::Config = url.parse().expect("url");
    let user = config.get_user().unwrap_or("postgres");
    let password = config
        .get_password()
        .map(String::from_utf8_lossy)
        .unwrap_or_default();
    let dbname = config.get_dbname().unwrap_or(user);
    let quote = |value: &str| format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"));
    format!(
        "host=127.0.0.1 port={port} user={} password={} dbname={}",
        quote(user),
        quote(&password),
        quote(dbname)
    )
}
