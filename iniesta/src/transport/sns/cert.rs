//! Where SNS signing certificates come from: a [`CertificateSource`] (HTTPS by default), asked
//! only for SNS hosts, with each certificate cached per URL.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use tokio::sync::OnceCell;

use crate::BoxError;
use crate::handler::BoxFuture;

/// Why a signing certificate could not be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateError {
    /// The request failed (connection, TLS, timeout) or a custom source failed.
    #[error("fetching the signing certificate failed: {0}")]
    Fetch(#[source] BoxError),
    /// The server answered with another status than 200.
    #[error("the signing certificate request answered HTTP {0}")]
    Status(u16),
    /// The answer was larger than [`MAX_CERTIFICATE_LEN`].
    #[error("the signing certificate is larger than {MAX_CERTIFICATE_LEN} bytes")]
    TooLarge,
    /// The bytes are not one X.509 certificate in PEM or DER.
    #[error("the signing certificate is not an X.509 certificate")]
    Malformed,
}

/// The largest certificate accepted (SNS's are about 2 KiB).
pub const MAX_CERTIFICATE_LEN: usize = 64 * 1024;

/// Where [`SnsTrust`](super::SnsTrust) gets the certificate named by an envelope's
/// `SigningCertURL`.
///
/// It is asked only for URLs on an SNS host over HTTPS (`https://sns.<region>.amazonaws.com/..`
/// or `.amazonaws.com.cn`), and each certificate it returns is cached per URL, so it runs
/// about once per certificate. The default, [`HttpsCertificates`], downloads it; tests and
/// offline deployments supply their own.
///
/// # Examples
///
/// ```
/// use iniesta::BoxFuture;
/// use iniesta::transport::sns::{CertificateError, CertificateSource, SnsTrust};
///
/// /// Certificates shipped with the service.
/// #[derive(Debug)]
/// struct Bundled(Vec<u8>);
///
/// impl CertificateSource for Bundled {
///     fn fetch<'a>(&'a self, _url: &'a str) -> BoxFuture<'a, Result<Vec<u8>, CertificateError>> {
///         Box::pin(async move { Ok(self.0.clone()) })
///     }
/// }
///
/// let trust = SnsTrust::new()
///     .verify_signatures(true)
///     .certificates(Bundled(b"-----BEGIN CERTIFICATE-----...".to_vec()));
/// assert!(trust.verifies_signatures());
/// ```
pub trait CertificateSource: Send + Sync + fmt::Debug + 'static {
    /// The certificate at `url`, PEM or DER.
    fn fetch<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Result<Vec<u8>, CertificateError>>;
}

/// Downloads certificates over HTTPS (rustls, the system's root certificates), with a timeout.
pub struct HttpsCertificates {
    timeout: Duration,
    client: OnceCell<Client<HttpsConnector<HttpConnector>, Empty<Bytes>>>,
}

impl HttpsCertificates {
    /// How long one download may take by default.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    /// A downloader with [`DEFAULT_TIMEOUT`](Self::DEFAULT_TIMEOUT). The HTTPS client (and the
    /// system's root certificates) is loaded on the first download.
    pub fn new() -> Self {
        HttpsCertificates {
            timeout: Self::DEFAULT_TIMEOUT,
            client: OnceCell::new(),
        }
    }

    /// How long one download may take.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    async fn download(&self, url: &str) -> Result<Vec<u8>, CertificateError> {
        let client = self
            .client
            .get_or_try_init(|| async { https_client() })
            .await?;
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e| CertificateError::Fetch(Box::new(e)))?;
        let response = client
            .get(uri)
            .await
            .map_err(|e| CertificateError::Fetch(Box::new(e)))?;
        if response.status() != hyper::StatusCode::OK {
            return Err(CertificateError::Status(response.status().as_u16()));
        }
        let body = Limited::new(response.into_body(), MAX_CERTIFICATE_LEN)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    CertificateError::TooLarge
                } else {
                    CertificateError::Fetch(e)
                }
            })?;
        Ok(body.to_bytes().to_vec())
    }
}

fn https_client() -> Result<Client<HttpsConnector<HttpConnector>, Empty<Bytes>>, CertificateError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(provider)
        .map_err(|e| CertificateError::Fetch(Box::new(e)))?
        .https_only()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

impl Default for HttpsCertificates {
    fn default() -> Self {
        HttpsCertificates::new()
    }
}

impl fmt::Debug for HttpsCertificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpsCertificates")
            .field("timeout", &self.timeout)
            .field("connected", &self.client.initialized())
            .finish()
    }
}

impl CertificateSource for HttpsCertificates {
    fn fetch<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Result<Vec<u8>, CertificateError>> {
        Box::pin(async move {
            tokio::time::timeout(self.timeout, self.download(url))
                .await
                .map_err(|e| CertificateError::Fetch(Box::new(e)))?
        })
    }
}

/// Whether `url` names a certificate on an SNS host over HTTPS:
/// `https://sns.<region>.amazonaws.com/...` or `https://sns.<region>.amazonaws.com.cn/...`,
/// no user info, no port.
pub(crate) fn is_sns_certificate_url(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("https://") else {
        return false;
    };
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if !path.starts_with('/') || url.bytes().any(|b| b.is_ascii_whitespace() || b == b'\\') {
        return false;
    }
    let Some(region) = host
        .strip_suffix(".amazonaws.com")
        .or_else(|| host.strip_suffix(".amazonaws.com.cn"))
        .and_then(|h| h.strip_prefix("sns."))
    else {
        return false;
    };
    !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Certificates by URL, each fetched once even when many messages ask at the same time.
#[derive(Debug, Default)]
pub(crate) struct CertificateCache {
    entries: Mutex<HashMap<String, Arc<OnceCell<CertificateDer<'static>>>>>,
}

/// SNS uses a handful of certificates; the bound only stops a flood of distinct URLs.
const MAX_CACHED: usize = 64;

impl CertificateCache {
    /// The certificate at `url` (an SNS URL, checked by the caller), from the cache or `source`.
    /// Failures are not cached: the next message tries again.
    pub(crate) async fn get(
        &self,
        url: &str,
        source: &dyn CertificateSource,
    ) -> Result<CertificateDer<'static>, CertificateError> {
        let cell = {
            let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            if entries.len() >= MAX_CACHED && !entries.contains_key(url) {
                entries.retain(|_, cell| cell.initialized());
                if entries.len() >= MAX_CACHED {
                    entries.clear();
                }
            }
            entries.entry(url.to_owned()).or_default().clone()
        };
        let result = cell
            .get_or_try_init(|| async {
                let bytes = source.fetch(url).await?;
                parse_certificate(bytes)
            })
            .await
            .cloned();
        if result.is_err() {
            let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            if entries
                .get(url)
                .is_some_and(|c| Arc::ptr_eq(c, &cell) && !c.initialized())
            {
                entries.remove(url);
            }
        }
        result
    }
}

/// One certificate from PEM or DER bytes.
fn parse_certificate(bytes: Vec<u8>) -> Result<CertificateDer<'static>, CertificateError> {
    let der = if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
        CertificateDer::from_pem_slice(&bytes).map_err(|_| CertificateError::Malformed)?
    } else {
        CertificateDer::from(bytes)
    };
    if super::signature::is_certificate(&der) {
        Ok(der)
    } else {
        Err(CertificateError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::transport::sns::signature::tests::TestSigner;

    #[test]
    fn only_sns_hosts_over_https_are_asked() {
        for url in [
            "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
            "https://sns.us-gov-west-1.amazonaws.com/x.pem",
            "https://sns.cn-north-1.amazonaws.com.cn/x.pem",
        ] {
            assert!(is_sns_certificate_url(url), "{url}");
        }
        for url in [
            "http://sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com.evil.example/x.pem",
            "https://evil.example/sns.us-east-1.amazonaws.com/x.pem",
            "https://sqs.us-east-1.amazonaws.com/x.pem",
            "https://sns..amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com:8443/x.pem",
            "https://user@sns.us-east-1.amazonaws.com/x.pem",
            "https://evil.example@sns.us-east-1.amazonaws.com/x.pem",
            "https://a.sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com",
            "https://sns.us-east-1.amazonaws.com\\@evil.example/x.pem",
            "https://SNS.us-east-1.amazonaws.com/x.pem",
            "",
        ] {
            assert!(!is_sns_certificate_url(url), "{url}");
        }
    }

    /// Serves one certificate and counts the requests.
    #[derive(Debug)]
    struct Counting {
        bytes: Vec<u8>,
        calls: AtomicUsize,
    }

    impl CertificateSource for Counting {
        fn fetch<'a>(&'a self, _url: &'a str) -> BoxFuture<'a, Result<Vec<u8>, CertificateError>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move { Ok(self.bytes.clone()) })
        }
    }

    #[tokio::test]
    async fn certificates_are_cached_per_url_and_failures_are_not() {
        let signer = TestSigner::new();
        let cache = CertificateCache::default();
        let pem = Counting {
            bytes: signer.pem.clone().into_bytes(),
            calls: AtomicUsize::new(0),
        };
        let a = "https://sns.us-east-1.amazonaws.com/a.pem";
        let b = "https://sns.us-east-1.amazonaws.com/b.pem";
        let (first, second) = tokio::join!(cache.get(a, &pem), cache.get(a, &pem));
        assert_eq!(first.unwrap(), signer.der);
        assert_eq!(second.unwrap(), signer.der);
        assert_eq!(pem.calls.load(Ordering::SeqCst), 1, "fetched once");
        cache.get(b, &pem).await.unwrap();
        assert_eq!(pem.calls.load(Ordering::SeqCst), 2, "one fetch per URL");

        let garbage = Counting {
            bytes: b"not a certificate".to_vec(),
            calls: AtomicUsize::new(0),
        };
        let c = "https://sns.us-east-1.amazonaws.com/c.pem";
        for _ in 0..2 {
            assert!(matches!(
                cache.get(c, &garbage).await,
                Err(CertificateError::Malformed)
            ));
        }
        assert_eq!(
            garbage.calls.load(Ordering::SeqCst),
            2,
            "failures are retried"
        );
        let der = Counting {
            bytes: signer.der.to_vec(),
            calls: AtomicUsize::new(0),
        };
        assert_eq!(
            cache.get(c, &der).await.unwrap(),
            signer.der,
            "DER works too"
        );
    }

    #[tokio::test]
    async fn https_refuses_a_closed_port_with_a_fetch_error() {
        let source = HttpsCertificates::new().timeout(Duration::from_secs(5));
        let error = source.fetch("https://127.0.0.1:1/x.pem").await.unwrap_err();
        assert!(matches!(error, CertificateError::Fetch(_)), "{error}");
    }
}
