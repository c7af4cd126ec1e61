//! Endpoints and bearer metadata shared by both clients.

use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::error::Error;

/// How long a connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A lazily connecting channel to `url` (`http://host:port`; a bare
/// `host:port` means plain HTTP/2). Nothing is dialled until the first call,
/// and a broken connection is redialled on the next one, so a client can be
/// made before its server is up and survives the server's restarts.
pub(crate) fn lazy_channel(url: &str) -> Result<Channel, Error> {
    lazy_channel_with(url, None)
}

/// [`lazy_channel`], over TLS when `tls` is given (the URL must then be `https://`).
pub(crate) fn lazy_channel_with(url: &str, tls: Option<ClientTlsConfig>) -> Result<Channel, Error> {
    let invalid = |reason: String| Error::InvalidUrl { url: url.to_owned(), reason };
    let full = if url.contains("://") { url.to_owned() } else { format!("http://{url}") };
    let mut endpoint = Endpoint::from_shared(full)
        .map_err(|e| invalid(e.to_string()))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true);
    if let Some(tls) = tls {
        if endpoint.uri().scheme_str() != Some("https") {
            return Err(invalid("TLS needs an https:// URL".into()));
        }
        endpoint = endpoint.tls_config(tls).map_err(|e| invalid(format!("TLS: {e}")))?;
    }
    Ok(endpoint.connect_lazy())
}

/// `Bearer TOKEN` as sensitive metadata (left out of `Debug` and HPACK tables).
pub(crate) fn bearer_value(token: &str) -> Result<MetadataValue<Ascii>, Error> {
    let token = token.trim();
    if token.is_empty() {
        return Err(Error::InvalidToken("it is empty"));
    }
    let mut value: MetadataValue<Ascii> =
        format!("Bearer {token}").parse().map_err(|_| Error::InvalidToken("it holds characters a header cannot"))?;
    value.set_sensitive(true);
    Ok(value)
}

/// Runs `call` with a deadline.
pub(crate) async fn deadline<T>(
    limit: Duration,
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, Error> {
    match tokio::time::timeout(limit, call).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(status.into()),
        Err(_) => Err(Error::Timeout(limit)),
    }
}
