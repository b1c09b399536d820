//! SNS message signatures: the string SNS signs for a notification, and its RSA check.
//!
//! SignatureVersion 1 is SHA1withRSA, 2 is SHA256withRSA (PKCS #1 v1.5), both over the
//! canonical string of the notification's fields, with the key of the certificate at
//! `SigningCertURL`.

use aws_lc_rs::signature::{self as lc, RsaParameters, UnparsedPublicKey};
use base64::Engine as _;
use rustls_pki_types::alg_id::{self, AlgorithmIdentifier};
use rustls_pki_types::{CertificateDer, InvalidSignature, SignatureVerificationAlgorithm};
use webpki::EndEntityCert;

use super::envelope::Envelope;

/// Why a signature was not accepted (logged, never shown to handlers).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SignatureError {
    /// `SignatureVersion` is neither 1 nor 2.
    #[error("unsupported SignatureVersion {0:?}")]
    UnsupportedVersion(Option<String>),
    /// A field the signature covers, or the signature itself, is missing.
    #[error("the envelope has no {0}")]
    Missing(&'static str),
    /// `Signature` is not base64.
    #[error("Signature is not base64")]
    NotBase64,
    /// The certificate is not an X.509 certificate webpki accepts.
    #[error("the signing certificate cannot be parsed")]
    Certificate,
    /// The signature does not match the canonical string under the certificate's key.
    #[error("the signature does not verify")]
    Invalid,
}

/// The bytes SNS signs for a `Notification`: each present field's name and value, one per
/// line, in this order (`Subject` only when the notification has one).
pub(crate) fn canonical_string(envelope: &Envelope) -> Result<String, SignatureError> {
    let timestamp = envelope
        .timestamp
        .as_deref()
        .ok_or(SignatureError::Missing("Timestamp"))?;
    let mut fields = vec![
        ("Message", envelope.message.as_str()),
        ("MessageId", envelope.message_id.as_str()),
    ];
    if let Some(subject) = &envelope.subject {
        fields.push(("Subject", subject));
    }
    fields.extend([
        ("Timestamp", timestamp),
        ("TopicArn", envelope.topic_arn.as_str()),
        ("Type", envelope.kind.as_str()),
    ]);
    let mut out = String::with_capacity(fields.iter().map(|(k, v)| k.len() + v.len() + 2).sum());
    for (name, value) in fields {
        out.push_str(name);
        out.push('\n');
        out.push_str(value);
        out.push('\n');
    }
    Ok(out)
}

/// Checks the envelope's signature with the key of `certificate` (DER).
pub(crate) fn verify(
    envelope: &Envelope,
    certificate: &CertificateDer<'_>,
) -> Result<(), SignatureError> {
    let algorithm: &dyn SignatureVerificationAlgorithm = match envelope.signature_version.as_deref()
    {
        Some("1") => &SHA1_WITH_RSA,
        Some("2") => &SHA256_WITH_RSA,
        other => {
            return Err(SignatureError::UnsupportedVersion(other.map(str::to_owned)));
        }
    };
    let signature = envelope
        .signature
        .as_deref()
        .ok_or(SignatureError::Missing("Signature"))?;
    let signature = base64::engine::general_purpose::STANDARD
        .decode(signature.trim())
        .map_err(|_| SignatureError::NotBase64)?;
    let message = canonical_string(envelope)?;
    let cert = EndEntityCert::try_from(certificate).map_err(|_| SignatureError::Certificate)?;
    cert.verify_signature(algorithm, message.as_bytes(), &signature)
        .map_err(|_| SignatureError::Invalid)
}

/// Whether `certificate` (DER) is one webpki can read: checked once, before caching it.
pub(crate) fn is_certificate(certificate: &CertificateDer<'_>) -> bool {
    EndEntityCert::try_from(certificate).is_ok()
}

/// `sha1WithRSAEncryption`; pki-types names only the algorithms TLS still uses.
const RSA_PKCS1_SHA1: AlgorithmIdentifier = AlgorithmIdentifier::from_slice(&[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05, 0x05, 0x00,
]);

static SHA1_WITH_RSA: RsaPkcs1 = RsaPkcs1 {
    parameters: &lc::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
    id: RSA_PKCS1_SHA1,
};

static SHA256_WITH_RSA: RsaPkcs1 = RsaPkcs1 {
    parameters: &lc::RSA_PKCS1_2048_8192_SHA256,
    id: alg_id::RSA_PKCS1_SHA256,
};

/// RSA PKCS #1 v1.5 with aws-lc-rs. webpki ships SHA-256 but not SHA-1, which SNS's
/// SignatureVersion 1 still uses, so both are defined here the same way.
#[derive(Debug)]
struct RsaPkcs1 {
    parameters: &'static RsaParameters,
    id: AlgorithmIdentifier,
}

impl SignatureVerificationAlgorithm for RsaPkcs1 {
    fn verify_signature(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), InvalidSignature> {
        UnparsedPublicKey::new(self.parameters, public_key)
            .verify(message, signature)
            .map_err(|_| InvalidSignature)
    }

    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::RSA_ENCRYPTION
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        self.id
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rsa::pkcs1v15::SigningKey;
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::signature::{SignatureEncoding, Signer};

    /// A self-signed RSA certificate made for the test, and its private key.
    pub(crate) struct TestSigner {
        /// The certificate, DER.
        pub(crate) der: CertificateDer<'static>,
        /// The certificate, PEM (as SNS serves it).
        pub(crate) pem: String,
        key: rsa::RsaPrivateKey,
    }

    impl TestSigner {
        pub(crate) fn new() -> TestSigner {
            let key_pair =
                rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
                    .unwrap();
            let params =
                rcgen::CertificateParams::new(vec!["sns.us-east-1.amazonaws.com".into()]).unwrap();
            let cert = params.self_signed(&key_pair).unwrap();
            let key = rsa::RsaPrivateKey::from_pkcs8_der(&key_pair.serialize_der()).unwrap();
            TestSigner {
                der: cert.der().clone(),
                pem: cert.pem(),
                key,
            }
        }

        /// Signs `envelope` as SNS does with `version` (1 or 2), filling its signature fields.
        pub(crate) fn sign(&self, envelope: &mut serde_json::Value, version: u8) {
            let parsed: Envelope = serde_json::from_value(envelope.clone()).unwrap();
            let text = canonical_string(&parsed).unwrap();
            let signature = match version {
                1 => SigningKey::<sha1::Sha1>::new(self.key.clone())
                    .sign(text.as_bytes())
                    .to_vec(),
                _ => SigningKey::<rsa::sha2::Sha256>::new(self.key.clone())
                    .sign(text.as_bytes())
                    .to_vec(),
            };
            envelope["SignatureVersion"] = version.to_string().into();
            envelope["Signature"] = base64::engine::general_purpose::STANDARD
                .encode(signature)
                .into();
        }
    }

    pub(crate) fn notification(subject: Option<&str>) -> serde_json::Value {
        let mut value = serde_json::json!({
            "Type": "Notification",
            "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:orders",
            "Message": "{\"id\":1}\nsecond line",
            "Timestamp": "2026-01-01T00:00:00.000Z",
            "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem",
        });
        if let Some(subject) = subject {
            value["Subject"] = subject.into();
        }
        value
    }

    fn parse(value: &serde_json::Value) -> Envelope {
        serde_json::from_value(value.clone()).unwrap()
    }

    #[test]
    fn canonical_string_lists_the_signed_fields_in_order() {
        let plain = canonical_string(&parse(&notification(None))).unwrap();
        assert_eq!(
            plain,
            "Message\n{\"id\":1}\nsecond line\n\
             MessageId\n22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324\n\
             Timestamp\n2026-01-01T00:00:00.000Z\n\
             TopicArn\narn:aws:sns:us-east-1:123456789012:orders\n\
             Type\nNotification\n"
        );
        let with_subject = canonical_string(&parse(&notification(Some("Hi")))).unwrap();
        assert!(
            with_subject.contains(
                "MessageId\n22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324\nSubject\nHi\nTimestamp\n"
            )
        );
        let mut no_time = notification(None);
        no_time.as_object_mut().unwrap().remove("Timestamp");
        assert_eq!(
            canonical_string(&parse(&no_time)),
            Err(SignatureError::Missing("Timestamp"))
        );
    }

    #[test]
    fn version_1_and_2_signatures_verify_and_tampering_does_not() {
        let signer = TestSigner::new();
        for version in [1, 2] {
            for subject in [None, Some("Subject line")] {
                let mut value = notification(subject);
                signer.sign(&mut value, version);
                assert_eq!(verify(&parse(&value), &signer.der), Ok(()), "v{version}");

                let mut tampered = value.clone();
                tampered["MessageId"] = "33b80b92-fdea-4c2c-8f9d-bdfb0c7bf324".into();
                assert_eq!(
                    verify(&parse(&tampered), &signer.der),
                    Err(SignatureError::Invalid)
                );
                let mut other_version = value.clone();
                other_version["SignatureVersion"] = if version == 1 { "2" } else { "1" }.into();
                assert_eq!(
                    verify(&parse(&other_version), &signer.der),
                    Err(SignatureError::Invalid)
                );
            }
        }
    }

    #[test]
    fn a_signature_by_another_key_or_malformed_is_rejected() {
        let signer = TestSigner::new();
        let other = TestSigner::new();
        let mut value = notification(None);
        other.sign(&mut value, 2);
        assert_eq!(
            verify(&parse(&value), &signer.der),
            Err(SignatureError::Invalid)
        );
        value["Signature"] = "@@@".into();
        assert_eq!(
            verify(&parse(&value), &signer.der),
            Err(SignatureError::NotBase64)
        );
        value["SignatureVersion"] = "3".into();
        assert_eq!(
            verify(&parse(&value), &signer.der),
            Err(SignatureError::UnsupportedVersion(Some("3".into())))
        );
        value.as_object_mut().unwrap().remove("SignatureVersion");
        assert_eq!(
            verify(&parse(&value), &signer.der),
            Err(SignatureError::UnsupportedVersion(None))
        );
        let mut unsigned = notification(None);
        unsigned["SignatureVersion"] = "2".into();
        assert_eq!(
            verify(&parse(&unsigned), &signer.der),
            Err(SignatureError::Missing("Signature"))
        );
        let garbage = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]);
        signer.sign(&mut unsigned, 2);
        assert!(!is_certificate(&garbage));
        assert!(is_certificate(&signer.der));
        assert_eq!(
            verify(&parse(&unsigned), &garbage),
            Err(SignatureError::Certificate)
        );
    }
}
