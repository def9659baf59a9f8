//! Addresses the real node adds to the host's loopback interface, which Pods reach over the
//! node's bridge (and no further), and TCP relays on them to listeners on `127.0.0.1`.

use std::path::Path;
use std::time::Duration;

use crate::Error;
use crate::real_node::{run, start_error};

/// Adds `ip/32` to `lo` with label `link` (replacing a stale one).
pub(crate) fn add_address(ip_tool: &Path, ip: &str, link: &str) -> Result<(), Error> {
    let cidr = format!("{ip}/32");
    remove_address(ip_tool, ip);
    run(ip_tool, &["addr", "add", &cidr, "dev", "lo", "label", link])
        .map(drop)
        .map_err(|e| start_error(&format!("ip addr add {cidr} dev lo: {e}")))
}

/// Removes `ip/32` from `lo`, if it is there.
pub(crate) fn remove_address(ip_tool: &Path, ip: &str) {
    let _ = run(ip_tool, &["addr", "del", &format!("{ip}/32"), "dev", "lo"]);
}

/// A TCP relay from an address added to the host's loopback interface to a loopback listener.
pub(crate) struct Relay {
    stopped: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pub(crate) address: std::net::SocketAddr,
}

impl Relay {
    /// Adds `ip/32` to `lo` (label `link`), listens on `ip:port` and forwards every connection to
    /// `upstream`.
    pub(crate) fn start(
        ip_tool: &Path,
        ip: &str,
        port: u16,
        link: &str,
        upstream: std::net::SocketAddr,
    ) -> Result<Self, Error> {
        add_address(ip_tool, ip, link)?;
        let listener = match std::net::TcpListener::bind((ip, port)) {
            Ok(listener) => listener,
            Err(e) => {
                remove_address(ip_tool, ip);
                return Err(start_error(&format!("listening on {ip}:{port}: {e}")));
            }
        };
        let stopped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let address = listener.local_addr().map_err(|e| start_error(&format!("{ip}:{port}: {e}")))?;
        let flag = stopped.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if flag.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                std::thread::spawn(move || {
                    let Ok(server) = std::net::TcpStream::connect(upstream) else { return };
                    let (Ok(mut client_read), Ok(mut server_write)) = (client.try_clone(), server.try_clone()) else {
                        return;
                    };
                    let forward = std::thread::spawn(move || {
                        let _ = std::io::copy(&mut client_read, &mut server_write);
                        let _ = server_write.shutdown(std::net::Shutdown::Write);
                    });
                    let (mut server_read, mut client_write) = (server, client);
                    let _ = std::io::copy(&mut server_read, &mut client_write);
                    let _ = client_write.shutdown(std::net::Shutdown::Both);
                    let _ = forward.join();
                });
            }
        });
        Ok(Self { stopped, address })
    }

    /// Stops accepting (a last connection wakes the accept loop) and removes the address.
    pub(crate) fn stop(self, ip_tool: &Path) {
        self.stopped.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = std::net::TcpStream::connect_timeout(&self.address, Duration::from_millis(200));
        remove_address(ip_tool, &self.address.ip().to_string());
    }
}
