//! TLS on a tcp input: the handshake of each accepted connection, with the
//! input's certificate as it is on disk now.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use super::{serve_stream, warn_limited, ConnContext, Open, Readable};
use crate::tls::{LiveServerConfig, ServerTls};

/// The accept loop's TLS state: the live config of the files the current
/// pipeline names (a reload that changes `tls` gets a new one).
#[derive(Default)]
pub(crate) struct Acceptors {
    current: Option<(ServerTls, Arc<LiveServerConfig>)>,
}

impl Acceptors {
    /// The TLS config for a connection accepted now, if the input has
    /// `tls`: `Some(Err(()))` if its files cannot be loaded (logged).
    pub(crate) fn for_new_connection(
        &mut self,
        ctx: &ConnContext,
    ) -> Option<Result<Arc<rustls::ServerConfig>, ()>> {
        let files = ctx
            .pipelines
            .borrow()
            .input_by_key(&ctx.key)
            .and_then(|s| s.config.tls.clone())?;
        let name = ctx.key.to_string();
        if self.current.as_ref().is_none_or(|(f, _)| *f != files) {
            match LiveServerConfig::new(files.clone()) {
                Ok(live) => self.current = Some((files, Arc::new(live))),
                Err(e) => {
                    warn_limited(&name, "tls", &format!("cannot load the TLS files: {e}"));
                    return Some(Err(()));
                }
            }
        }
        self.current
            .as_ref()
            .map(|(_, live)| Ok(live.current(&name)))
    }
}

/// Shake hands, then serve the connection as any other. A client that
/// does not speak TLS (a plain SocketHandler), presents no or an untrusted
/// certificate where one is required, or stays silent past
/// `frame_timeout_ms` is closed and counted (`tls`).
pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    config: Arc<rustls::ServerConfig>,
    ctx: ConnContext,
    mut open: Open,
) {
    // A rustls session cannot move to an upgrade's successor.
    open.stay();
    let timeout = super::frame_timeout_of(&ctx.pipelines.borrow().clone(), &ctx);
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let handshake = tokio::time::timeout(timeout.min(HANDSHAKE_LIMIT), acceptor.accept(stream));
    let tls = match handshake.await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => return refuse(&ctx, peer, &e.to_string()),
        Err(_) => return refuse(&ctx, peer, "no TLS handshake in time"),
    };
    serve_stream(tls, Some(peer), ctx, open).await;
}

/// Longest a TLS handshake may take, whatever `frame_timeout_ms` says.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);

fn refuse(ctx: &ConnContext, peer: SocketAddr, why: &str) {
    ctx.stats.close("tls");
    warn_limited(
        &ctx.key.to_string(),
        "tls",
        &format!("TLS handshake with {peer} failed: {why}; closing the connection (a plain SocketHandler on a TLS input, or an untrusted client certificate?)"),
    );
}

impl Readable for TlsStream<TcpStream> {
    /// Ready at once if rustls holds decrypted bytes not yet read (the
    /// socket may never become readable again for them), else when the
    /// socket is.
    fn readable(&self) -> impl std::future::Future<Output = std::io::Result<()>> + Send {
        let (io, conn) = self.get_ref();
        let buffered = !conn.wants_read();
        async move {
            if buffered {
                Ok(())
            } else {
                io.readable().await
            }
        }
    }
}
