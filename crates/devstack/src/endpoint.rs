//! A stand-in for the RDS/Aurora writer endpoint: a TCP forwarder on a fixed loopback port that
//! clients use as `host:port`, passing each new connection to whichever server is the primary now.
//!
//! RDS moves its endpoint by changing a DNS record; here the forwarder changes its target. Either
//! way a connection already made stays with the server it reached (until that server closes it),
//! and only new connections go to the new target. It forwards bytes and nothing else, so TLS
//! (verify-full against the server's certificate, which names 127.0.0.1 and localhost) and SCRAM
//! pass through it end to end.
//!
//! It runs on its own thread and runtime, so a caller's runtime blocked on `pg_ctl` does not stall
//! it, and it stops (closing every forwarded connection) when its handle drops or the process
//! exits: there is no child process to leave behind.

use crate::DevstackError;
use std::{
    sync::{
        Arc,
        atomic::{AtomicU16, AtomicU64, Ordering},
    },
    thread::JoinHandle,
};
use tokio::{net::TcpListener, sync::watch};

/// A running forwarder. Dropping it stops it and closes every connection it forwards.
#[derive(Debug)]
pub struct Endpoint {
    port: u16,
    target: Arc<AtomicU16>,
    forwarded: Arc<AtomicU64>,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl Endpoint {
    /// Listens on a free port of 127.0.0.1 and forwards new connections to `127.0.0.1:target`.
    ///
    /// # Errors
    /// When no socket can be bound or the thread cannot start.
    pub fn start(target: u16) -> Result<Self, DevstackError> {
        let std_listener = std::net::TcpListener::bind(("127.0.0.1", 0))
            .map_err(|e| DevstackError::io("bind the endpoint's port", e))?;
        Self::serve(std_listener, target)
    }

    /// Like [`Self::start`], on a given port (for a port a state file already names).
    ///
    /// # Errors
    /// When the port is taken.
    pub fn start_on(port: u16, target: u16) -> Result<Self, DevstackError> {
        let std_listener = std::net::TcpListener::bind(("127.0.0.1", port))
            .map_err(|e| DevstackError::io("bind the endpoint's port", e))?;
        Self::serve(std_listener, target)
    }

    fn serve(std_listener: std::net::TcpListener, target: u16) -> Result<Self, DevstackError> {
        let port = std_listener
            .local_addr()
            .map_err(|e| DevstackError::io("read the endpoint's port", e))?
            .port();
        std_listener
            .set_nonblocking(true)
            .map_err(|e| DevstackError::io("set the endpoint's socket non-blocking", e))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(|e| DevstackError::io("start the endpoint's runtime", e))?;
        let target = Arc::new(AtomicU16::new(target));
        let forwarded = Arc::new(AtomicU64::new(0));
        let (stop, stopped) = watch::channel(false);
        let thread = {
            let target = Arc::clone(&target);
            let forwarded = Arc::clone(&forwarded);
            std::thread::Builder::new()
                .name(format!("endpoint-{port}"))
                .spawn(move || runtime.block_on(accept_loop(std_listener, target, forwarded, stopped)))
                .map_err(|e| DevstackError::io("start the endpoint's thread", e))?
        };
        Ok(Self {
            port,
            target,
            forwarded,
            stop,
            thread: Some(thread),
        })
    }

    /// The port clients connect to; it does not change for the endpoint's life.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port new connections go to now.
    pub fn target(&self) -> u16 {
        self.target.load(Ordering::SeqCst)
    }

    /// Sends new connections to `127.0.0.1:port` from now on (the DNS flip). Connections already
    /// forwarded stay where they are.
    pub fn set_target(&self, port: u16) {
        self.target.store(port, Ordering::SeqCst);
    }

    /// How many connections it has accepted so far.
    pub fn connections(&self) -> u64 {
        self.forwarded.load(Ordering::Relaxed)
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(
    std_listener: std::net::TcpListener,
    target: Arc<AtomicU16>,
    forwarded: Arc<AtomicU64>,
    mut stopped: watch::Receiver<bool>,
) {
    let Ok(listener) = TcpListener::from_std(std_listener) else {
        return;
    };
    loop {
        tokio::select! {
            _ = stopped.changed() => return,
            accepted = listener.accept() => {
                let Ok((mut client, _)) = accepted else { continue };
                forwarded.fetch_add(1, Ordering::Relaxed);
                // Read when the connection arrives: the flip affects only connections made after it.
                let upstream_port = target.load(Ordering::SeqCst);
                let mut stopped = stopped.clone();
                tokio::spawn(async move {
                    // A target that refuses (a stopped primary before the flip) closes the client's
                    // connection at once, as a connect to a dead host's address fails.
                    let Ok(mut upstream) = tokio::net::TcpStream::connect(("127.0.0.1", upstream_port)).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = upstream.set_nodelay(true);
                    tokio::select! {
                        _ = stopped.changed() => {}
                        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                    }
                });
            }
        }
    }
}
