//! Loopback ports for the components the environment starts.
//!
//! A component is told its port on its command line, so the port has to be chosen before the
//! component listens on it. The kernel answers `bind(127.0.0.1:0)` with a port from its ephemeral
//! range, and it takes the source port of every outgoing connection from that same range: between
//! the choice and the component's own `bind`, any connection on the machine can take the port, and
//! the component exits with "address already in use".
//!
//! [`free_port`] therefore chooses below the ephemeral range (and below the NodePort range), where
//! the kernel assigns nothing by itself: at random, checked free on every address, and never twice
//! in one process. Another process choosing the same port in the same instant is the one race left;
//! [`is_address_in_use`] lets a caller start again.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, TcpListener};
use std::ops::Range;
use std::sync::{Mutex, PoisonError};

use crate::Error;

/// The lowest port handed out.
const LOWEST: u16 = 15_000;
/// The first port of Kubernetes' default NodePort range, never handed out.
const NODE_PORTS: u16 = 30_000;
/// Fewer candidates than this and the kernel's own choice is used instead.
const ENOUGH: usize = 1_000;
/// Random candidates tried before giving up.
const ATTEMPTS: usize = 200;

static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A TCP port free on every address of this machine right now, which this process has not handed
/// out before, for a component to listen on `127.0.0.1`.
pub fn free_port() -> Result<u16, Error> {
    let candidates = candidates(ephemeral_low());
    if candidates.len() < ENOUGH {
        return kernel_port();
    }
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
    for _ in 0..ATTEMPTS {
        let port = candidates.start + (random_u32()? % u32::from(candidates.end - candidates.start)) as u16;
        if !handed_out.contains(&port) && TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok() {
            handed_out.insert(port);
            return Ok(port);
        }
    }
    Err(start_error(format!("no free port in {}..{} after {ATTEMPTS} tries", candidates.start, candidates.end)))
}

/// Whether a start failed because a port was taken, so that starting again with new ports may work.
pub fn is_address_in_use(error: &Error) -> bool {
    error.to_string().contains("address already in use")
}

/// The ports [`free_port`] chooses from, given the first port of the kernel's ephemeral range.
fn candidates(ephemeral_low: u16) -> Range<u16> {
    LOWEST..ephemeral_low.clamp(LOWEST, NODE_PORTS)
}

/// The first port of the kernel's ephemeral range (`net.ipv4.ip_local_port_range`), or the
/// lowest port when it cannot be read (so that only the kernel's own choice is used).
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next().and_then(|low| low.parse().ok()))
        .unwrap_or(LOWEST)
}

fn kernel_port() -> Result<u16, Error> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|e| start_error(format!("no free loopback port: {e}")))
}

fn random_u32() -> Result<u32, Error> {
    let bytes: [u8; 4] = ring::rand::generate(&ring::rand::SystemRandom::new())
        .map_err(|_| start_error("no randomness to choose a port".to_string()))?
        .expose();
    Ok(u32::from_le_bytes(bytes))
}

fn start_error(message: String) -> Error {
    Error::Start { component: "testenv".into(), message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_come_from_below_the_ephemeral_and_node_port_ranges() {
        assert_eq!(candidates(32_768), 15_000..30_000);
        assert_eq!(candidates(20_000), 15_000..20_000);
        assert!(candidates(1_024).is_empty(), "an ephemeral range starting low leaves the kernel to choose");
    }

    #[test]
    fn a_port_is_free_and_never_handed_out_twice() {
        let ports: Vec<u16> = (0..50).map(|_| free_port().expect("a free port")).collect();
        let distinct: BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len(), "{ports:?}");
        for port in ports {
            TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("the port is free");
            if candidates(ephemeral_low()).len() >= ENOUGH {
                assert!(port < ephemeral_low(), "{port} is below the ephemeral range");
            }
        }
    }

    #[test]
    fn a_taken_port_reads_as_address_in_use() {
        let taken = Error::Start {
            component: "kube-apiserver".into(),
            message: "failed to listen on 127.0.0.1:45481: bind: address already in use".into(),
        };
        assert!(is_address_in_use(&taken));
        assert!(!is_address_in_use(&Error::Timeout("etcd".into())));
    }
}
