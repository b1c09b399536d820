//! Which SNS envelopes are trusted to name their message: [`SnsTrust`].

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[cfg(feature = "sns-signature")]
use super::cert::{CertificateCache, CertificateSource, HttpsCertificates, is_sns_certificate_url};
use super::envelope::{Envelope, is_message_id, is_topic_arn};

/// Which SNS envelopes are trusted, so that their `MessageId` is the idempotency key.
///
/// Anyone who may send to a queue can send a body shaped like an SNS envelope. If its
/// self-chosen `MessageId` were the key, a message reusing the id of one already handled
/// would be deleted unhandled. So an envelope is only trusted when
///
/// - its `TopicArn` is on the allow-list ([`allow_topic`](Self::allow_topic),
///   `INIESTA_SNS_TOPIC_ARNS`), or
/// - signature verification is on ([`verify_signatures`](Self::verify_signatures), feature
///   `sns-signature`, `INIESTA_SNS_VERIFY_SIGNATURES`) and its SNS signature verifies with the
///   certificate at its `SigningCertURL`, which must be on an SNS host over HTTPS.
///
/// The allow-list trusts whoever can send to the queue and knows an allowed topic's ARN;
/// only a signature proves that SNS wrote the envelope. An untrusted envelope is still
/// unwrapped (the handler gets the published message and its attributes) but is keyed by the
/// queue's own message id, as is any envelope whose `MessageId` is not a UUID or whose
/// `TopicArn` is not a topic ARN. With the default, nothing is trusted.
///
/// Cloning is cheap; clones share the certificate cache.
///
/// # Examples
///
/// ```
/// use iniesta::transport::sns::SnsTrust;
///
/// let trust = SnsTrust::new().allow_topic("arn:aws:sns:eu-west-1:123456789012:orders");
/// assert!(trust.allows_topic("arn:aws:sns:eu-west-1:123456789012:orders"));
/// assert!(!trust.allows_topic("arn:aws:sns:eu-west-1:123456789012:other"));
/// ```
#[derive(Clone, Default)]
pub struct SnsTrust {
    topics: BTreeSet<String>,
    verify: bool,
    #[cfg(feature = "sns-signature")]
    certificates: Option<Arc<dyn CertificateSource>>,
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    /// Whether the once-only warning about an untrusted envelope was logged.
    warned: AtomicBool,
    #[cfg(feature = "sns-signature")]
    cache: CertificateCache,
    #[cfg(feature = "sns-signature")]
    default_source: std::sync::OnceLock<Arc<dyn CertificateSource>>,
}

impl SnsTrust {
    /// Trusts no envelope: SNS notifications are unwrapped but keyed by the queue's message id.
    pub fn new() -> Self {
        SnsTrust::default()
    }

    /// Trusts envelopes from the topic `arn`.
    pub fn allow_topic(mut self, arn: impl Into<String>) -> Self {
        self.topics.insert(arn.into());
        self
    }

    /// Trusts envelopes from each of `arns`.
    pub fn allow_topics<I>(mut self, arns: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.topics.extend(arns.into_iter().map(Into::into));
        self
    }

    /// Whether envelopes from the topic `arn` are trusted by the allow-list.
    pub fn allows_topic(&self, arn: &str) -> bool {
        self.topics.contains(arn)
    }

    /// The allowed topics, sorted.
    pub fn topics(&self) -> impl Iterator<Item = &str> {
        self.topics.iter().map(String::as_str)
    }

    /// Also trusts envelopes whose SNS signature verifies (off by default).
    #[cfg(feature = "sns-signature")]
    pub fn verify_signatures(mut self, enabled: bool) -> Self {
        self.verify = enabled;
        self
    }

    /// Where signing certificates come from (default: [`HttpsCertificates`]).
    #[cfg(feature = "sns-signature")]
    pub fn certificates(mut self, source: impl CertificateSource) -> Self {
        self.certificates = Some(Arc::new(source));
        self
    }

    /// Whether signatures are verified.
    pub fn verifies_signatures(&self) -> bool {
        self.verify
    }

    /// Whether `envelope` is trusted to name its message. Logs why not when it is not.
    pub(crate) async fn trusts(&self, envelope: &Envelope, queue_message_id: &str) -> bool {
        if !is_message_id(&envelope.message_id) || !is_topic_arn(&envelope.topic_arn) {
            tracing::debug!(
                message_id = queue_message_id,
                "SNS envelope with a malformed MessageId or TopicArn: keyed by the queue's message id"
            );
            return false;
        }
        if self.allows_topic(&envelope.topic_arn) {
            return true;
        }
        #[cfg(feature = "sns-signature")]
        if self.verify {
            return self.verified(envelope, queue_message_id).await;
        }
        if self.shared.warned.swap(true, Ordering::Relaxed) {
            tracing::debug!(
                message_id = queue_message_id,
                topic_arn = %envelope.topic_arn,
                "SNS envelope not trusted: keyed by the queue's message id"
            );
        } else {
            tracing::warn!(
                message_id = queue_message_id,
                topic_arn = %envelope.topic_arn,
                "SNS envelope from a topic not in INIESTA_SNS_TOPIC_ARNS: its SNS MessageId is not \
                 used as the idempotency key, so a publish delivered twice may be handled twice; \
                 list the topic or verify signatures (further ones are logged at DEBUG)"
            );
        }
        false
    }

    #[cfg(feature = "sns-signature")]
    async fn verified(&self, envelope: &Envelope, queue_message_id: &str) -> bool {
        let url = envelope.signing_cert_url.as_deref().unwrap_or_default();
        let result = if is_sns_certificate_url(url) {
            let source = self.certificates.as_ref().unwrap_or_else(|| {
                self.shared
                    .default_source
                    .get_or_init(|| Arc::new(HttpsCertificates::new()))
            });
            match self.shared.cache.get(url, source.as_ref()).await {
                Ok(certificate) => {
                    super::signature::verify(envelope, &certificate).map_err(|e| e.to_string())
                }
                Err(error) => Err(error.to_string()),
            }
        } else {
            Err("SigningCertURL is not an SNS host over https".to_owned())
        };
        if let Err(reason) = &result {
            tracing::warn!(
                message_id = queue_message_id,
                topic_arn = %envelope.topic_arn,
                %reason,
                "SNS signature not verified: keyed by the queue's message id"
            );
        }
        result.is_ok()
    }
}

impl fmt::Debug for SnsTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("SnsTrust");
        s.field("topics", &self.topics);
        s.field("verify_signatures", &self.verifies_signatures());
        #[cfg(feature = "sns-signature")]
        s.field("certificates", &self.certificates);
        s.finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:orders";
    const ID: &str = "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324";

    fn envelope(message_id: &str, topic_arn: &str) -> Envelope {
        let body = serde_json::json!({
            "Type": "Notification", "MessageId": message_id, "TopicArn": topic_arn,
            "Message": "x", "Timestamp": "2026-01-01T00:00:00.000Z",
        });
        Envelope::parse(body.to_string().as_bytes()).unwrap()
    }

    #[tokio::test]
    async fn only_listed_topics_are_trusted() {
        let trust = SnsTrust::new().allow_topics([TOPIC]);
        assert!(trust.trusts(&envelope(ID, TOPIC), "q-1").await);
        let other = "arn:aws:sns:us-east-1:123456789012:other";
        assert!(!trust.trusts(&envelope(ID, other), "q-1").await);
        assert!(!SnsTrust::new().trusts(&envelope(ID, TOPIC), "q-1").await);
        assert_eq!(trust.topics().collect::<Vec<_>>(), [TOPIC]);
    }

    #[tokio::test]
    async fn empty_or_malformed_ids_and_arns_are_never_trusted() {
        // Even a listed value cannot make a malformed one a key.
        let trust = SnsTrust::new().allow_topics(["", "not-an-arn", TOPIC]);
        for (id, arn) in [("", TOPIC), ("sns-1", TOPIC), (ID, ""), (ID, "not-an-arn")] {
            assert!(!trust.trusts(&envelope(id, arn), "q-1").await, "{id} {arn}");
        }
    }

    #[test]
    fn debug_shows_the_settings() {
        let text = format!("{:?}", SnsTrust::new().allow_topic(TOPIC));
        assert!(text.contains(TOPIC), "{text}");
        assert!(text.contains("verify_signatures: false"), "{text}");
    }

    #[cfg(feature = "sns-signature")]
    mod signatures {
        use super::*;
        use crate::BoxFuture;
        use crate::transport::sns::CertificateError;
        use crate::transport::sns::signature::tests::{TestSigner, notification};

        /// Serves the test certificate for any URL and records the URLs asked.
        #[derive(Debug, Clone)]
        struct Served {
            pem: String,
            asked: Arc<std::sync::Mutex<Vec<String>>>,
        }

        impl CertificateSource for Served {
            fn fetch<'a>(
                &'a self,
                url: &'a str,
            ) -> BoxFuture<'a, Result<Vec<u8>, CertificateError>> {
                self.asked.lock().unwrap().push(url.to_owned());
                Box::pin(async move { Ok(self.pem.clone().into_bytes()) })
            }
        }

        fn setup() -> (TestSigner, Served, SnsTrust) {
            let signer = TestSigner::new();
            let served = Served {
                pem: signer.pem.clone(),
                asked: Arc::default(),
            };
            let trust = SnsTrust::new()
                .verify_signatures(true)
                .certificates(served.clone());
            (signer, served, trust)
        }

        fn parse(value: &serde_json::Value) -> Envelope {
            Envelope::parse(value.to_string().as_bytes()).unwrap()
        }

        #[tokio::test]
        async fn a_verified_signature_is_trusted_without_the_allow_list() {
            let (signer, served, trust) = setup();
            for version in [1, 2] {
                let mut value = notification(Some("s"));
                signer.sign(&mut value, version);
                assert!(trust.trusts(&parse(&value), "q-1").await, "v{version}");
            }
            assert_eq!(served.asked.lock().unwrap().len(), 1, "cached per URL");
        }

        #[tokio::test]
        async fn a_bad_signature_is_not_trusted() {
            let (signer, _, trust) = setup();
            let mut value = notification(None);
            signer.sign(&mut value, 2);
            value["Message"] = "changed".into();
            assert!(!trust.trusts(&parse(&value), "q-1").await);
            value.as_object_mut().unwrap().remove("Signature");
            assert!(!trust.trusts(&parse(&value), "q-1").await);
        }

        #[tokio::test]
        async fn a_certificate_off_an_sns_host_is_never_fetched() {
            let (signer, served, trust) = setup();
            for url in [
                "https://evil.example/SimpleNotificationService-1.pem",
                "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem",
            ] {
                let mut value = notification(None);
                value["SigningCertURL"] = url.into();
                signer.sign(&mut value, 2);
                assert!(!trust.trusts(&parse(&value), "q-1").await, "{url}");
            }
            let mut no_url = notification(None);
            no_url.as_object_mut().unwrap().remove("SigningCertURL");
            signer.sign(&mut no_url, 2);
            assert!(!trust.trusts(&parse(&no_url), "q-1").await);
            assert!(served.asked.lock().unwrap().is_empty());
        }

        #[tokio::test]
        async fn off_by_default_even_with_a_valid_signature() {
            let (signer, served, _) = setup();
            let trust = SnsTrust::new().certificates(served.clone());
            let mut value = notification(None);
            signer.sign(&mut value, 2);
            assert!(!trust.trusts(&parse(&value), "q-1").await);
            assert!(served.asked.lock().unwrap().is_empty());
        }
    }
}
