//! Certificate keys and CSRs (rcgen on aws-lc-rs).

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

use super::{AcmeError, KeyStep};
use crate::inventory::KeyType;
use crate::secret::Secret;

/// A fresh key of `kind`, as PKCS#8 PEM.
pub(crate) fn generate(kind: KeyType) -> Result<KeyPair, AcmeError> {
    use rcgen::{RsaKeySize, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_RSA_SHA256};
    let res = match kind {
        KeyType::EcdsaP256 => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256),
        KeyType::EcdsaP384 => KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384),
        KeyType::Rsa2048 => KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048),
        KeyType::Rsa3072 => KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_3072),
        KeyType::Rsa4096 => KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_4096),
    };
    res.map_err(|source| AcmeError::Key {
        step: KeyStep::Generate,
        source,
    })
}

/// Loads a stored key (PKCS#8 PEM) for reuse.
pub(crate) fn load(pem: &Secret) -> Result<KeyPair, AcmeError> {
    let text = std::str::from_utf8(pem.expose()).map_err(|source| AcmeError::KeyText { source })?;
    KeyPair::from_pem(text).map_err(|source| AcmeError::Key {
        step: KeyStep::Load,
        source,
    })
}

/// A DER CSR for `domains` signed by `key`; the first domain is the subject CN.
pub(crate) fn csr(domains: &[String], key: &KeyPair) -> Result<Vec<u8>, AcmeError> {
    let mut params = CertificateParams::new(domains.to_vec()).map_err(|source| AcmeError::Key {
        step: KeyStep::CsrNames,
        source,
    })?;
    let mut dn = DistinguishedName::new();
    if let Some(first) = domains.first() {
        dn.push(DnType::CommonName, first.as_str());
    }
    params.distinguished_name = dn;
    let req = params
        .serialize_request(key)
        .map_err(|source| AcmeError::Key {
            step: KeyStep::CsrSign,
            source,
        })?;
    Ok(req.der().to_vec())
}

/// The key as PKCS#8 PEM, held as a secret.
pub(crate) fn to_pem(key: &KeyPair) -> Secret {
    Secret::new(key.serialize_pem().into_bytes())
}

/// Which of our key types `key` is, if any.
pub(crate) fn kind_of(key: &KeyPair) -> Option<KeyType> {
    let alg = key.algorithm();
    if alg == &rcgen::PKCS_ECDSA_P256_SHA256 {
        Some(KeyType::EcdsaP256)
    } else if alg == &rcgen::PKCS_ECDSA_P384_SHA384 {
        Some(KeyType::EcdsaP384)
    } else if alg == &rcgen::PKCS_RSA_SHA256 {
        // RSA size is checked from the public key length.
        match rcgen::PublicKeyData::der_bytes(key).len() {
            0..=300 => Some(KeyType::Rsa2048),
            301..=430 => Some(KeyType::Rsa3072),
            _ => Some(KeyType::Rsa4096),
        }
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_type_makes_a_csr_and_round_trips() {
        for kind in [KeyType::EcdsaP256, KeyType::EcdsaP384, KeyType::Rsa2048] {
            let key = generate(kind).expect("generate");
            let der =
                csr(&["www.example.test".into(), "*.example.test".into()], &key).expect("csr");
            assert!(der.len() > 100);
            let back = load(&to_pem(&key)).expect("load");
            assert_eq!(kind_of(&back), Some(kind));
        }
    }
}
