//! Client TLS for the channels that open their own sockets (IRC, Slack's Socket Mode): rustls
//! with aws-lc-rs and the operating system's verifier, the same stack reqwest uses, so there is
//! one TLS implementation in the binary. Certificates are always verified; there is no switch to
//! turn that off.

use std::sync::Arc;

use tokio::net::TcpStream;

/// Something a connection can read and write.
pub trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// Wraps `tcp` in TLS for `host`. The error says what failed, for status output.
pub async fn wrap(tcp: TcpStream, host: &str) -> Result<Box<dyn Io>, String> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_platform_verifier())
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|_| format!("`{host}` is not a host name TLS can check"))?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS with {host} failed: {e}"))?;
    Ok(Box::new(stream))
}
