//! Client TLS for the channels that open their own sockets (IRC, Slack's Socket Mode, Discord's
//! Gateway), and the WebSocket connect the last two share: rustls
//! with aws-lc-rs and the operating system's verifier, the same stack reqwest uses, so there is
//! one TLS implementation in the binary. Certificates are always verified; there is no switch to
//! turn that off.

use std::sync::Arc;

use tokio::net::TcpStream;

/// Something a connection can read and write.
pub trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// The one client configuration, built on first use and shared by every connection (the
/// verifier and its roots are loaded once, not on every reconnect).
fn client_config() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: std::sync::OnceLock<Result<Arc<rustls::ClientConfig>, String>> = std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            use rustls_platform_verifier::BuilderVerifierExt;
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .and_then(|b| b.with_platform_verifier())
                .map(|b| Arc::new(b.with_no_client_auth()))
                .map_err(|e| format!("TLS setup failed: {e}"))
        })
        .clone()
}

/// A client configuration that trusts the certificates in `pem` as well as the system's
/// roots, for a server with its own authority (`caFile`). Built once per account, not per
/// connection. The error names what is wrong with the file's contents.
pub fn config_with_roots(pem: &str) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let roots = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("caFile holds a certificate that cannot be read: {e}"))?;
    if roots.is_empty() {
        return Err("caFile holds no certificate".into());
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(roots, provider.clone())
        .map_err(|e| format!("TLS setup failed: caFile: {e}"))?;
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| Arc::new(b.dangerous().with_custom_certificate_verifier(Arc::new(verifier)).with_no_client_auth()))
        .map_err(|e| format!("TLS setup failed: {e}"))
}

/// Wraps `tcp` in TLS for `host`, verified against the system's roots. The error says what
/// failed, for status output.
pub async fn wrap(tcp: TcpStream, host: &str) -> Result<Box<dyn Io>, String> {
    wrap_with(tcp, host, client_config()?).await
}

/// Wraps `tcp` in TLS for `host` with `config` (the shared one, or [`config_with_roots`]).
pub async fn wrap_with(tcp: TcpStream, host: &str, config: Arc<rustls::ClientConfig>) -> Result<Box<dyn Io>, String> {
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|_| format!("`{host}` is not a host name TLS can check"))?;
    let stream = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS with {host} failed: {e}"))?;
    Ok(Box::new(stream))
}

/// A WebSocket over a plain or TLS stream.
#[cfg(any(feature = "slack", feature = "discord"))]
pub type WebSocket = tokio_tungstenite::WebSocketStream<Box<dyn Io>>;

/// Opens `url` (`wss://` over this module's TLS, `ws://` for local servers). A URL that is
/// not ws(s) is fatal: retrying cannot fix it.
#[cfg(any(feature = "slack", feature = "discord"))]
pub async fn connect_ws(url: &str) -> Result<WebSocket, crate::channel::ConnectionError> {
    use crate::channel::ConnectionError;
    let parsed =
        http::Uri::try_from(url).map_err(|_| ConnectionError::Fatal(format!("`{url}` is not a WebSocket URL")))?;
    let tls = match parsed.scheme_str() {
        Some("wss") => true,
        Some("ws") => false,
        _ => return Err(ConnectionError::Fatal(format!("`{url}` is not a ws(s) URL"))),
    };
    let host = parsed.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_string();
    let port = parsed.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let tcp = tokio::time::timeout(std::time::Duration::from_secs(15), TcpStream::connect((host.as_str(), port)))
        .await
        .map_err(|_| ConnectionError::Transient(format!("connecting to {host}:{port} timed out")))?
        .map_err(|e| ConnectionError::Transient(format!("cannot connect to {host}:{port}: {e}")))?;
    let stream: Box<dyn Io> =
        if tls { wrap(tcp, &host).await.map_err(ConnectionError::Transient)? } else { Box::new(tcp) };
    let (ws, _) = tokio_tungstenite::client_async(url, stream)
        .await
        .map_err(|e| ConnectionError::Transient(format!("the WebSocket handshake with {host} failed: {e}")))?;
    Ok(ws)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_without_a_readable_certificate_is_refused_with_the_reason() {
        let none = config_with_roots("just some text\n").unwrap_err();
        assert_eq!(none, "caFile holds no certificate");
        // Valid PEM armour around bytes that are not a certificate.
        let junk = config_with_roots("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").unwrap_err();
        assert!(junk.starts_with("TLS setup failed: caFile"), "{junk}");
        let broken = config_with_roots("-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n").unwrap_err();
        assert!(broken.starts_with("caFile holds a certificate that cannot be read"), "{broken}");
    }
}
