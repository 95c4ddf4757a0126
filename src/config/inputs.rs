//! Resolving `inputs`: each input's socket, decoding, limits, TLS and
//! token, with its defaults filled in.

use super::builder::{tls_field, Builder, MAX_CONNECTIONS, MAX_FRAME_BYTES, MAX_FRAME_TIMEOUT_MS};
use super::file::*;
use super::*;

impl Builder<'_, '_> {
    /// One input, with its defaults filled in.
    pub(super) fn input(&mut self, path: &str, i: &InputFile) -> InputConfig {
        let mut stream = None;
        let mut tls = None;
        let (kind, decoder, framing, max) = match i {
            InputFile::Tcp(t) => {
                let hp = self.host_port(&format!("{path}.address"), &t.address, false);
                tls = t.tls.as_ref().and_then(|f| self.server_tls(path, f));
                if let Some((host, _)) = hp {
                    if tls.is_none() && !crate::tls::is_loopback_host(&host) {
                        self.report.warn(
                            format!("{path}.address"),
                            format!(
                                "{:?} is reachable from other hosts but this input has no `tls`: \
                                 records cross the network in clear{}",
                                t.address,
                                if t.token_file.is_some() {
                                    ""
                                } else {
                                    " and anyone who can reach the port can write logs; add `tls` (and `token_file`)"
                                }
                            ),
                        );
                    }
                }
                stream = Some((t.frame_timeout_ms, t.max_connections, &t.token_file));
                let kind = InputKind::Tcp {
                    address: t.address.clone(),
                };
                (kind, t.decoder, t.framing, t.max_frame_bytes)
            }
            InputFile::Udp(u) => {
                self.host_port(&format!("{path}.address"), &u.address, false);
                let kind = InputKind::Udp {
                    address: u.address.clone(),
                };
                (kind, u.decoder, u.framing, u.max_frame_bytes)
            }
            InputFile::Nats(n) => {
                let kind = InputKind::Nats(self.nats_input(path, n));
                (kind, None, None, None)
            }
            InputFile::Unix(u) => {
                let sock = self.socket_path(&format!("{path}.path"), &u.path);
                let mode = u.mode.as_deref().and_then(|m| {
                    parse_mode(m)
                        .map_err(|what| self.report.error(format!("{path}.mode"), what))
                        .ok()
                });
                stream = Some((u.frame_timeout_ms, u.max_connections, &u.token_file));
                let kind = InputKind::Unix { path: sock, mode };
                (kind, u.decoder, u.framing, u.max_frame_bytes)
            }
        };
        let decoder = decoder.unwrap_or_default();
        let framing = framing.unwrap_or_default();
        if framing == Framing::Newline && decoder != DecoderKind::Json {
            self.report.error(
                format!("{path}.framing"),
                format!(
                    "newline framing needs the json decoder (this input decodes {}); use length_prefixed",
                    decoder.as_str()
                ),
            );
        }
        let max_frame_bytes = self.bounded(
            &format!("{path}.max_frame_bytes"),
            max,
            DEFAULT_MAX_FRAME_BYTES as u64,
            1,
            MAX_FRAME_BYTES,
        );
        let (timeout, conns, token_file) = stream.unwrap_or((None, None, &None));
        let frame_timeout_ms = self.bounded(
            &format!("{path}.frame_timeout_ms"),
            timeout,
            DEFAULT_FRAME_TIMEOUT_MS,
            1,
            MAX_FRAME_TIMEOUT_MS,
        );
        let max_connections = self.bounded(
            &format!("{path}.max_connections"),
            conns,
            DEFAULT_MAX_CONNECTIONS as u64,
            1,
            MAX_CONNECTIONS,
        );
        let token = token_file
            .as_deref()
            .and_then(|t| self.token(&format!("{path}.token_file"), t));
        InputConfig {
            kind,
            decoder,
            framing,
            max_frame_bytes: usize::try_from(max_frame_bytes).unwrap_or(DEFAULT_MAX_FRAME_BYTES),
            frame_timeout_ms,
            max_connections: usize::try_from(max_connections).unwrap_or(DEFAULT_MAX_CONNECTIONS),
            tls,
            token,
        }
    }

    /// The `tls` of a tcp input, its files loaded now so a bad one is
    /// reported naming its field.
    fn server_tls(&mut self, path: &str, f: &ServerTlsFile) -> Option<crate::tls::ServerTls> {
        let tls = crate::tls::ServerTls {
            cert: self.resolve(&format!("{path}.tls.cert"), &f.cert),
            key: self.resolve(&format!("{path}.tls.key"), &f.key),
            client_ca: f
                .client_ca
                .as_deref()
                .map(|c| self.resolve(&format!("{path}.tls.client_ca"), c)),
        };
        match tls.load() {
            Ok(_) => Some(tls),
            Err(e) => {
                self.report.error(tls_field(path, e.field), e.reason);
                None
            }
        }
    }
}

/// An octal permission string: `"0660"`, `"660"` or `"0o660"`.
pub(super) fn parse_mode(m: &str) -> Result<u32, String> {
    let digits = m.strip_prefix("0o").unwrap_or(m);
    match u32::from_str_radix(digits, 8) {
        Ok(v) if !digits.is_empty() && v <= 0o777 => Ok(v),
        Ok(_) => Err(format!(
            "{m:?} is more than permission bits (at most \"0777\")"
        )),
        Err(_) => Err(format!("{m:?} is not an octal mode like \"0660\"")),
    }
}
