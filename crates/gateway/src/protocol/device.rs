//! Device identity: checking the Ed25519 signature a client sends with `connect`.
//!
//! A device is an Ed25519 key pair the client keeps. Its id is the lowercase hex SHA-256 of the
//! raw 32-byte public key; the public key travels base64url-encoded (no padding). To prove it
//! holds the key, the client signs a `|`-joined string built from the connect request and the
//! server's challenge:
//!
//! - v3: `v3|deviceId|clientId|clientMode|role|scope,scope|signedAtMs|token|nonce|platform|deviceFamily`
//!   (platform and family trimmed and ASCII-lowercased)
//! - v2: the same without the last two fields, prefix `v2`
//!
//! `token` is the secret the client authenticates with (shared token, device token) or empty.
//! The nonce must be the one this connection was challenged with, so a signature captured on
//! one connection cannot be replayed on another; `signedAt` must be recent.
//!
//! This module only verifies; it never stores keys and never logs the signed string (it holds
//! the token).

use aws_lc_rs::digest;
use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};

/// Largest accepted difference between `signedAt` and the gateway's clock.
pub const MAX_SKEW_MS: i64 = 120_000;

/// The `device` object of a connect request.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceProof {
    pub id: String,
    pub public_key: String,
    pub signature: String,
    pub signed_at: i64,
    pub nonce: String,
}

/// What the signature covers besides the device itself.
#[derive(Debug, Clone)]
pub struct SignedFields<'a> {
    pub client_id: &'a str,
    pub client_mode: &'a str,
    pub role: &'a str,
    pub scopes: &'a [String],
    pub token: &'a str,
    pub platform: &'a str,
    pub device_family: &'a str,
}

/// Why a device proof was refused; each maps to an OpenClaw `details.code` and `details.reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceError {
    PublicKeyInvalid,
    IdMismatch,
    NonceRequired,
    NonceMismatch,
    SignatureExpired,
    SignatureInvalid,
}

impl DeviceError {
    pub fn detail_code(self) -> &'static str {
        match self {
            DeviceError::PublicKeyInvalid => "DEVICE_AUTH_PUBLIC_KEY_INVALID",
            DeviceError::IdMismatch => "DEVICE_AUTH_DEVICE_ID_MISMATCH",
            DeviceError::NonceRequired => "DEVICE_AUTH_NONCE_REQUIRED",
            DeviceError::NonceMismatch => "DEVICE_AUTH_NONCE_MISMATCH",
            DeviceError::SignatureExpired => "DEVICE_AUTH_SIGNATURE_EXPIRED",
            DeviceError::SignatureInvalid => "DEVICE_AUTH_SIGNATURE_INVALID",
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            DeviceError::PublicKeyInvalid => "device-public-key",
            DeviceError::IdMismatch => "device-id-mismatch",
            DeviceError::NonceRequired => "device-nonce-missing",
            DeviceError::NonceMismatch => "device-nonce-mismatch",
            DeviceError::SignatureExpired => "device-signature-stale",
            DeviceError::SignatureInvalid => "device-signature",
        }
    }

    /// OpenClaw's wording (clients show it); `hint` says what to do.
    pub fn message(self) -> &'static str {
        match self {
            DeviceError::PublicKeyInvalid => "device public key invalid",
            DeviceError::IdMismatch => "device identity mismatch",
            DeviceError::NonceRequired => "device nonce required",
            DeviceError::NonceMismatch => "device nonce mismatch",
            DeviceError::SignatureExpired => "device signature expired",
            DeviceError::SignatureInvalid => "device signature invalid",
        }
    }

    pub fn hint(self) -> &'static str {
        match self {
            DeviceError::PublicKeyInvalid => "the public key is not a raw or SPKI Ed25519 key",
            DeviceError::IdMismatch => "the device id must be the SHA-256 of the public key",
            DeviceError::NonceRequired | DeviceError::NonceMismatch => {
                "sign the nonce of this connection's connect.challenge"
            }
            DeviceError::SignatureExpired => {
                "signedAt must be within 120 s of the gateway's clock; check the device clock"
            }
            DeviceError::SignatureInvalid => "the signature does not verify over the v3 (or v2) payload",
        }
    }
}

/// Decodes base64 in any of the usual alphabets, with or without padding.
pub fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    [&URL_SAFE_NO_PAD, &URL_SAFE, &STANDARD_NO_PAD, &STANDARD].iter().find_map(|e| e.decode(s).ok())
}

/// base64url without padding, the encoding used on the wire for keys and signatures.
pub fn encode_base64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410), followed by the 32 key bytes.
const SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

/// The raw 32-byte key from a base64 raw key or SPKI DER.
pub fn raw_public_key(encoded: &str) -> Option<[u8; 32]> {
    let bytes = decode_base64(encoded)?;
    let raw = match bytes.len() {
        32 => &bytes[..],
        44 if bytes[..12] == SPKI_PREFIX => &bytes[12..],
        _ => return None,
    };
    raw.try_into().ok()
}

/// The device id of a raw public key: lowercase hex SHA-256.
pub fn device_id(raw: &[u8; 32]) -> String {
    digest::digest(&digest::SHA256, raw).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn lower(s: &str) -> String {
    s.trim().to_ascii_lowercase()
}

/// The v3 payload string.
pub fn payload_v3(device_id: &str, f: &SignedFields<'_>, signed_at: i64, nonce: &str) -> String {
    format!(
        "v3|{device_id}|{}|{}|{}|{}|{signed_at}|{}|{nonce}|{}|{}",
        f.client_id,
        f.client_mode,
        f.role,
        f.scopes.join(","),
        f.token,
        lower(f.platform),
        lower(f.device_family)
    )
}

/// The legacy v2 payload string.
pub fn payload_v2(device_id: &str, f: &SignedFields<'_>, signed_at: i64, nonce: &str) -> String {
    format!(
        "v2|{device_id}|{}|{}|{}|{}|{signed_at}|{}|{nonce}",
        f.client_id,
        f.client_mode,
        f.role,
        f.scopes.join(","),
        f.token
    )
}

/// A verified device: its id and raw public key (base64url).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedDevice {
    pub id: String,
    pub public_key: String,
}

/// Checks a device proof against this connection's challenge nonce and the clock.
pub fn verify(
    proof: &DeviceProof,
    fields: &SignedFields<'_>,
    challenge_nonce: &str,
    now_ms: i64,
) -> Result<VerifiedDevice, DeviceError> {
    // The checks run in OpenClaw's order, so the same bad proof gets the same answer.
    let raw = raw_public_key(&proof.public_key);
    let id = raw.as_ref().map(device_id);
    if id.as_deref().is_some_and(|id| !proof.id.trim().eq_ignore_ascii_case(id)) {
        return Err(DeviceError::IdMismatch);
    }
    if (now_ms - proof.signed_at).abs() > MAX_SKEW_MS {
        return Err(DeviceError::SignatureExpired);
    }
    let nonce = proof.nonce.trim();
    if nonce.is_empty() {
        return Err(DeviceError::NonceRequired);
    }
    if !clawline_core::secret::constant_time_eq(nonce.as_bytes(), challenge_nonce.as_bytes()) {
        return Err(DeviceError::NonceMismatch);
    }
    let (Some(raw), Some(id)) = (raw, id) else { return Err(DeviceError::PublicKeyInvalid) };
    let signature = decode_base64(&proof.signature).ok_or(DeviceError::SignatureInvalid)?;
    let key = UnparsedPublicKey::new(&ED25519, raw);
    let v3 = payload_v3(&proof.id, fields, proof.signed_at, nonce);
    let v2 = payload_v2(&proof.id, fields, proof.signed_at, nonce);
    if key.verify(v3.as_bytes(), &signature).is_ok() || key.verify(v2.as_bytes(), &signature).is_ok() {
        Ok(VerifiedDevice { id, public_key: encode_base64url(&raw) })
    } else {
        Err(DeviceError::SignatureInvalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};

    fn fields<'a>(scopes: &'a [String], token: &'a str) -> SignedFields<'a> {
        SignedFields {
            client_id: "openclaw-tui",
            client_mode: "ui",
            role: "operator",
            scopes,
            token,
            platform: "Linux",
            device_family: " Linux ",
        }
    }

    fn proof(kp: &Ed25519KeyPair, payload: &str, signed_at: i64, nonce: &str) -> DeviceProof {
        let pk: [u8; 32] = kp.public_key().as_ref().try_into().unwrap();
        DeviceProof {
            id: device_id(&pk),
            public_key: encode_base64url(&pk),
            signature: encode_base64url(kp.sign(payload.as_bytes()).as_ref()),
            signed_at,
            nonce: nonce.into(),
        }
    }

    #[test]
    fn verifies_v3_and_v2_and_refuses_the_rest() {
        let kp = Ed25519KeyPair::generate().unwrap();
        let pk: [u8; 32] = kp.public_key().as_ref().try_into().unwrap();
        let id = device_id(&pk);
        let scopes = vec!["operator.admin".to_string(), "operator.read".to_string()];
        let f = fields(&scopes, "tok");
        let now = 1_795_594_593_083;
        let v3 = payload_v3(&id, &f, now, "n-1");
        assert_eq!(
            v3,
            format!("v3|{id}|openclaw-tui|ui|operator|operator.admin,operator.read|{now}|tok|n-1|linux|linux")
        );
        let good = proof(&kp, &v3, now, "n-1");
        assert_eq!(verify(&good, &f, "n-1", now + 5).unwrap().id, id);
        let v2 = proof(&kp, &payload_v2(&id, &f, now, "n-1"), now, "n-1");
        assert!(verify(&v2, &f, "n-1", now).is_ok());

        assert_eq!(verify(&good, &f, "n-2", now), Err(DeviceError::NonceMismatch), "replayed on another connection");
        assert_eq!(verify(&good, &f, "n-1", now + MAX_SKEW_MS + 1), Err(DeviceError::SignatureExpired));
        let other_token = fields(&scopes, "other");
        assert_eq!(verify(&good, &other_token, "n-1", now), Err(DeviceError::SignatureInvalid));
        let mut wrong_id = good.clone();
        wrong_id.id = "00".repeat(32);
        assert_eq!(verify(&wrong_id, &f, "n-1", now), Err(DeviceError::IdMismatch));
        let mut bad_key = good.clone();
        bad_key.public_key = "AAAA".into();
        assert_eq!(verify(&bad_key, &f, "n-1", now), Err(DeviceError::PublicKeyInvalid));
        let mut no_nonce = good.clone();
        no_nonce.nonce = String::new();
        assert_eq!(verify(&no_nonce, &f, "", now), Err(DeviceError::NonceRequired));
        let mut garbage = good;
        garbage.signature = "!!".into();
        assert_eq!(verify(&garbage, &f, "n-1", now), Err(DeviceError::SignatureInvalid));
    }

    #[test]
    fn accepts_spki_and_padded_keys() {
        let kp = Ed25519KeyPair::generate().unwrap();
        let pk: [u8; 32] = kp.public_key().as_ref().try_into().unwrap();
        let mut spki = SPKI_PREFIX.to_vec();
        spki.extend_from_slice(&pk);
        assert_eq!(raw_public_key(&STANDARD.encode(&spki)), Some(pk));
        assert_eq!(raw_public_key(&URL_SAFE.encode(pk)), Some(pk));
        assert_eq!(raw_public_key("not base64 at all"), None);
    }
}
