//! Listening addresses: `host:port` syntax, and two inputs that would
//! bind the same address, caught at load instead of at bind time.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use super::builder::Builder;
use super::file::MetricsFile;
use super::*;

/// Where an input listens, as written.
fn describe_kind(k: &InputKind) -> String {
    match k {
        InputKind::Tcp { address } | InputKind::Udp { address } => address.clone(),
        InputKind::Unix { path, .. } => path.display().to_string(),
        InputKind::Nats(n) => format!("{}/{}", n.stream, n.consumer),
    }
}

impl Builder<'_, '_> {
    /// Check `host:port`; `Some((host, port))` when well formed.
    /// `port 0` (any free port) is allowed for listeners only.
    pub(super) fn host_port(
        &mut self,
        path: &str,
        address: &str,
        connect: bool,
    ) -> Option<(String, u16)> {
        match split_host_port(address) {
            Ok((_, 0)) if connect => {
                self.report
                    .error(path, format!("{address:?}: port 0 cannot be connected to"));
                None
            }
            Ok(hp) => Some(hp),
            Err(what) => {
                self.report.error(path, format!("{address:?}: {what}"));
                None
            }
        }
    }

    /// Two inputs (or an input and the metrics endpoint) on one address
    /// would fail at bind time, after the config was accepted: catch it now.
    pub(super) fn check_addresses(
        &mut self,
        inputs: &BTreeMap<String, InputConfig>,
        paths: &BTreeMap<String, String>,
        metrics: Option<&MetricsFile>,
    ) {
        // (protocol, endpoint, owner description, JSON path)
        let mut seen: Vec<(&str, Endpoint, String, String)> = Vec::new();
        let mut candidates: Vec<(&str, Endpoint, String, String)> = Vec::new();
        for (name, i) in inputs {
            let base = paths.get(name).cloned().unwrap_or_default();
            let (proto, ep, key) = match &i.kind {
                InputKind::Tcp { address } => ("tcp", Endpoint::net(address), "address"),
                InputKind::Udp { address } => ("udp", Endpoint::net(address), "address"),
                InputKind::Unix { path, .. } => {
                    ("unix", Some(Endpoint::Unix(path.clone())), "path")
                }
                // Binds nothing.
                InputKind::Nats(_) => continue,
            };
            let native = base.starts_with("inputs.");
            let at = if native {
                format!("{base}.{key}")
            } else {
                base
            };
            let Some(ep) = ep else { continue };
            if !native {
                // Report the clash at the native input, which the user
                // wrote, rather than at a default they may not know about.
                let owner = format!(
                    "the cookbook listener's input ({}, from `{at}`)",
                    describe_kind(&i.kind)
                );
                candidates.insert(0, (proto, ep, owner, at));
            } else {
                candidates.push((proto, ep, format!("input {name:?}"), at));
            }
        }
        if let Some(ep) = metrics.and_then(|m| Endpoint::net(&m.address)) {
            candidates.push((
                "tcp",
                ep,
                "the metrics endpoint".into(),
                "metrics.address".into(),
            ));
        }
        for (proto, ep, owner, at) in candidates {
            if let Some((_, _, other, _)) = seen
                .iter()
                .find(|(p, e, _, _)| *p == proto && e.conflicts(&ep))
            {
                let what = format!("{} is already used by {other}", ep.describe(proto));
                self.report.error(&at, what);
            }
            seen.push((proto, ep, owner, at));
        }
    }
}

/// `host:port`, with brackets around an IPv6 host.
pub(super) fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Split `host:port` (IPv6 hosts in brackets).
pub(super) fn split_host_port(address: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = address.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else {
            return Err("missing `]` after an IPv6 address".into());
        };
        let Some(port) = after.strip_prefix(':') else {
            return Err("expected host:port, like \"[::1]:9020\"".into());
        };
        (host, port)
    } else {
        let Some((host, port)) = address.rsplit_once(':') else {
            return Err("expected host:port, like \"127.0.0.1:9020\"".into());
        };
        if host.contains(':') {
            return Err("an IPv6 address needs brackets, like \"[::1]:9020\"".into());
        }
        (host, port)
    };
    if host.is_empty() {
        return Err("the host is empty (write 0.0.0.0 to listen on every interface)".into());
    }
    match port.parse::<u64>() {
        Ok(p) => u16::try_from(p)
            .map(|p| (host.to_string(), p))
            .map_err(|_| format!("port {p} is out of range (0 to 65535)")),
        Err(_) => Err(format!("port {port:?} is not a number")),
    }
}

/// A listening address, as far as the config tells without resolving names.
#[derive(Debug)]
enum Endpoint {
    Net { hosts: Vec<Host>, port: u16 },
    Unix(PathBuf),
}

/// One host an address binds.
#[derive(Debug, PartialEq)]
enum Host {
    /// An IP literal (`0.0.0.0` and `::` bind every address of their family).
    Ip(IpAddr),
    /// A name we do not resolve at load: it may be any address.
    Name(String),
}

impl Endpoint {
    fn net(address: &str) -> Option<Endpoint> {
        let (host, port) = split_host_port(address).ok()?;
        let hosts = match host.to_ascii_lowercase().as_str() {
            // `localhost` binds every address it resolves to
            // (docs/decisions.md, "Config and files").
            "localhost" => vec![
                Host::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                Host::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            ],
            h => match h.parse::<IpAddr>() {
                Ok(ip) => vec![Host::Ip(ip)],
                Err(_) => vec![Host::Name(h.to_string())],
            },
        };
        Some(Endpoint::Net { hosts, port })
    }

    fn conflicts(&self, other: &Endpoint) -> bool {
        match (self, other) {
            (Endpoint::Unix(a), Endpoint::Unix(b)) => a == b,
            (Endpoint::Net { hosts: a, port: p }, Endpoint::Net { hosts: b, port: q }) => {
                // Port 0 asks the kernel for a free port: never a clash.
                *p != 0 && p == q && a.iter().any(|x| b.iter().any(|y| x.overlaps(y)))
            }
            _ => false,
        }
    }

    fn describe(&self, proto: &str) -> String {
        match self {
            Endpoint::Unix(p) => format!("the socket {}", p.display()),
            Endpoint::Net { port, .. } => format!("{} port {port}", proto.to_ascii_uppercase()),
        }
    }
}

impl Host {
    /// Whether binding both on one port can fail. A wildcard covers its
    /// family; `::` also covers IPv4 (Linux binds it dual-stack); a name
    /// might be anything but another name.
    fn overlaps(&self, other: &Host) -> bool {
        match (self, other) {
            (Host::Name(a), Host::Name(b)) => a == b,
            (Host::Name(_), Host::Ip(ip)) | (Host::Ip(ip), Host::Name(_)) => ip.is_unspecified(),
            (Host::Ip(a), Host::Ip(b)) => {
                a == b
                    || (a.is_unspecified() && (a.is_ipv6() || a.is_ipv4() == b.is_ipv4()))
                    || (b.is_unspecified() && (b.is_ipv6() || a.is_ipv4() == b.is_ipv4()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clash(a: &str, b: &str) -> bool {
        match (Endpoint::net(a), Endpoint::net(b)) {
            (Some(x), Some(y)) => x.conflicts(&y),
            _ => panic!("bad address in test"),
        }
    }

    #[test]
    fn wildcards_cover_their_family() {
        assert!(clash("127.0.0.1:9020", "localhost:9020"));
        assert!(clash("[::1]:9020", "localhost:9020"));
        assert!(clash("0.0.0.0:9020", "127.0.0.1:9020"));
        assert!(clash("0.0.0.0:9020", "myhost:9020"));
        assert!(clash("[::]:9020", "127.0.0.1:9020"));
        assert!(clash("myhost:9020", "MYHOST:9020"));
        assert!(!clash("0.0.0.0:9020", "[::1]:9020"));
        assert!(!clash("127.0.0.1:9020", "127.0.0.2:9020"));
        assert!(!clash("127.0.0.1:9020", "127.0.0.1:9021"));
        assert!(!clash("127.0.0.1:0", "127.0.0.1:0"));
        assert!(!clash("myhost:9020", "otherhost:9020"));
    }
}
