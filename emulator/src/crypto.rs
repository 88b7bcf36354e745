//! KMS key types and the envelope encryption of secret versions (RustCrypto AEADs).

use aes_gcm::aead::{Aead, KeyInit, Nonce, Payload};
use aes_gcm::{Aes128Gcm, Aes256Gcm};
use chacha20poly1305::ChaCha20Poly1305;
use rand::RngCore;

/// Every key type Thalassa KMS knows. Only the three AEAD types can protect secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Aes128Gcm96,
    Aes256Gcm96,
    ChaCha20Poly1305,
    Rsa2048,
    Rsa3072,
    Rsa4096,
    EcdsaP256,
    EcdsaP384,
    EcdsaP521,
    Ed25519,
    Hmac,
    HmacSha256,
    HmacSha512,
}

const ALL: [KeyType; 13] = [
    KeyType::Aes128Gcm96,
    KeyType::Aes256Gcm96,
    KeyType::ChaCha20Poly1305,
    KeyType::Rsa2048,
    KeyType::Rsa3072,
    KeyType::Rsa4096,
    KeyType::EcdsaP256,
    KeyType::EcdsaP384,
    KeyType::EcdsaP521,
    KeyType::Ed25519,
    KeyType::Hmac,
    KeyType::HmacSha256,
    KeyType::HmacSha512,
];

impl KeyType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Aes128Gcm96 => "aes128-gcm96",
            Self::Aes256Gcm96 => "aes256-gcm96",
            Self::ChaCha20Poly1305 => "chacha20-poly1305",
            Self::Rsa2048 => "rsa-2048",
            Self::Rsa3072 => "rsa-3072",
            Self::Rsa4096 => "rsa-4096",
            Self::EcdsaP256 => "ecdsa-p256",
            Self::EcdsaP384 => "ecdsa-p384",
            Self::EcdsaP521 => "ecdsa-p521",
            Self::Ed25519 => "ed25519",
            Self::Hmac => "hmac",
            Self::HmacSha256 => "hmac-sha256",
            Self::HmacSha512 => "hmac-sha512",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Symmetric AEAD types, the only ones Secrets Manager accepts.
    pub fn is_symmetric_aead(self) -> bool {
        matches!(
            self,
            Self::Aes128Gcm96 | Self::Aes256Gcm96 | Self::ChaCha20Poly1305
        )
    }

    /// Bytes of key material the emulator generates per version. Asymmetric keys get none:
    /// the emulator serves their lifecycle but no sign/verify operations.
    fn material_len(self) -> usize {
        match self {
            Self::Aes128Gcm96 => 16,
            Self::Aes256Gcm96 | Self::ChaCha20Poly1305 | Self::Hmac | Self::HmacSha256 => 32,
            Self::HmacSha512 => 64,
            _ => 0,
        }
    }

    pub fn generate_material(self) -> Vec<u8> {
        let mut material = vec![0u8; self.material_len()];
        rand::rng().fill_bytes(&mut material);
        material
    }
}

pub const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("key type {0} cannot encrypt secrets")]
    NotAead(&'static str),
    #[error("invalid key material")]
    BadKey,
    #[error("authenticated encryption failed")]
    Aead,
}

/// Encrypts `plaintext` under `material` with a fresh random nonce; `aad` binds the
/// ciphertext to where it is stored so it cannot be moved to another secret or version.
pub fn seal(
    key_type: KeyType,
    material: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<([u8; NONCE_LEN], Vec<u8>), CryptoError> {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rng().fill_bytes(&mut nonce);
    let ciphertext = match key_type {
        KeyType::Aes128Gcm96 => seal_with::<Aes128Gcm>(material, &nonce, aad, plaintext),
        KeyType::Aes256Gcm96 => seal_with::<Aes256Gcm>(material, &nonce, aad, plaintext),
        KeyType::ChaCha20Poly1305 => {
            seal_with::<ChaCha20Poly1305>(material, &nonce, aad, plaintext)
        }
        other => Err(CryptoError::NotAead(other.as_str())),
    }?;
    Ok((nonce, ciphertext))
}

pub fn open(
    key_type: KeyType,
    material: &[u8],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    match key_type {
        KeyType::Aes128Gcm96 => open_with::<Aes128Gcm>(material, nonce, aad, ciphertext),
        KeyType::Aes256Gcm96 => open_with::<Aes256Gcm>(material, nonce, aad, ciphertext),
        KeyType::ChaCha20Poly1305 => {
            open_with::<ChaCha20Poly1305>(material, nonce, aad, ciphertext)
        }
        other => Err(CryptoError::NotAead(other.as_str())),
    }
}

fn seal_with<C: Aead + KeyInit>(
    material: &[u8],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    msg: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let cipher = C::new_from_slice(material).map_err(|_| CryptoError::BadKey)?;
    let nonce = Nonce::<C>::try_from(&nonce[..]).map_err(|_| CryptoError::BadKey)?;
    cipher
        .encrypt(&nonce, Payload { msg, aad })
        .map_err(|_| CryptoError::Aead)
}

fn open_with<C: Aead + KeyInit>(
    material: &[u8],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    msg: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let cipher = C::new_from_slice(material).map_err(|_| CryptoError::BadKey)?;
    let nonce = Nonce::<C>::try_from(&nonce[..]).map_err(|_| CryptoError::BadKey)?;
    cipher
        .decrypt(&nonce, Payload { msg, aad })
        .map_err(|_| CryptoError::Aead)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_aead_round_trips_and_hides_plaintext() {
        for kt in [
            KeyType::Aes128Gcm96,
            KeyType::Aes256Gcm96,
            KeyType::ChaCha20Poly1305,
        ] {
            let material = kt.generate_material();
            let (nonce, ct) = seal(kt, &material, b"aad", b"plaintext value").unwrap();
            assert!(!ct.windows(15).any(|w| w == b"plaintext value"));
            assert_eq!(
                open(kt, &material, &nonce, b"aad", &ct).unwrap(),
                b"plaintext value"
            );
            assert!(open(kt, &material, &nonce, b"other", &ct).is_err());
        }
    }

    #[test]
    fn asymmetric_types_cannot_seal() {
        assert!(seal(KeyType::Rsa2048, &[], b"", b"x").is_err());
        assert_eq!(KeyType::parse("ed25519"), Some(KeyType::Ed25519));
        assert_eq!(KeyType::parse("nope"), None);
    }
}
